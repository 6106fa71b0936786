"""The epoch window: which recorded rows an analysis looks at. The one place that maps epochs
to rows.

Rows come with their epoch numbers (epoch 0 = the initial weights), strictly increasing but
not necessarily from 0 or without gaps. A window is an inclusive pair of epoch numbers
(first, last), either end None for "open"; since epochs increase, it always selects one
contiguous run of rows, lo..hi-1. The spelling is fixed: `first`/`last` are epochs (both
inclusive), `lo`/`hi` rows (hi exclusive), `--from-epoch`/`--to-epoch` the flags (and the
Python API's from_epoch/to_epoch) that give first and last.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dyn.errors import DynError, RunFileError, UsageError


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
    """Row range [lo, hi) of the recorded epochs within the inclusive window (first, last)."""
    return _rows_in(check_epochs(epochs), window)


def _rows_in(epochs: np.ndarray, window) -> tuple[int, int]:  # epochs already checked
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


@dataclass(frozen=True)
class EpochWindow:
    """Recorded rows lo..hi-1 of a split, and their epochs."""

    lo: int
    hi: int
    epochs: np.ndarray

    @property
    def rows(self) -> slice:
        return slice(self.lo, self.hi)

    @property
    def span(self) -> str:
        return f"{self.epochs[0]}..{self.epochs[-1]}"


def _check_flags(first, last, e0: int, e1: int, where: str) -> None:
    """The --from-epoch/--to-epoch checks every window makes: in order, and within e0..e1."""
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from-epoch {first} is after --to-epoch {last}")
    for flag, v in (("--from-epoch", first), ("--to-epoch", last)):
        if v is not None and not e0 <= v <= e1:
            raise UsageError(f"{flag} {v} is outside the {where}")


def select(run, split: str, first=None, last=None, need: int = 1, what: str = "this analysis",
           default=None) -> EpochWindow:
    """The rows of `split` in the inclusive epoch window [first, last]; both ends, when given,
    must lie within the recorded epochs. default(epochs) -> (first, last) fills in open ends
    only when neither was given (e.g. second_half)."""
    ep = run.epochs(split)
    if not len(ep):
        raise RunFileError(f"{run.path}: split {split!r} has no recorded epochs yet")
    _check_flags(first, last, int(ep[0]), int(ep[-1]),
                 f"recorded epochs {ep[0]}..{ep[-1]} of split {split!r} in {run.path}")
    if first is None and last is None and default is not None:
        first, last = default(ep)
    try:
        lo, hi = rows_in(ep, (first, last))
    except ValueError:
        raise UsageError(f"the epoch window {first}..{last} holds no recorded epoch of split {split!r} "
                         f"in {run.path}") from None
    if hi - lo < need:
        held = f"{hi - lo} (epoch {ep[lo]})" if hi - lo == 1 else str(hi - lo)
        where = "the run" if hi - lo == len(ep) else f"the window {ep[lo]}..{ep[hi - 1]}"
        raise DynError(f"{run.path}: {what} needs at least {need} recorded epochs; {where} of split "
                       f"{split!r} has {held}", exit_code=1 if hi - lo == len(ep) else 2)
    return EpochWindow(lo, hi, ep[lo:hi])


def select_weights(run, first=None, last=None) -> np.ndarray:
    """The epochs with weights in the inclusive window [first, last]."""
    ep = run.weight_epochs()
    _check_flags(first, last, int(ep[0]), int(ep[-1]), f"epochs {ep[0]}..{ep[-1]} with weights in {run.path}")
    try:
        lo, hi = rows_in(ep, (first, last))
    except ValueError:
        raise UsageError(f"no weights recorded between epochs {first} and {last} in {run.path}") from None
    return ep[lo:hi]


class ChunkWindow:
    """Follows rows fed chunk by chunk and says which part of each chunk lies in the window:
    what lets a streaming accumulator be fed a whole split and keep only the window."""

    def __init__(self, epochs, window=None):
        self.epochs = check_epochs(epochs)
        self.lo, self.hi = _rows_in(self.epochs, window)
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
