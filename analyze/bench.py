"""Speed and memory of the packed-bit analyses against a plain read of the same bytes.

    python -m analyze.bench --samples 1000000 --epochs 200

The rows are random bytes held in memory (the cost of bit operations does not
depend on the bits), handed out in chunks of epochs as the run-file reader
does. Baselines: copying each chunk into a reused buffer (every byte read once,
the cheapest honest "read"), and into a fresh array per chunk (what a file
reader returns). Times are the best of --repeat runs.
"""

import argparse
import time
import tracemalloc

import numpy as np

from analyze.agreement import AgreementAccumulator
from analyze.flips import FlipsAccumulator
from analyze.misclassification import MisclassificationAccumulator
from analyze.stability import StabilityAccumulator


def best_of(repeat, fn):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--chunk-rows", type=int, default=32)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args(argv)

    n, t = a.samples, a.epochs
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 256, (t, (n + 7) // 8), dtype=np.uint8)
    other = rng.integers(0, 256, rows.shape, dtype=np.uint8)
    epochs = np.arange(t)
    chunks = lambda r=rows: (r[i:i + a.chunk_rows] for i in range(0, t, a.chunk_rows))  # noqa: E731
    buf = np.empty((a.chunk_rows, rows.shape[1]), np.uint8)

    def feed(*accs):
        for c in chunks():
            for acc in accs:
                acc.add(c)
        for acc in accs:
            acc.result()

    def agree():
        acc = AgreementAccumulator(n, epochs)
        for c, d in zip(chunks(), chunks(other)):
            acc.add(c, d)
        acc.result()

    cases = {
        "read: copy into a reused buffer": lambda: [np.copyto(buf[:len(c)], c) for c in chunks()],
        "read: copy into fresh arrays": lambda: [c.copy() for c in chunks()],
        "stability + accuracy": lambda: feed(StabilityAccumulator(n, epochs)),
        "misclassification (2nd half)": lambda: feed(MisclassificationAccumulator(n, epochs)),
        "flips": lambda: feed(FlipsAccumulator(n, epochs)),
        "stability + misclassification + flips": lambda: feed(
            StabilityAccumulator(n, epochs), MisclassificationAccumulator(n, epochs),
            FlipsAccumulator(n, epochs)),
        "agreement (2 networks' bits)": agree,
    }
    print(f"{n:,} samples x {t} epochs = {rows.nbytes / 1e6:.1f} MB of bits per network, "
          f"chunks of {a.chunk_rows} epochs, best of {a.repeat}")
    base = None
    for name, fn in cases.items():
        s = best_of(a.repeat, fn)
        base = base or s
        print(f"  {name:40s} {s * 1e3:8.1f} ms  {s / base:5.1f}x  {rows.nbytes / s / 1e9:5.2f} GB/s")

    tracemalloc.start()
    feed(StabilityAccumulator(n, epochs), MisclassificationAccumulator(n, epochs),
         FlipsAccumulator(n, epochs))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"  peak traced memory of the three in one pass: {peak / 1e6:.1f} MB "
          f"(the bits themselves, held by this benchmark: {2 * rows.nbytes / 1e6:.0f} MB, not counted)")


if __name__ == "__main__":
    main()
