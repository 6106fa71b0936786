"""Accuracy curves, and seed bands for runs that differ only in seed (Figure 1).

Band choice: by default the band spans min..max over seeds. With the paper's
three seeds a standard deviation is a poor estimate, and min/max shows exactly
what was observed (and collapses to the line for one seed); kind="std" gives
mean +- sample standard deviation (ddof=1; NaN, i.e. no band, for one seed).

The learning-rate panel of Figure 1 needs lr per epoch. Its closed form belongs
to the training stage (train/); lr_at() is the hook: give it that function and
the epochs, and pass the result to dyn.analyze.plot.accuracy.
"""

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from dyn.analyze.bits import check_rows
from dyn.analyze.kernels import RowCounts
from dyn.analyze.runs import CONFIG_KEYS, group_seeds
from dyn.analyze.window import check_epochs

BANDS = ("minmax", "std")


@dataclass(frozen=True)
class Band:
    epochs: np.ndarray  # (E,) epochs common to all runs
    mean: np.ndarray    # (E,)
    lo: np.ndarray      # (E,) lower edge of the band
    hi: np.ndarray      # (E,) upper edge
    n_runs: int
    kind: str           # "minmax" or "std"


def accuracy(rows, n: int) -> np.ndarray:
    """Fraction right at each packed row (T, ceil(n/8)): the ones each row holds (the kernel
    that counts Stability's `correct` too), over n."""
    return RowCounts(n).ones(check_rows(rows, n)) / n


class AccuracyAccumulator:
    """accuracy() of packed rows fed chunk by chunk, in epoch order."""

    def __init__(self, n: int):
        self.n, self.parts, self._count = int(n), [], RowCounts(n)

    def add(self, chunk) -> None:
        self.parts.append(self._count.ones(check_rows(chunk, self.n)) / self.n)

    def result(self) -> np.ndarray:
        return np.concatenate(self.parts) if self.parts else np.zeros(0)


def seed_band(curves, kind: str = "minmax") -> Band:
    """Mean and band over curves [(epochs, values), ...], on the epochs all of them have."""
    if kind not in BANDS:
        raise ValueError(f"kind must be one of {', '.join(BANDS)}; got {kind!r}")
    curves = [(check_epochs(e), np.asarray(v, dtype=np.float64)) for e, v in curves]
    if not curves:
        raise ValueError("no curves to average")
    for e, v in curves:
        if v.shape != e.shape:
            raise ValueError(f"a curve has {v.size} values for {e.size} epochs")
    common = curves[0][0]
    for e, _ in curves[1:]:
        common = np.intersect1d(common, e)
    if not common.size:
        raise ValueError("the runs share no recorded epoch")
    stack = np.stack([v[np.searchsorted(e, common)] for e, v in curves])
    mean = stack.mean(axis=0)
    if kind == "minmax":
        lo, hi = stack.min(axis=0), stack.max(axis=0)
    else:
        sd = stack.std(axis=0, ddof=1) if len(stack) > 1 else np.full(mean.shape, np.nan)
        lo, hi = mean - sd, mean + sd
    return Band(common, mean, lo, hi, len(stack), kind)


def seed_bands(records: Iterable[Mapping], curve: str | Callable = "curve",
               keys=CONFIG_KEYS, kind: str = "minmax") -> dict[tuple, Band]:
    """{config: Band} over runs that differ only in seed.

    curve: the record key holding (epochs, values), or a function record -> (epochs, values).
    """
    get = curve if callable(curve) else (lambda r: r[curve])
    return {cfg: seed_band([get(r) for r in runs], kind)
            for cfg, runs in group_seeds(records, keys).items()}


def lr_at(epochs, lr_fn: Callable) -> np.ndarray:
    """Learning rate at each epoch from a closed form lr_fn(epoch) -> lr (the train/ hook)."""
    return np.array([float(lr_fn(int(e))) for e in check_epochs(epochs)])
