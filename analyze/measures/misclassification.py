"""Per-sample misclassification ratio over a window of epochs (Figure 3).

ratio(sample) = 1 - mean over the window's epochs of its correctness, i.e. the
fraction of those epochs in which it was wrong. The default window is the
second half of the recorded epochs (window.second_half: 90..180 for 0..180, the
paper's choice). Counting is done on the packed rows with a bit-sliced vertical
counter (dyn.analyze.kernels.SampleCounts); only the counter's planes are ever unpacked.
"""

from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows
from dyn.analyze.histogram import fraction_histogram
from dyn.analyze.kernels import SampleCounts
from dyn.analyze.window import ChunkWindow, second_half


@dataclass(frozen=True)
class Misclassification:
    epochs: np.ndarray   # (T,) the window's recorded epochs
    correct: np.ndarray  # (n,) int64, window epochs in which each sample was right

    @property
    def t(self) -> int:
        return len(self.epochs)

    @property
    def wrong(self) -> np.ndarray:
        return self.t - self.correct

    @property
    def ratio(self) -> np.ndarray:
        return self.wrong / self.t

    @property
    def always_right(self) -> float:
        """Fraction of samples with ratio 0."""
        return float(np.mean(self.correct == self.t)) if self.correct.size else float("nan")

    @property
    def always_wrong(self) -> float:
        """Fraction of samples with ratio 1."""
        return float(np.mean(self.correct == 0)) if self.correct.size else float("nan")

    @property
    def in_between(self) -> float:
        """Fraction of samples right in some window epochs and wrong in others."""
        return 1.0 - self.always_right - self.always_wrong

    def histogram(self, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Fixed bins on [0, 1] of the ratio, binned exactly (see dyn.analyze.histogram)."""
        return fraction_histogram(self.wrong, self.t, bins)


class MisclassificationAccumulator:
    """Streaming per-sample counts of correct epochs within the window.

    epochs: the epoch numbers of all rows that will be fed, in order;
    window: inclusive (first, last), default the second half of `epochs`.
    """

    def __init__(self, n: int, epochs, window=None):
        self.n = int(n)
        self.window = ChunkWindow(epochs, second_half(epochs) if window is None else window)
        self._counts = SampleCounts(n)

    def add(self, chunk) -> None:
        chunk = check_rows(chunk, self.n)
        self._counts.add(chunk[self.window.take(len(chunk))])

    def result(self) -> Misclassification:
        self.window.done()
        return Misclassification(self.window.window_epochs, self._counts.counts())


def misclassification(rows, n: int, epochs=None, window=None) -> Misclassification:
    """Misclassification ratios of packed rows (T, ceil(n/8)); epochs default 0..T-1."""
    rows = check_rows(rows, n)
    acc = MisclassificationAccumulator(n, np.arange(len(rows)) if epochs is None else epochs, window)
    acc.add(rows)
    return acc.result()
