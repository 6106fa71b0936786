"""Prediction stability over epochs (the paper's Figures 2 and 6), and accuracy.

stability[t] = fraction of samples whose correctness at epoch t equals that at
the previous recorded epoch: 1 - popcount(row[t] XOR row[t-1]) / N.

Window choice: stability is reported for every window epoch that has a
predecessor *inside* the window, i.e. for epochs[1:] of the window; the row
before the window is never read. A window 0..180 gives stability at 1..180, as
the paper plots. When epochs were recorded with gaps (say every 2 epochs),
"previous" means the previous recorded epoch, and the value at t compares t
with t-2: that is what the data allows, so `epochs` is returned with the values.
"""

from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows
from dyn.analyze.kernels import RowCounts, PreviousRow
from dyn.analyze.window import ChunkWindow


@dataclass(frozen=True)
class Stability:
    epochs: np.ndarray   # (T,) the window's recorded epochs
    n: int               # samples
    correct: np.ndarray  # (T,) int64, samples right at each epoch
    changed: np.ndarray  # (T-1,) int64, samples whose correctness changed at epochs[1:]

    @property
    def accuracy(self) -> np.ndarray:
        return self.correct / self.n

    @property
    def stability_epochs(self) -> np.ndarray:
        return self.epochs[1:]

    @property
    def stability(self) -> np.ndarray:
        return (self.n - self.changed) / self.n


class StabilityAccumulator:
    """Streaming stability: feed packed chunks of rows in epoch order.

    epochs: the epoch numbers of all rows that will be fed (rows outside the
    window are skipped). Keeps one row between chunks.
    """

    def __init__(self, n: int, epochs, window=None):
        self.n = int(n)
        self.window = ChunkWindow(epochs, window)
        self._count = RowCounts(n)
        self._previous = PreviousRow()
        self._correct, self._changed = [], []

    def add(self, chunk) -> None:
        rows = check_rows(chunk, self.n)[self.window.take(len(chunk))]
        head, rows, before = self._previous.split(rows)
        self._correct.append(self._count.ones(head))  # the first row ever: nothing changed yet
        if len(rows):
            ones, differ = self._count.successive(rows, before)
            self._correct.append(ones)
            self._changed.append(differ)

    def result(self) -> Stability:
        self.window.done()
        cat = lambda xs: np.concatenate(xs) if xs else np.zeros(0, np.int64)  # noqa: E731
        return Stability(self.window.window_epochs, self.n, cat(self._correct), cat(self._changed))


def stability(rows, n: int, epochs=None, window=None) -> Stability:
    """Stability and accuracy of packed rows (T, ceil(n/8)); epochs default 0..T-1."""
    rows = check_rows(rows, n)
    acc = StabilityAccumulator(n, np.arange(len(rows)) if epochs is None else epochs, window)
    acc.add(rows)
    return acc.result()
