"""When each sample's prediction settles: the first epoch of the window from which its
correctness never changes again (the epoch after its last flip).

settled[i] = epochs[k], k = 1 + the last t >= 1 with row[t][i] != row[t-1][i]; epochs[0]
for a sample that never flips within the window. The fraction of samples settled by epoch e
(settled <= e) rises to 1 at the window's last epoch, trivially: what tells networks apart
is how early it gets there, and how much of it is settled right rather than wrong. A window
that ends earlier than training did sees later flips as settling: read it per window.
"""

from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows, unpack
from dyn.analyze.kernels import PreviousRow
from dyn.analyze.window import ChunkWindow


@dataclass(frozen=True)
class Settling:
    epochs: np.ndarray   # (T,) the window's recorded epochs
    settled: np.ndarray  # (N,) int64, the epoch from which the sample's correctness holds
    final: np.ndarray    # (N,) bool, right at the window's last epoch

    def settled_by(self) -> np.ndarray:
        """(T,) fraction of samples settled by each window epoch."""
        return self._by(np.ones(len(self.settled), bool))

    def settled_right_by(self) -> np.ndarray:
        """(T,) fraction of samples settled by each window epoch and right from then on."""
        return self._by(self.final)

    def _by(self, mask) -> np.ndarray:
        n = len(self.settled)
        if not n:
            return np.full(len(self.epochs), np.nan)
        ranks = np.searchsorted(self.epochs, self.settled[mask])  # settled epochs are window epochs
        return np.cumsum(np.bincount(ranks, minlength=len(self.epochs))) / n


class SettlingAccumulator:
    """Streaming settling: feed packed chunks of rows in epoch order."""

    def __init__(self, n: int, epochs, window=None):
        self.n = int(n)
        self.window = ChunkWindow(epochs, window)
        self._previous = PreviousRow()
        self._last_flip = np.zeros(self.n, np.int64)  # row index in the window; 0: never flipped
        self._rows = 0
        self._final = None

    def add(self, chunk) -> None:
        rows = check_rows(chunk, self.n)[self.window.take(len(chunk))]
        head, rows, before = self._previous.split(rows)
        self._rows += len(head)
        if len(rows):
            changed = unpack(np.bitwise_xor(rows, np.concatenate([before, rows[:-1]])), self.n)
            t, i = np.nonzero(changed)  # t increases: the last write per sample is its last flip
            self._last_flip[i] = self._rows + t
            self._rows += len(rows)
            self._final = unpack(rows[-1:], self.n)[0]
        elif len(head):
            self._final = unpack(head, self.n)[0]

    def result(self) -> Settling:
        self.window.done()
        epochs = self.window.window_epochs
        final = np.zeros(self.n, bool) if self._final is None else self._final.astype(bool)
        return Settling(epochs, epochs[self._last_flip], final)


def settling(rows, n: int, epochs=None, window=None) -> Settling:
    """Settling of packed rows (T, ceil(n/8)); epochs default 0..T-1."""
    rows = check_rows(rows, n)
    acc = SettlingAccumulator(n, np.arange(len(rows)) if epochs is None else epochs, window)
    acc.add(rows)
    return acc.result()
