"""Streaming analyses hold memory independent of the number of epochs."""

import tracemalloc

import numpy as np

from dyn.analyze.measures.agreement import AgreementAccumulator
from dyn.analyze.measures.flips import FlipsAccumulator
from dyn.analyze.measures.misclassification import MisclassificationAccumulator
from dyn.analyze.measures.stability import StabilityAccumulator

N, CHUNK = 200_000, 16


def chunks(epochs, seed):
    rng = np.random.default_rng(seed)
    for _ in range(0, epochs, CHUNK):
        yield rng.integers(0, 256, (CHUNK, N // 8), dtype=np.uint8)


def peak_bytes(epochs):
    # numpy reports its buffers to tracemalloc; the peak covers one chunk being made,
    # the accumulators' state and their temporaries
    accs = [StabilityAccumulator(N, np.arange(epochs)), FlipsAccumulator(N, np.arange(epochs)),
            MisclassificationAccumulator(N, np.arange(epochs))]
    agree = AgreementAccumulator(N, np.arange(epochs))
    tracemalloc.start()
    try:
        for a, b in zip(chunks(epochs, 1), chunks(epochs, 2)):
            for acc in accs:
                acc.add(a)
            agree.add(a, b)
        for acc in accs + [agree]:
            acc.result()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_peak_memory_does_not_grow_with_epochs():
    short, long = min(peak_bytes(64) for _ in range(2)), min(peak_bytes(1024) for _ in range(2))
    chunk = CHUNK * N // 8
    all_bits = 1024 * N // 8          # 25.6 MB: what keeping rows (or diffs) around would cost
    # 16x the epochs may add a few bit planes (25 kB each) and per-epoch counts, and the
    # peak moves by a few hundred kB with allocation order; it must not move by chunks
    assert long < short + 5 * chunk < short + all_bits / 10, (short, long)
    assert long < 40 * chunk
