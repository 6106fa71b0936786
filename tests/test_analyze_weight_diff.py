"""Relative weight difference: hand values, float64 accumulation over blocks,
and NaN always paired with its reason."""

import numpy as np
import pytest

from dyn.analyze.measures.weight_diff import norms, relative_difference, weight_difference


def test_hand_worked():
    r, dn, sn, why = relative_difference(np.float32([3, 4]), np.float32([3, 0]))
    assert (r, dn, sn, why) == (0.8, 4.0, 5.0, "")


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_blocks_agree_with_float64_norms(block):
    rng = np.random.default_rng(block)
    sgd = rng.standard_normal(1001).astype(np.float32)
    ema = (sgd + 0.01 * rng.standard_normal(1001)).astype(np.float32)
    dn, sn = norms(sgd, ema, block)
    s64, e64 = sgd.astype(np.float64), ema.astype(np.float64)
    assert dn == pytest.approx(np.linalg.norm(e64 - s64), rel=1e-12)
    assert sn == pytest.approx(np.linalg.norm(s64), rel=1e-12)


def test_float32_extremes_do_not_overflow():
    big = np.full(1000, 3e38, np.float32)       # the squares overflow float32, not float64
    r, _, sn, why = relative_difference(big, big * np.float32(0.5))
    assert why == "" and r == pytest.approx(0.5) and np.isfinite(sn)


@pytest.mark.parametrize("sgd,ema,reason", [
    ([0.0, 0.0], [1.0, 1.0], "all zero"),
    ([1.0, np.nan, np.inf], [1.0, 1.0, 1.0], "SGD weights hold 2 NaN/Inf"),
    ([1.0, 2.0], [np.nan, 2.0], "EMA weights hold 1 NaN/Inf"),
    ([], [], "no parameters"),
])
def test_undefined_ratio_is_nan_with_a_reason(sgd, ema, reason):
    r, _, _, why = relative_difference(np.float32(sgd), np.float32(ema))
    assert np.isnan(r) and reason in why


def test_streams_epochs_and_keeps_reasons_aligned():
    def items():
        yield 0, np.float32([1, 0]), np.float32([1, 0])
        yield 1, np.float32([0, 0]), np.float32([1, 0])
        yield 2, np.float32([2, 0]), np.float32([1, 0])
    w = weight_difference(items())
    assert w.epochs.tolist() == [0, 1, 2]
    assert w.relative[0] == 0.0 and np.isnan(w.relative[1]) and w.relative[2] == 0.5
    assert w.reasons[0] == "" and "zero" in w.reasons[1] and w.reasons[2] == ""
    assert all(bool(why) == bool(np.isnan(r)) for r, why in zip(w.relative, w.reasons))


def test_refuses_vectors_of_different_length():
    with pytest.raises(ValueError, match="differ in length"):
        relative_difference(np.zeros(3, np.float32), np.zeros(4, np.float32))
