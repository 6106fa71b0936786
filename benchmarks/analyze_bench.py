"""Speed and memory of `dyn analyze` stability, histogram and flips against reading their bits.

    python benchmarks/analyze_bench.py                 # 1,000,000 samples x 1,000 epochs x 6 networks
    python benchmarks/analyze_bench.py --quick         # 100,000 x 200 x 6, a smoke run
    python benchmarks/analyze_bench.py --file big.h5 --keep   # reuse the run file between runs

It writes a run whose correctness bits (about 750 MB at full size) follow a random walk (each
epoch a sample flips with probability 1/8; the cost of the bit operations does not depend on
the bits), then, with the page cache warm, times:

  floor     only reading those bits from the file: through dyn's reader (Run.iter_correct_packed,
            fresh arrays), through h5py into one reused buffer, and with the raw chunk reads
            the analyses use (dyn.analyze.stream, no read-ahead, one thread). The floor is the
            fastest of them. A cold read (after posix_fadvise DONTNEED) is shown for scale.
  compute   the analysis alone on bits already in memory, one thread: what the bits cost
  analysis  the command's own computation (dyn.analyze.commands.<name>.compute, i.e. everything
            `dyn analyze <name> RUN` does but start-up and printing; flips+codes also reads the
            top samples' barcodes, as --out and --json do), four ways: as shipped (C kernels where built, networks in parallel
            threads, one per CPU, reading ahead only when there are fewer networks than CPUs),
            the same with numpy's kernels (analyze/kernels.py's fallback), one thread reading
            ahead, one thread without. Histogram reads only its window (the second half): its
            floor is the raw read of that window's rows, measured.

Every timed call opens the run afresh, as a command does, so nothing read by one call (HDF5's
metadata, chunk addresses) serves the next; the floors and analyses are measured in turns.

and the peak resident memory (ru_maxrss) of each analysis run alone in a fresh process. Times
are the best of --repeat; the CPU load average is printed, since other processes skew them.
Target: analysis within 1.5x of the floor, peak memory under 500 MB.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ANALYSES = ("stability", "histogram", "flips", "flips+codes")  # flips+codes: with the barcodes (--out, --json)
PATH = None  # the bench file, set by run_bench
DECAYS = (0.9, 0.99, 0.999, 0.9995, 0.9997)


def make_run(path: Path, n: int, epochs: int, networks: int, seed: int = 0) -> None:
    from dyn.layout import Layout, Network, Split
    from dyn.writer import RunWriter

    nets = [Network.sgd()] + [Network.ema(d) for d in DECAYS[:networks - 1]]
    split = Split(labels=np.zeros(n, np.int64), num_classes=10, predicted=False, loss=False)
    rng = np.random.default_rng(seed)
    nb = (n + 7) // 8
    rows = {net.name: rng.integers(0, 256, nb, dtype=np.uint8) for net in nets}
    with RunWriter.create(path, Layout(networks=nets, splits={"val": split}), {"model": "bench"},
                          overwrite=True, durable=False) as w:
        for e in range(epochs):
            for name in rows:  # flip 1 bit in 8: the AND of three random bytes
                flip = rng.integers(0, 256, (3, nb), dtype=np.uint8)
                rows[name] = rows[name] ^ (flip[0] & flip[1] & flip[2])
            w.append(e, evals={"val": {name: {"packed": r} for name, r in rows.items()}})
        w.finish()


def timed(repeat: int, fn) -> tuple[float, float]:
    """(best wall time, CPU time of all this process' threads in that call) of `repeat` calls.
    CPU time is what the work costs whatever else the machine runs; wall time is what one waits."""
    out = (float("inf"), float("inf"))
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        out = min(out, (wall, cpu))
    return out


# ------------------------------------------------------------------------------- floors

def fresh(fn):
    """fn(run) on the bench file opened afresh, as each `dyn` command opens it."""
    from dyn.reader import open_run

    def call():
        with open_run(PATH) as run:
            return fn(run)
    return call


def read_reader(run):
    for net in run.networks:
        for _ in run.iter_correct_packed("val", net):
            pass


def read_h5py(run):
    rows = run.rows("split/val")
    width = run.f[f"splits/val/{run.networks[0]}/correct"].shape[1]
    step = max(1, (32 << 20) // width)
    buf = np.empty((step, width), np.uint8)
    for net in run.networks:
        ds = run.f[f"splits/val/{net}/correct"]
        for a in range(0, rows, step):
            b = min(rows, a + step)
            ds.read_direct(buf, np.s_[a:b], np.s_[0:b - a])


def read_raw(run, lo=0, hi=None):
    from dyn.analyze import stream

    hi = run.rows("split/val") if hi is None else hi
    for net in run.networks:
        for _ in stream.chunks(run, "val", net, lo, hi, ahead=False):
            pass


def drop_cache(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
        return True
    except (AttributeError, OSError):
        return False


# ----------------------------------------------------------------------------- analyses

def opts():
    from dyn.analyze.options import SharedOptions

    return SharedOptions(runs=(), nets=None, split="val", first=None, last=None, out=None, csv=None, as_json=False)


def analysis(run, name: str):
    from dyn.analyze.command import load

    if name == "flips+codes":
        return load("flips").compute([run], opts(), barcodes=True)
    return load(name).compute([run], opts())


def accumulators(name: str, n: int, epochs):
    from dyn.analyze.measures.flips import FlipsAccumulator
    from dyn.analyze.measures.misclassification import MisclassificationAccumulator
    from dyn.analyze.measures.stability import StabilityAccumulator

    if name == "stability":
        return StabilityAccumulator(n, epochs)
    if name.startswith("flips"):
        return FlipsAccumulator(n, epochs)
    return MisclassificationAccumulator(n, epochs, (int(epochs[0]), int(epochs[-1])))


def compute_only(name: str, bits: np.ndarray, epochs, networks: int, chunk_rows: int):
    """The accumulator fed from memory (one network's bits, once per network): no reading."""
    for _ in range(networks):
        acc = accumulators(name, bits.shape[1] * 8, epochs)
        for a in range(0, len(bits), chunk_rows):
            acc.add(bits[a:a + chunk_rows])
        acc.result()


def window_rows(run, name):
    from dyn.analyze.window import second_half, select

    w = select(run, "val", default=second_half if name == "histogram" else None)
    return w.lo, w.hi


def child(path: str, name: str) -> None:
    """Run one analysis in this (fresh) process and print its peak resident memory."""
    from dyn.reader import open_run

    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with open_run(path) as run:
        analysis(run, name)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{peak * 1024} {base * 1024} {_hwm()}")


def _hwm() -> int:
    """VmHWM: the peak RSS of this process image alone (Linux), in bytes; 0 elsewhere."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM"))
    except (OSError, StopIteration):
        return 0


def peak_memory(path: Path, name: str) -> tuple[float, float, float]:
    """(ru_maxrss, ru_maxrss before the analysis, VmHWM) of a fresh process, MB. Linux carries
    the parent's peak into a child's ru_maxrss over exec: call this while the parent is small."""
    r = subprocess.run([sys.executable, __file__, "--child", name, str(path)], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    if r.returncode:
        raise SystemExit(f"child {name} failed: {r.stderr}")
    peak, base, hwm = map(int, r.stdout.split())
    return peak / 1e6, base / 1e6, hwm / 1e6


# --------------------------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=1000)
    ap.add_argument("--networks", type=int, default=6, choices=range(1, 7))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--file", type=Path, help="run file to use (made if missing)")
    ap.add_argument("--keep", action="store_true", help="keep the run file")
    ap.add_argument("--quick", action="store_true", help="100,000 samples x 200 epochs")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        return child(a.child[1], a.child[0])
    if a.quick:
        a.samples, a.epochs, a.repeat = 100_000, 200, 2
    tmp = None
    path = a.file
    if path is None:
        tmp = tempfile.TemporaryDirectory(prefix="analyze_bench.", dir=os.environ.get("TMPDIR"))
        path = Path(tmp.name) / "bench.h5"
    try:
        run_bench(a, path)
    finally:
        if tmp is not None and not a.keep:
            tmp.cleanup()
        elif tmp is not None:
            print(f"kept {path}")


def variant(workers=None, ahead=None, numpy_kernels=False):
    """A context in which analyses run as one of the compared configurations."""
    import contextlib

    from dyn.analyze import kernels, stream

    @contextlib.contextmanager
    def ctx():
        saved_env, saved_lib = os.environ.get("DYN_WORKERS"), kernels._lib
        if workers is not None:
            os.environ["DYN_WORKERS"] = str(workers)
        stream.READ_AHEAD = ahead
        if numpy_kernels:
            kernels._lib = lambda: None
        try:
            yield
        finally:
            stream.READ_AHEAD = None
            kernels._lib = saved_lib
            if saved_env is None:
                os.environ.pop("DYN_WORKERS", None)
            else:
                os.environ["DYN_WORKERS"] = saved_env
    return ctx


def in_turns(repeat: int, jobs: dict) -> dict:
    """{key: (best wall, CPU of that call)}, every job timed once per round, round after round:
    a load that comes and goes then weighs on all of them alike."""
    out = {k: (float("inf"), float("inf")) for k in jobs}
    for _ in range(repeat):
        for k, (ctx, fn) in jobs.items():
            with ctx():
                out[k] = min(out[k], timed(1, fn))
    return out


def run_bench(a, path: Path):
    import contextlib

    global PATH
    from dyn.analyze import kernels, stream
    from dyn.analyze.stream import workers
    from dyn.reader import open_run

    if not path.exists():
        t = time.perf_counter()
        make_run(path, a.samples, a.epochs, a.networks)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    PATH = path
    memory = {name: peak_memory(path, name) for name in ANALYSES}  # first, while this process is small
    with open_run(path) as run:
        n, epochs, nets = run.split_size("val"), run.epochs("val"), run.networks
        sample = run.correct_packed("val", nets[0])  # one network's bits, for compute-only
        windows = {name: window_rows(run, name) for name in ANALYSES}
    bits = len(nets) * len(epochs) * ((n + 7) // 8)
    print(f"analyze_bench: {n:,} samples x {len(epochs):,} epochs x {len(nets)} networks = "
          f"{bits / 1e6:,.0f} MB of bits ({path.stat().st_size / 1e6:,.0f} MB file); "
          f"{workers()} CPUs, load average {os.getloadavg()[0]:.2f}; kernels: {kernels.backend()}; "
          f"best of {a.repeat}, in turns")
    fresh(read_raw)()  # warm the page cache
    plain = contextlib.nullcontext
    jobs = {"reader (Run.iter_correct_packed)": (plain, fresh(read_reader)),
            "h5py read_direct, reused buffer": (plain, fresh(read_h5py)),
            "raw chunk reads (dyn.analyze.stream)": (plain, fresh(read_raw))}
    half = windows["histogram"]
    jobs["window"] = (plain, fresh(lambda run: read_raw(run, *half)))  # the histogram's own floor
    chunk_rows = max(1, stream.READ_BYTES // sample.shape[1])
    ways = {"shipped": variant(), "numpy": variant(numpy_kernels=True),
            "1 ahead": variant(workers=1, ahead=True), "1 plain": variant(workers=1, ahead=False)}
    for name in ANALYSES:
        lo, hi = windows[name]
        jobs[(name, "compute")] = (plain, lambda name=name, lo=lo, hi=hi: compute_only(
            name, sample[lo:hi], epochs[lo:hi], len(nets), chunk_rows))
        for way, ctx in ways.items():
            jobs[(name, way)] = (ctx, fresh(lambda run, name=name: analysis(run, name)))
    got = in_turns(a.repeat, jobs)

    floors = {k: v for k, v in got.items() if isinstance(k, str) and k != "window"}
    floor, floor_cpu = min(floors.values())
    print("floor: reading the bits, page cache warm        wall      CPU")
    for k, (v, c) in floors.items():
        print(f"  {k:38s} {v:7.3f} s {c:7.3f} s  {bits / v / 1e9:5.2f} GB/s")
    cold = None
    if drop_cache(path):
        t = time.perf_counter()
        fresh(read_raw)()
        cold = time.perf_counter() - t
        print(f"  {'cold read (after fadvise DONTNEED)':38s} {cold:7.3f} s {'':9s}  {bits / cold / 1e9:5.2f} GB/s"
              "  (not the floor)")
    print(f"  floor = {floor:.3f} s wall, {floor_cpu:.3f} s CPU; of the histogram's window (rows "
          f"{half[0]}..{half[1] - 1}): {got['window'][0]:.3f} s wall, {got['window'][1]:.3f} s CPU\n")

    print(f"{'':20s} {'floor':>15s} {'compute':>8s} {'shipped':>15s} {'numpy':>8s} {'1 ahead':>8s} {'1 plain':>8s} "
          f"{'shipped/floor':>15s} {'peak':>6s}")
    print(f"{'analysis':12s} {'bits':>9s} {'wall':>7s} {'CPU':>7s} {'CPU':>8s} {'wall':>7s} {'CPU':>7s} "
          f"{'wall':>8s} {'wall':>8s} {'wall':>8s} {'wall':>7s} {'CPU':>7s} {'MB':>6s}")
    results = {}
    for name in ANALYSES:
        lo, hi = windows[name]
        share = (hi - lo) / len(epochs)
        f, fc = got["window"] if (lo, hi) == half and share < 1 else (floor, floor_cpu)
        shipped, cpu = got[(name, "shipped")]
        peak, base, hwm = memory[name]
        results[name] = (shipped / f, cpu / fc)
        print(f"{name:12s} {share * bits / 1e6:7.0f}MB {f:7.3f} {fc:7.3f} {got[(name, 'compute')][1]:8.3f} "
              f"{shipped:7.3f} {cpu:7.3f} {got[(name, 'numpy')][0]:8.3f} {got[(name, '1 ahead')][0]:8.3f} "
              f"{got[(name, '1 plain')][0]:8.3f} {shipped / f:6.2f}x {cpu / fc:6.2f}x {peak:6.0f}")
    if cold is not None and drop_cache(path):
        t = time.perf_counter()
        fresh(lambda run: analysis(run, "stability"))()
        cold_s = time.perf_counter() - t
        print(f"stability, cold (after fadvise DONTNEED) {cold_s:7.3f} s wall, {cold_s / cold:.2f}x the cold read")
    print("\n(seconds. shipped/floor: target <= 1.5x in wall time; CPU time shows what the work costs "
          "whatever else runs. compute: the analysis alone on bits in memory. numpy: as shipped but with "
          "numpy's kernels. peak: ru_maxrss of the analysis alone in a fresh process (VmHWM "
          + ", ".join(f"{k} {v[2]:.0f}" for k, v in memory.items())
          + f"), {base:.0f} MB of it before the analysis starts; target < 500 MB)")
    print("ratios (wall, CPU): " + ", ".join(f"{k} {w:.2f}x, {c:.2f}x" for k, (w, c) in results.items())
          + f"; load average now {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
