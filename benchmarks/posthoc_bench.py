"""Post-hoc EMA at the paper's shape: solve time and weight-combination time against the floor
of reading every stored weight once.

A synthetic run (no training) shaped like the paper's CIFAR-10 runs: ResNet-20's parameter
count, 181 weight records (epochs 0..180) of SGD and 5 EMA networks (0.9, 0.99, 0.999, 0.9995,
0.9997), 352 optimizer steps per epoch (63,360 in all). Synthesized: 20 decays (memories from
20 to 20,000 steps, log-spaced) at all 181 epochs. The profiles depend only on the decays and
step counts, so the residuals printed are those a real run of this shape would get; the weights
are random (the combination's cost does not depend on them).

    python benchmarks/posthoc_bench.py [--quick] [--dir DIR]

Targets (issue 16): a solve of hundreds of snapshots well under a second (met: ~10 ms); the
combination against the floor of reading the weights once (14x on the CPU: compute-bound, see
benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from dyn import RunWriter
from dyn.analyze import posthoc
from dyn.analyze.posthoc_cli import snapshots, synthesize
from dyn.layout import Layout, Network, Param
from dyn.reader import open_run

STORED = (0.9, 0.99, 0.999, 0.9995, 0.9997)


def make_run(path: Path, epochs: int, n_params: int, n_buffers: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    params = [Param("w", (n_params,), "param"), Param("bn.running_var", (n_buffers,), "buffer", "float32")]
    layout = Layout(networks=[Network.sgd()] + [Network.ema(d) for d in STORED], params=params,
                    metrics=["iteration"])
    base = rng.standard_normal(n_params).astype(np.float32)
    with RunWriter.create(path, layout, config={"bench": "posthoc"}, durable=False) as w:
        for e in range(epochs):
            weights = {n.name: (base + 0.01 * k + 0.001 * e, np.full(n_buffers, 1.0 + e))
                       for k, n in enumerate(layout.networks)}
            w.append(e, metrics={"iteration": e * steps}, weights=weights)
        w.finish()


class _Clock:
    """Wall and CPU seconds of a block (on a shared machine the CPU figure is the steadier one)."""

    def __enter__(self):
        self.w, self.c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w, time.process_time() - self.c

    def __str__(self):
        return f"{self.wall:.2f} s wall, {self.cpu:.2f} s CPU"


class _Discard:
    """A writer that keeps nothing: the combination alone is timed."""

    def write_weights(self, name, row, params, buffers=None):
        pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="a small shape (20 epochs, 20k parameters)")
    ap.add_argument("--dir", default=None, help="where the synthetic run goes (default: a temp folder)")
    a = ap.parse_args()
    epochs, n_params, n_targets = (20, 20_000, 5) if a.quick else (181, 272_474, 20)
    n_buffers, steps = 1_376, 352
    memories = np.geomspace(20, 20_000, n_targets)
    targets = [posthoc.Target("ema", float(f"{1 - 1 / m:.6g}")) for m in memories]
    print(f"posthoc_bench: {platform.node()}, {os.cpu_count()} CPUs; {epochs} weight records x "
          f"{1 + len(STORED)} networks, {n_params:,} params, {steps} steps/epoch; {len(targets)} decays "
          f"{targets[0].value}..{targets[-1].value} at every epoch")
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        path = Path(d) / "bench.h5"
        t = time.perf_counter()
        make_run(path, epochs, n_params, n_buffers, steps)
        print(f"  synthetic run written: {path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - t:.1f} s")
        with open_run(path) as run:
            snap = snapshots(run)
            with _Clock() as floor:  # the floor: every stored weight read once
                for n in dict.fromkeys(snap[0]):
                    for e in run.weight_epochs():
                        run.params(n, int(e)), run.buffers(n, int(e))
            with _Clock() as solve:
                table, X = posthoc.coefficients(snap[1], snap[2], snap[3], targets, run.weight_epochs())
            J = table["snapshots"]
            with _Clock() as one:  # one solve: the last epoch, one target
                posthoc.coefficients(snap[1], snap[2], snap[3], targets[:1], run.weight_epochs()[-1:])
            with _Clock() as combine:
                synthesize(run, _Discard(), targets, table, X, snap)
        print(f"  solve, all {len(table)} (decay, epoch) pairs: {solve} "
              f"({1e3 * solve.cpu / len(table):.1f} ms CPU each; {J.min()}..{J.max()} snapshots per epoch)")
        print(f"  one solve at epoch {epochs - 1} ({J.iloc[-1]} snapshots, {snap[2].max():,} steps): {one}")
        print(f"  floor, reading every stored weight once: {floor}")
        print(f"  weight combination, all {len(table)} networks: {combine} = {combine.wall / floor.wall:.2f}x "
              f"the floor's wall time, {combine.cpu / floor.cpu:.2f}x its CPU time")
        past = table[table["epoch"] >= 10]
        print(f"  residual past epoch 10: max {past['residual'].max():.2g} (decay {past.loc[past['residual'].idxmax(), 'decay']}), "
              f"median {past['residual'].median():.2g}; coefficients' L1 max {past['l1'].max():.3g}; "
              f"refused (> {posthoc.MAX_RESIDUAL}): {int(past['refused'].sum())}")
        worst = past.groupby("decay")[["residual", "l1"]].max()
        print("  per decay, past epoch 10 (max):")
        for dcy, row in worst.iterrows():
            print(f"    {dcy:<9g} residual {row['residual']:.2g}  L1 {row['l1']:.3g}")


if __name__ == "__main__":
    main()
