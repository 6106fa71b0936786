"""Relative weight difference between the EMA and SGD networks (Figure 5).

relative(epoch) = ||theta_EMA - theta_SGD||_2 / ||theta_SGD||_2, over the
flattened parameters. Inputs are float32; sums are taken in float64 over blocks
of the vectors, so no full-size float64 copy is ever made (ResNet-50 has 23.5M
parameters) and the squares cannot overflow.

Where the ratio is undefined (||theta_SGD|| is 0 or not finite, or the EMA
weights hold NaN/Inf) the value is NaN and `reasons` says why: a NaN must never
be shown without its reason.
"""

from dataclasses import dataclass

import numpy as np

BLOCK = 1 << 20  # elements per float64 temporary (8 MB)


@dataclass(frozen=True)
class WeightDifference:
    epochs: np.ndarray     # (E,) int64
    relative: np.ndarray   # (E,) float64, NaN where undefined
    diff_norm: np.ndarray  # (E,) float64, ||theta_EMA - theta_SGD||
    sgd_norm: np.ndarray   # (E,) float64, ||theta_SGD||
    reasons: tuple         # (E,) str: "" where relative is defined, else why it is NaN


def norms(sgd, ema, block: int = BLOCK) -> tuple[float, float]:
    """(||ema - sgd||_2, ||sgd||_2) in float64, accumulated block by block."""
    sgd, ema = np.ravel(sgd), np.ravel(ema)
    if sgd.shape != ema.shape:
        raise ValueError(f"SGD and EMA parameter vectors differ in length: {sgd.size} vs {ema.size}")
    d2 = s2 = 0.0
    for a in range(0, sgd.size, block):
        s = sgd[a:a + block].astype(np.float64)
        d = ema[a:a + block].astype(np.float64)
        d -= s
        d2 += float(d @ d)
        s2 += float(s @ s)
    return float(np.sqrt(d2)), float(np.sqrt(s2))


def relative_difference(sgd, ema, block: int = BLOCK) -> tuple[float, float, float, str]:
    """(relative, diff_norm, sgd_norm, reason) for one epoch; reason is "" when defined."""
    dn, sn = norms(sgd, ema, block)
    nan = float("nan")
    if np.size(sgd) == 0:
        return nan, dn, sn, "no parameters"
    if not np.isfinite(sn):
        bad = _nonfinite(sgd, block)
        return nan, dn, sn, (f"SGD weights hold {bad} NaN/Inf values" if bad
                             else "||SGD|| overflows float64")
    if sn == 0.0:
        return nan, dn, sn, "SGD weights are all zero (norm 0)"
    if not np.isfinite(dn):
        bad = _nonfinite(ema, block)
        return nan, dn, sn, (f"EMA weights hold {bad} NaN/Inf values" if bad
                             else "||EMA - SGD|| overflows float64")
    return dn / sn, dn, sn, ""


def weight_difference(items, block: int = BLOCK) -> WeightDifference:
    """Stream over (epoch, sgd_params_1d, ema_params_1d), one epoch in memory at a time."""
    return collect((epoch,) + relative_difference(sgd, ema, block) for epoch, sgd, ema in items)


def collect(rows) -> WeightDifference:
    """A WeightDifference from (epoch, relative, diff_norm, sgd_norm, reason) rows, in order."""
    rows = list(rows)
    e, r, d, s, why = zip(*rows) if rows else ((),) * 5
    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    return WeightDifference(np.asarray(e, dtype=np.int64), f(r), f(d), f(s), tuple(why))


def _nonfinite(x, block: int) -> int:
    x = np.ravel(x)
    return sum(int(np.count_nonzero(~np.isfinite(x[a:a + block]))) for a in range(0, x.size, block))
