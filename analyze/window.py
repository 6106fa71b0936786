"""Epoch windows: which recorded rows an analysis looks at.

Rows come with their epoch numbers (epoch 0 = the initial weights), strictly
increasing but not necessarily from 0 or without gaps. A window is an inclusive
pair of epoch numbers (first, last), either end None for "open"; since epochs
increase, it always selects one contiguous run of rows.
"""

import numpy as np


def check_epochs(epochs) -> np.ndarray:
    """1-D int64, strictly increasing, or ValueError."""
    e = np.asarray(epochs)
    if e.ndim != 1 or (e.size and not np.issubdtype(e.dtype, np.integer)):
        raise ValueError(f"epochs must be a 1-D integer array, got {e.dtype} {e.shape}")
    e = e.astype(np.int64)
    if e.size > 1 and not (np.diff(e) > 0).all():
        raise ValueError("epochs must be strictly increasing")
    return e


def rows_in(epochs: np.ndarray, window=None) -> tuple[int, int]:
    """Row range [lo, hi) of the recorded epochs within the inclusive window."""
    epochs = check_epochs(epochs)
    first, last = (None, None) if window is None else window
    lo = 0 if first is None else int(np.searchsorted(epochs, first, side="left"))
    hi = len(epochs) if last is None else int(np.searchsorted(epochs, last, side="right"))
    if hi <= lo:
        rec = f"{epochs[0]}..{epochs[-1]}" if len(epochs) else "none"
        raise ValueError(f"window [{first}, {last}] holds no recorded epoch (recorded: {rec})")
    return lo, hi


def second_half(epochs) -> tuple[int, int]:
    """The default window for per-sample ratios: (first + (last - first) // 2, last).

    For epochs 0..180 that is 90..180, the paper's Figure 3 window (91 epochs).
    """
    epochs = check_epochs(epochs)
    if not len(epochs):
        raise ValueError("no recorded epochs")
    first, last = int(epochs[0]), int(epochs[-1])
    return first + (last - first) // 2, last


class Cursor:
    """Follows rows fed chunk by chunk and says which part of a chunk is in the window."""

    def __init__(self, epochs, window=None):
        self.epochs = check_epochs(epochs)
        self.lo, self.hi = rows_in(self.epochs, window)
        self.seen = 0

    @property
    def window_epochs(self) -> np.ndarray:
        return self.epochs[self.lo:self.hi]

    def take(self, t: int) -> slice:
        """Advance over a chunk of t rows; the slice of it that lies in the window."""
        a, b = self.seen, self.seen + t
        if b > len(self.epochs):
            raise ValueError(f"fed {b} rows but only {len(self.epochs)} epochs were declared")
        self.seen = b
        return slice(min(max(self.lo - a, 0), t), max(min(self.hi - a, t), 0))

    def done(self) -> None:
        """ValueError unless every row of the window was fed."""
        if self.seen < self.hi:
            raise ValueError(f"fed {self.seen} rows; the window needs rows up to {self.hi} "
                             f"(epoch {self.epochs[self.hi - 1]})")
