"""Misclassification ratios and their histogram, against hand-worked values,
a naive boolean computation and exact rational binning."""

from fractions import Fraction

import numpy as np
import pytest

from dyn.analyze.histogram import fraction_histogram
from dyn.analyze.measures.misclassification import MisclassificationAccumulator, misclassification

HAND = np.array([[1, 0, 0],
                 [1, 1, 0],
                 [0, 1, 0],
                 [0, 1, 0]], bool)


def test_hand_worked_default_window_is_the_second_half():
    m = misclassification(np.packbits(HAND, axis=1), 3)
    assert m.epochs.tolist() == [1, 2, 3]                # 0 + (3 - 0) // 2 = 1
    assert m.correct.tolist() == [1, 3, 0]
    assert m.ratio.tolist() == pytest.approx([2 / 3, 0.0, 1.0])
    assert (m.always_right, m.always_wrong) == pytest.approx((1 / 3, 1 / 3))
    assert m.in_between == pytest.approx(1 / 3)
    edges, counts = m.histogram(bins=3)
    assert counts.tolist() == [1, 0, 2]                   # 1 lands in the last bin
    assert edges.tolist() == pytest.approx([0, 1 / 3, 2 / 3, 1])


def test_explicit_window_and_mid_run_epochs():
    m = misclassification(np.packbits(HAND, axis=1), 3, epochs=[90, 91, 92, 93], window=(90, 91))
    assert m.epochs.tolist() == [90, 91] and m.correct.tolist() == [2, 1, 0]


@pytest.mark.parametrize("n", [1, 9, 200, 1003])
def test_matches_naive_over_random_chunks(n):
    rng = np.random.default_rng(n)
    c = rng.random((181, n)) < 0.8
    p = np.packbits(c, axis=1)
    acc = MisclassificationAccumulator(n, np.arange(181))
    a = 0
    while a < 181:
        b = a + int(rng.integers(1, 40))
        acc.add(p[a:b])
        a = b
    m = acc.result()
    want = 1 - c[90:].mean(axis=0)
    assert len(m.epochs) == 91
    assert np.allclose(m.ratio, want)
    assert m.always_right == np.mean(want == 0) and m.always_wrong == np.mean(want == 1)


def naive_bins(k, t, bins):
    out = [0] * bins
    for x in k:
        r = Fraction(int(x), t)
        out[min(int(r * bins), bins - 1)] += 1   # int(Fraction) floors exactly
    return out


@pytest.mark.parametrize("t,bins", [(10, 10), (91, 20), (100, 20), (7, 3), (1, 5), (181, 7)])
def test_histogram_bins_exactly(t, bins):
    k = np.arange(t + 1).repeat(2)
    edges, counts = fraction_histogram(k, t, bins)
    assert counts.tolist() == naive_bins(k, t, bins)
    assert counts.sum() == k.size and len(edges) == bins + 1


def test_histogram_puts_edge_values_where_floats_do_not():
    # 3/10, 6/10 and 7/10 sit on bin edges; float binning drops each one bin low
    k = np.array([3, 6, 7])
    _, counts = fraction_histogram(k, 10, 10)
    assert np.flatnonzero(counts).tolist() == [3, 6, 7]
    float_counts, _ = np.histogram(k / 10, bins=10, range=(0, 1))
    assert np.flatnonzero(float_counts).tolist() == [2, 5, 6]


def test_histogram_refuses_out_of_range_counts():
    with pytest.raises(ValueError):
        fraction_histogram([11], 10)
    with pytest.raises(ValueError):
        fraction_histogram([1], 0)
