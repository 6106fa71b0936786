"""Agreement and mismatch of two networks recorded over the same epochs.

Mismatch, as the authors' code defines it: per epoch, the fraction of samples
whose correctness differs between the two networks; per sample, the fraction of
epochs in which it differs. Optionally also, per epoch, the fraction of samples
whose predicted labels differ (two wrong networks can disagree on the label
while agreeing on correctness; this is "prediction churn").
"""

from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows
from dyn.analyze.histogram import fraction_histogram
from dyn.analyze.kernels import RowCounts, SampleCounts
from dyn.analyze.window import ChunkWindow


@dataclass(frozen=True)
class Agreement:
    epochs: np.ndarray                  # (T,) the window's recorded epochs
    n: int                              # samples
    correct_differs: np.ndarray         # (T,) int64, samples whose correctness differs
    mismatch: np.ndarray                # (n,) int64, epochs in which each sample's correctness differs
    label_differs: np.ndarray | None = None  # (T,) int64, samples whose predicted label differs

    @property
    def epoch_mismatch(self) -> np.ndarray:
        """Per epoch: fraction of samples whose correctness differs."""
        return self.correct_differs / self.n

    @property
    def label_mismatch(self) -> np.ndarray | None:
        """Per epoch: fraction of samples whose predicted labels differ (None if not given)."""
        return None if self.label_differs is None else self.label_differs / self.n

    @property
    def sample_mismatch(self) -> np.ndarray:
        """Per sample: fraction of the window's epochs in which correctness differs."""
        return self.mismatch / len(self.epochs)

    def histogram(self, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """Fixed bins on [0, 1] of the per-sample mismatch, binned exactly."""
        return fraction_histogram(self.mismatch, len(self.epochs), bins)


class AgreementAccumulator:
    """Streaming agreement: feed both networks' chunks of the same rows together."""

    def __init__(self, n: int, epochs, window=None):
        self.n = int(n)
        self.window = ChunkWindow(epochs, window)
        self._count = RowCounts(n)
        self._counts = SampleCounts(n)
        self._differs, self._labels = [], []
        self._with_labels = None

    def add(self, chunk_a, chunk_b, labels_a=None, labels_b=None) -> None:
        """Packed chunks (T, ceil(n/8)) of networks a and b; labels (T, n) ints or both None."""
        a, b = check_rows(chunk_a, self.n), check_rows(chunk_b, self.n)
        if a.shape != b.shape:
            raise ValueError(f"chunks differ in shape: {a.shape} vs {b.shape}")
        with_labels = labels_a is not None or labels_b is not None
        if self._with_labels is not None and with_labels != self._with_labels:
            raise ValueError("give predicted labels for every chunk or for none")
        if with_labels:
            la, lb = np.asarray(labels_a), np.asarray(labels_b)
            if la.shape != (len(a), self.n) or lb.shape != la.shape:
                raise ValueError(f"labels must be ({len(a)}, {self.n}); got {la.shape} and {lb.shape}")
        self._with_labels = with_labels
        sl = self.window.take(len(a))  # only now: a refused chunk must not count as fed
        if with_labels:
            self._labels.append(np.count_nonzero(la[sl] != lb[sl], axis=1).astype(np.int64))
        self._differs.append(self._count.differ(a[sl], b[sl]))
        self._counts.add(a[sl], b[sl])

    def result(self) -> Agreement:
        self.window.done()
        labels = np.concatenate(self._labels) if self._with_labels else None
        return Agreement(self.window.window_epochs, self.n, np.concatenate(self._differs),
                         self._counts.counts(), labels)


def agreement(rows_a, rows_b, n: int, epochs=None, window=None,
              labels_a=None, labels_b=None) -> Agreement:
    """Agreement of two networks' packed rows (T, ceil(n/8)); epochs default 0..T-1."""
    rows_a = check_rows(rows_a, n)
    acc = AgreementAccumulator(n, np.arange(len(rows_a)) if epochs is None else epochs, window)
    acc.add(rows_a, rows_b, labels_a, labels_b)
    return acc.result()
