"""Appending an epoch to a run file does not slow down as the run grows.

A run of the paper's shape (SGD + 5 EMA networks; val 5,000 and test 10,000 samples with bits,
predictions and losses; weights of W parameters every epoch; a resume state), appended for
E epochs. Prints the median time of an append (data + flush + commit, no fsync: the HDF5 cost
alone) over the first, middle and last 10% of the epochs, and the ratio last / first.
Target: no growth with the run's length (chunked, resizable datasets; one weight row per chunk;
nothing rewritten). A plain file written with the same bytes per epoch is timed beside it: on a
machine short of free memory the page cache alone slows down as the file grows by gigabytes.

    python benchmarks/append_bench.py [--quick] [--epochs 1000] [--params 269722]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from dyn.layout import Layout, Network, Param, Split
from dyn.writer import Eval, RunWriter


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="100 epochs, small weights (CI)")
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--params", type=int, default=269_722, help="parameters per network (ResNet-20)")
    args = ap.parse_args()
    epochs, params = (100, 10_000) if args.quick else (args.epochs, args.params)
    rng = np.random.default_rng(0)
    nets = [Network.sgd()] + [Network.ema(d) for d in (0.9, 0.99, 0.999, 0.9995, 0.9997)]
    sizes = {"val": 5000, "test": 10000}
    layout = Layout(nets, {s: Split(labels=rng.integers(0, 10, n), num_classes=10) for s, n in sizes.items()},
                    params=[Param("w", (params,), "param"), Param("bn", (64,), "buffer")], metrics=["lr"],
                    resume=True)
    evals = {s: {n.name: Eval(correct=rng.random(k) < 0.9, predicted=rng.integers(0, 10, k),
                              loss=rng.random(k)) for n in nets} for s, k in sizes.items()}
    weights = {n.name: (rng.random(params, dtype=np.float32), rng.random(64)) for n in nets}
    resume = rng.bytes(params * 4 * 8)  # model, momentum and 6 EMA copies, as dyn train saves
    times = []
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "append.h5"
        with RunWriter.create(path, layout, durable=False) as w:
            for e in range(epochs):
                t = time.perf_counter()
                w.append(e, metrics={"lr": 0.1}, evals=evals, weights=weights, resume=resume)
                times.append(time.perf_counter() - t)
        size = path.stat().st_size
        path.unlink()
        raw = raw_appends(Path(d) / "raw.bin", size // epochs, epochs)
    first, middle, last = thirds(times)
    raw_first, raw_middle, raw_last = thirds(raw)
    mb = size / 2**20
    print(f"append_bench: {len(nets)} networks, val {sizes['val']:,} + test {sizes['test']:,} samples, "
          f"{params:,} parameters per network, {epochs} epochs ({mb:,.0f} MB file in {tempfile.gettempdir()})")
    print(f"median append (ms):         first 10% {first * 1e3:.1f}, middle {middle * 1e3:.1f}, "
          f"last 10% {last * 1e3:.1f}; last / first = {last / first:.2f}")
    print(f"raw write of as many bytes: first 10% {raw_first * 1e3:.1f}, middle {raw_middle * 1e3:.1f}, "
          f"last 10% {raw_last * 1e3:.1f}; last / first = {raw_last / raw_first:.2f}")
    own = (last - first) - (raw_last - raw_first)
    print(f"growth beyond the raw write's: {own * 1e3:+.1f} ms, {own / first:+.0%} of the first appends "
          "(target: about 0, no growth with the run's length)")


def thirds(times: list[float]) -> tuple[float, float, float]:
    """Median of the first, middle and last 10% of the epochs."""
    n = len(times)
    tenth = max(1, n // 10)
    return (statistics.median(times[:tenth]), statistics.median(times[n // 2 - tenth // 2: n // 2 + tenth // 2 + 1]),
            statistics.median(times[-tenth:]))


def raw_appends(path: Path, nbytes: int, epochs: int) -> list[float]:
    """The same bytes per epoch appended to a plain file: what the OS's page cache costs as a
    file grows by gigabytes (it slows down under memory pressure, whatever the format)."""
    block, times = os.urandom(nbytes), []
    with open(path, "wb") as f:
        for _ in range(epochs):
            t = time.perf_counter()
            f.write(block)
            f.flush()
            times.append(time.perf_counter() - t)
    path.unlink()
    return times


if __name__ == "__main__":
    main()
