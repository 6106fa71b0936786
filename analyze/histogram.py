"""Histograms of per-sample fractions k / t with fixed bins on [0, 1].

Per-sample ratios are fractions of a whole number of epochs, so many of them
sit exactly on bin edges (with t = 100 and 20 bins, every 5th one does).
Binning them as floats puts some in the neighbouring bin, depending on
rounding; here the bin is found in integer arithmetic instead: k / t is in bin
i of `bins` equal bins iff i <= k * bins / t < i + 1. Bins are half-open
[a, b) except the last, which includes 1, as in numpy.histogram.
"""

import numpy as np


def fraction_histogram(k, t: int, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(edges (bins+1,) float64, counts (bins,) int64) of the fractions k / t."""
    k = np.asarray(k, dtype=np.int64)
    t, bins = int(t), int(bins)
    if t < 1 or bins < 1:
        raise ValueError(f"need t >= 1 and bins >= 1, got t={t}, bins={bins}")
    if k.size and (k.min() < 0 or k.max() > t):
        raise ValueError(f"counts must lie in 0..{t}")
    idx = np.minimum(k * bins // t, bins - 1)
    return np.linspace(0.0, 1.0, bins + 1), np.bincount(idx.ravel(), minlength=bins).astype(np.int64)
