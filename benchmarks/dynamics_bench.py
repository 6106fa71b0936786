"""Speed and memory of `dyn analyze forgetting | datamap | aum` on an ImageNet-sized
train-presented split, against reading the split's bytes once.

    python benchmarks/dynamics_bench.py                   # 1,281,167 examples x 90 epochs x 6 networks
    python benchmarks/dynamics_bench.py --fraction 0.1    # a tenth of the examples (the ratios hold)
    python benchmarks/dynamics_bench.py --file big.h5 --keep   # reuse the run file between runs
    python benchmarks/dynamics_bench.py --quick           # 1% of the examples x 10 epochs: a smoke run

It writes, through dyn's writer, a train-presented split recorded by 6 networks (SGD and five
EMA decays; `dyn train --record-train` records SGD alone there, so this is six times the real
load): per epoch and network the packed correctness bits, prob and margin as float16 (about 5.3
MB per epoch and network at full size, 2.85 GB in all), 0.1% of the examples not presented
(NaN). Then, with the page cache warm (the file is read once before timing), each in a fresh
process:

  read      every byte of the split once (correct, prob, margin of every network), through h5py
            into arrays, a few epochs at a time: the floor
  <name>    `dyn analyze <name> RUN --top 10` (all 6 networks), as a user runs it
  compute   the command's computation alone (dyn.analyze.commands.<name>.compute, in this
            process: no interpreter start-up, imports or printing), wall and CPU

Printed: seconds (best of --repeat rounds, the commands taking turns within a round), the ratio
to the floor, and the peak resident memory of each (ru_maxrss of the child process); also the
median of each round's own ratio. Targets: each analysis within 2x of the floor, under 1 GB.
--outputs adds what a figure (--out) and the CSV (--csv) cost on top (not part of the target).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

N_IMAGENET = 1_281_167
DECAYS = (0.9, 0.99, 0.999, 0.9995, 0.9999)
ANALYSES = ("forgetting", "datamap", "aum")

READ = """
import sys, h5py, numpy as np
f = h5py.File(sys.argv[1], "r")
g = f["splits/train-presented"]
total = 0
for net in [k for k in g if isinstance(g[k], h5py.Group)]:
    for key in ("correct", "prob", "margin"):
        ds = g[net][key]
        step = max(1, (1 << 22) // ds.shape[1])
        for a in range(0, ds.shape[0], step):
            total += ds[a:a + step].nbytes
print(total)
"""


def make_run(path: Path, n: int, epochs: int, seed: int = 0) -> None:
    from dyn.layout import Layout, Network, Split
    from dyn.writer import Eval, RunWriter

    nets = [Network.sgd()] + [Network.ema(d) for d in DECAYS]
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 1000, n)
    split = Split(labels=labels, num_classes=1000, predicted=False, loss=False, prob=True, margin=True,
                  augmentation="random resized crop + flip", source="training forward pass")
    base = rng.standard_normal(n).astype(np.float32)  # how hard each example is
    with RunWriter.create(path, Layout(networks=nets, splits={"train-presented": split}), {"model": "bench"},
                          overwrite=True, durable=False, swmr=False) as w:
        for e in range(1, epochs + 1):
            evals = {}
            for i, net in enumerate(nets):
                margin = (base + e / epochs * 3 + rng.standard_normal(n, dtype=np.float32)).astype(np.float16)
                prob = (1 / (1 + np.exp(-margin.astype(np.float32)))).astype(np.float16)
                gone = rng.integers(0, n, n // 1000)
                margin[gone] = prob[gone] = np.nan
                evals[net.name] = Eval(correct=margin > 0, prob=prob, margin=margin)
            w.append(e, evals={"train-presented": evals})
        w.finish()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--fraction", type=float, default=1.0, help="Fraction of the 1,281,167 examples.")
    ap.add_argument("--epochs", type=int, default=90)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--file", type=Path, help="Run file to write (or reuse with --keep).")
    ap.add_argument("--keep", action="store_true", help="Keep the file; reuse it when it exists.")
    ap.add_argument("--quick", action="store_true", help="1%% of the examples, 10 epochs, once.")
    ap.add_argument("--outputs", action="store_true",
                    help="Also time each command with --out (its figure) and --csv (slow and large at full size).")
    a = ap.parse_args(argv)
    if a.quick:
        a.fraction, a.epochs, a.repeat = 0.01, 10, 1
    n = max(1000, int(round(N_IMAGENET * a.fraction)))
    path = a.file or Path(tempfile.mkdtemp(prefix="dynamics_bench_")) / "run.h5"
    if not (a.keep and path.exists()):
        t0 = time.perf_counter()
        make_run(path, n, a.epochs)
        print(f"wrote {path}: {n:,} examples x {a.epochs} epochs x 6 networks, "
              f"{path.stat().st_size / 1e6:,.0f} MB in {time.perf_counter() - t0:.0f} s")
    dyn = [sys.executable, "-m", "dyn"]
    read = [sys.executable, "-c", READ, str(path)]
    subprocess.run(read, capture_output=True, check=True)  # warm the page cache
    print(f"load average at the start {os.getloadavg()[0]:.1f}, CPUs {os.cpu_count()}, "
          f"DYN_WORKERS={os.environ.get('DYN_WORKERS', '(one per CPU)')}")
    # each in its own child process: its time, and its own peak memory from wait4; in turns, so
    # that a change in the others' load on a shared machine falls on every command alike
    cmds = [("read", read)] + [(x, dyn + ["analyze", x, str(path), "--top", "10"]) for x in ANALYSES]
    runs = {name: [] for name, _ in cmds}
    for _ in range(a.repeat):
        for name, cmd in cmds:
            runs[name].append(_measure(cmd))
    results = {name: (min(r[0] for r in rs), max(r[1] for r in rs), min(r[2] for r in rs)) for name, rs in runs.items()}
    floor, floor_cpu = results["read"][0], results["read"][2]
    # CPU seconds too: on a shared machine the wall clock depends on the others' load
    print(f"{'':12}{'seconds':>9}{'x read':>8}{'peak MB':>9}{'CPU s':>8}{'x read':>8}   (best of {a.repeat} rounds)")
    for name, (dt, mb, c) in results.items():
        print(f"{name:12}{dt:9.2f}{dt / floor:8.2f}{mb:9.0f}{c:8.2f}{c / floor_cpu:8.2f}")
    three = sum(results[x][0] for x in ANALYSES)
    three_cpu = sum(results[x][2] for x in ANALYSES)
    print(f"{'all three':12}{three:9.2f}{three / floor:8.2f}{'':9}{three_cpu:8.2f}{three_cpu / floor_cpu:8.2f}")
    ratios = {x: np.median([r[0] / f[0] for r, f in zip(runs[x], runs["read"])]) for x in ANALYSES}
    print("x read, median of the rounds' own ratios: " + ", ".join(f"{x} {v:.2f}" for x, v in ratios.items()))
    print(f"{'compute':12}{'seconds':>9}{'x read':>8}{'':9}{'CPU s':>8}{'x read':>8}   (in this process, best of --repeat)")
    for name in ANALYSES:
        dt, c = _compute(name, path, a.repeat)
        print(f"{name:12}{dt:9.2f}{dt / floor:8.2f}{'':9}{c:8.2f}{c / floor_cpu:8.2f}")
    if a.outputs:
        _outputs(dyn, path, a.repeat)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if not a.keep:
        path.unlink()
        if a.file is None:
            path.parent.rmdir()  # the temporary folder made for it


def _outputs(dyn, path: Path, repeat: int) -> None:
    """What a figure (--out) and the CSV (--csv) add to each command: seconds and peak memory."""
    out = Path(tempfile.mkdtemp(prefix="dynamics_bench_out_"))
    print(f"{'outputs':12}{'--top 10':>9}{'--out':>9}{'--csv':>9}{'peak MB':>9}{'--out':>8}{'--csv':>8}   (best of {repeat})")
    for x in ANALYSES:
        base = dyn + ["analyze", x, str(path), "--top", "10"]
        got = [[_measure(c) for _ in range(repeat)]
               for c in (base, base + ["--out", str(out / f"{x}.png")], base + ["--csv", str(out / f"{x}.csv")])]
        secs = [min(r[0] for r in g) for g in got]
        mbs = [max(r[1] for r in g) for g in got]
        print(f"{x:12}{secs[0]:9.2f}{secs[1]:9.2f}{secs[2]:9.2f}{mbs[0]:9.0f}{mbs[1]:8.0f}{mbs[2]:8.0f}")
    for f in out.iterdir():
        f.unlink()
    out.rmdir()


def _compute(name: str, path: Path, repeat: int) -> tuple[float, float]:
    import pandas  # noqa: F401  (the first frame imports it: start-up, not computation)

    from dyn.analyze.api import _opts
    from dyn.analyze.command import load
    from dyn.analyze.inputs import open_runs

    analysis = load(name)
    best, cpu = float("inf"), float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        with open_runs([str(path)]) as runs:
            analysis.compute(runs, _opts(None, None, None, None))
        best, cpu = min(best, time.perf_counter() - t0), min(cpu, time.process_time() - c0)
    return best, cpu


def _measure(cmd) -> tuple[float, float]:
    """Seconds, peak RSS (MB) and CPU seconds of one child, from wait4's own rusage for it."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, ru = os.wait4(p.pid, 0)
    dt = time.perf_counter() - t0
    if status:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed: {p.stderr.read().decode()[-2000:]}")
    return dt, ru.ru_maxrss / 1024, ru.ru_utime + ru.ru_stime


if __name__ == "__main__":
    main()
