"""Correctness flips per sample, the least stable samples, and their barcodes (Figures 4, 7).

flips(sample) = number of consecutive recorded epochs within the window between
which its correctness changed: the vertical popcount of row[t] XOR row[t-1].
A window of T epochs has T - 1 transitions; the row before the window is not
used (as in dyn.analyze.measures.stability).
"""

from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows
from dyn.analyze.kernels import PreviousRow, SampleCounts
from dyn.analyze.window import ChunkWindow
from dyn.format import packed_width

RANK_BY = ("sgd", "ema", "sum", "stability")


@dataclass(frozen=True)
class Flips:
    epochs: np.ndarray  # (T,) the window's recorded epochs
    flips: np.ndarray   # (n,) int64

    @property
    def transitions(self) -> int:
        return max(len(self.epochs) - 1, 0)

    @property
    def stability(self) -> np.ndarray:
        """Per-sample stability as the authors' code defines it: 1 - flips / (T - 1)."""
        if self.transitions == 0:
            raise ValueError("per-sample stability needs at least two epochs in the window")
        return 1.0 - self.flips / self.transitions


class FlipsAccumulator:
    """Streaming flips per sample: feed packed chunks of rows in epoch order."""

    def __init__(self, n: int, epochs, window=None):
        self.n = int(n)
        self.window = ChunkWindow(epochs, window)
        self._previous = PreviousRow()
        self._counts = SampleCounts(n)

    def add(self, chunk) -> None:
        rows = check_rows(chunk, self.n)[self.window.take(len(chunk))]
        _, rows, before = self._previous.split(rows)
        if len(rows):
            self._counts.add_successive(rows, before)

    def result(self) -> Flips:
        self.window.done()
        return Flips(self.window.window_epochs, self._counts.counts())


def flips_per_sample(rows, n: int, epochs=None, window=None) -> Flips:
    """Flips per sample of packed rows (T, ceil(n/8)); epochs default 0..T-1."""
    rows = check_rows(rows, n)
    acc = FlipsAccumulator(n, np.arange(len(rows)) if epochs is None else epochs, window)
    acc.add(rows)
    return acc.result()


def top_flips(sgd, ema=None, k: int = 10, rank_by: str | None = None,
              transitions: int | None = None) -> np.ndarray:
    """Indices of the k least stable samples, most flips first; ties by sample index.

    sgd, ema: flips per sample of the two networks over the same window.
    rank_by: "sgd" or "ema" (that network's flips), "sum" (their total; the
    default when ema is given, else "sgd"), or
    "stability": the authors' ranking, the sum of the two networks' per-sample
    stability 1 - flips / transitions, lowest first. Over one shared window that
    orders samples exactly as "sum" does; it is computed on the integer flip
    counts for that reason, so that ties cannot be split by rounding.
    """
    if rank_by is None:
        rank_by = "sgd" if ema is None else "sum"
    if rank_by not in RANK_BY:
        raise ValueError(f"rank_by must be one of {', '.join(RANK_BY)}; got {rank_by!r}")
    sgd = np.asarray(sgd, dtype=np.int64)
    if rank_by != "sgd":
        if ema is None:
            raise ValueError(f"rank_by={rank_by!r} needs the EMA network's flips")
        ema = np.asarray(ema, dtype=np.int64)
        if ema.shape != sgd.shape:
            raise ValueError(f"flip arrays differ in shape: {sgd.shape} vs {ema.shape}")
    if rank_by == "stability" and not transitions:
        raise ValueError("rank_by='stability' needs transitions >= 1 (window of 2+ epochs)")
    key = {"sgd": lambda: sgd, "ema": lambda: ema}.get(rank_by, lambda: sgd + ema)()
    k = min(int(k), key.size)
    if k <= 0:
        return np.zeros(0, np.int64)
    # Partition first (n can be 10**6), keeping every sample tied with the k-th.
    kth = np.partition(key, key.size - k)[key.size - k]
    cand = np.flatnonzero(key >= kth)
    return cand[np.lexsort((cand, -key[cand]))][:k].astype(np.int64)


def barcode(rows, sample_indices, n: int) -> np.ndarray:
    """(k, T) bool: correctness of the chosen samples at every row.

    rows: packed (T, ceil(n/8)) array-like supporting rows[:, byte_columns]
    (numpy, or an h5py dataset: only the needed byte columns are read), or an
    iterable of packed chunks in epoch order.
    """
    idx = np.asarray(sample_indices, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"sample indices must lie in 0..{n - 1}")
    cols, where = np.unique(idx // 8, return_inverse=True)  # sorted, as h5py requires
    if hasattr(rows, "shape"):
        if len(rows.shape) != 2 or rows.shape[1] != packed_width(n):
            raise ValueError(f"expected packed rows (T, {packed_width(n)}), got {rows.shape}")
        sub = np.asarray(rows[:, cols], dtype=np.uint8)
    else:
        parts = [check_rows(c, n)[:, cols] for c in rows]
        sub = np.concatenate(parts) if parts else np.zeros((0, cols.size), np.uint8)
    shift = (7 - idx % 8).astype(np.uint8)
    return ((sub[:, where] >> shift) & 1).astype(bool).T
