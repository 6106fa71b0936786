"""analyze/_half.c (the float16 sums of the training-dynamics analyses) against numpy: every
float16 bit pattern converted exactly, NaN skipped, correctness bits counted where presented."""

import numpy as np
import pytest

from dyn.analyze import half


@pytest.mark.skipif(half.backend() != "C", reason="analyze/_half.c not built")
def test_c_sums_equal_numpy_on_every_float16_and_random_rows():
    every = np.arange(65536, dtype=np.uint16).view(np.float16).reshape(1, -1)  # NaN, inf, subnormals, -0
    rng = np.random.default_rng(0)
    rows = np.concatenate([every, rng.standard_normal((4, 65536)).astype(np.float16)])
    rows[2, ::7] = np.nan
    packed = rng.integers(0, 256, (5, 65536 // 8), dtype=np.uint8)
    got, want = [], []
    for use_c in (True, False):
        acc = [np.zeros(65536), np.zeros(65536, np.int32), np.zeros(65536), np.zeros(65536, np.int32)]
        if use_c:
            half.accumulate(rows, acc[0], acc[1], squares=acc[2], packed=packed, correct=acc[3])
        else:
            half.accumulate(rows.astype(np.float32), acc[0], acc[1], squares=acc[2], packed=packed, correct=acc[3])
        (got if use_c else want).append(acc)
    for g, w in zip(got[0], want[0]):
        np.testing.assert_array_equal(g, w)  # exact: float16 values are exact in float64
    ok = ~np.isnan(rows.astype(np.float32))
    np.testing.assert_array_equal(got[0][1], ok.sum(axis=0))
    bits = np.unpackbits(packed, axis=1).astype(bool)
    np.testing.assert_array_equal(got[0][3], (bits & ok).sum(axis=0))


@pytest.mark.skipif(half.backend() != "C", reason="analyze/_half.c not built")
@pytest.mark.parametrize("simd", [1, 0])
def test_c_sums_with_and_without_simd_equal_numpy_at_any_width(simd):
    rng = np.random.default_rng(5)
    half._lib().dyn_half_simd(simd)
    try:
        for n in (1, 7, 8, 13, 1024 + 13, 5000):  # column blocks of 1024, 8 examples a SIMD step
            rows = rng.standard_normal((9, n)).astype(np.float16)
            rows[rng.random((9, n)) < 0.1] = np.nan
            packed = rng.integers(0, 256, (9, (n + 7) // 8), dtype=np.uint8)
            got = [np.zeros(n), np.zeros(n, np.int32), np.zeros(n), np.zeros(n, np.int32)]
            half.accumulate(rows, got[0], got[1], squares=got[2], packed=packed, correct=got[3])
            v = rows.astype(np.float64)
            ok = ~np.isnan(v)
            v[~ok] = 0
            bits = np.unpackbits(packed, axis=1, count=n).astype(bool)
            for g, w in zip(got, [v.sum(axis=0), ok.sum(axis=0), (v * v).sum(axis=0), (bits & ok).sum(axis=0)]):
                np.testing.assert_array_equal(g, w)
    finally:
        half._lib().dyn_half_simd(1)


@pytest.mark.parametrize("kernels", ["C", "numpy"])
def test_forgetting_from_packed_rows_equals_the_bool_path(kernels, monkeypatch):
    from dyn.analyze.measures.dynamics import ForgettingAccumulator

    if kernels == "C" and half.backend() != "C":
        pytest.skip("analyze/_half.c not built")
    if kernels == "numpy":
        monkeypatch.setattr(half, "_lib", lambda: None)
    rng = np.random.default_rng(1)
    n, E = 1003, 12
    correct = rng.random((E, n)) < 0.6
    presence = rng.standard_normal((E, n)).astype(np.float16)
    presence[rng.random((E, n)) < 0.2] = np.nan
    for pres in (presence, None):
        a, b = ForgettingAccumulator(n, np.arange(E)), ForgettingAccumulator(n, np.arange(E))
        a.add(correct, None if pres is None else ~np.isnan(pres))
        for lo, hi in ((0, 5), (5, 6), (6, E)):
            b.add_packed(np.packbits(correct[lo:hi], axis=1), None if pres is None else pres[lo:hi])
        for col in ("presentations", "forgetting_events", "first_learned", "never_learned"):
            np.testing.assert_array_equal(a.frame()[col], b.frame()[col])


def _forgetting_by_definition(correct, presented):
    """Per example, over its presentations in order: 1 -> 0 transitions, presentations, and the
    row of its first correct presentation (-1: never)."""
    n = correct.shape[1]
    events, shown, first = np.zeros(n, int), np.zeros(n, int), np.full(n, -1)
    for i in range(n):
        rows = np.flatnonzero(presented[:, i])
        seq = correct[rows, i].astype(int)
        events[i] = int(np.sum(seq[1:] < seq[:-1]))
        shown[i] = len(rows)
        first[i] = rows[np.argmax(seq)] if seq.any() else -1
    return events, shown, first


@pytest.mark.parametrize("kernels", ["C", "numpy"])
def test_forgetting_words_equal_the_definition_across_chunks_and_plane_growth(kernels, monkeypatch):
    from dyn.analyze.measures.dynamics import ForgettingAccumulator

    if kernels == "C" and half.backend() != "C":
        pytest.skip("analyze/_half.c not built")
    if kernels == "numpy":
        monkeypatch.setattr(half, "_lib", lambda: None)
    rng = np.random.default_rng(3)
    E = 70  # counts past 64: a seventh plane added between chunks
    for n in (1, 63, 64, 65, 1003):
        correct = rng.random((E, n)) < np.linspace(0.05, 0.95, n)
        correct[:, :1] = True  # never forgotten unless absent
        presence = rng.standard_normal((E, n)).astype(np.float16)
        presence[rng.random((E, n)) < 0.15] = np.nan
        presence[5:30, -1] = np.nan  # a long gap
        presented = ~np.isnan(presence)
        want = _forgetting_by_definition(correct & presented, presented)
        a, b = ForgettingAccumulator(n, np.arange(E)), ForgettingAccumulator(n, np.arange(E))
        for lo, hi in ((0, 1), (1, 33), (33, 64), (64, 65), (65, E)):
            a.add(correct[lo:hi], presented[lo:hi])
            b.add_packed(np.packbits(correct[lo:hi], axis=1), presence[lo:hi])
        for acc in (a, b):
            np.testing.assert_array_equal(acc.events, want[0])
            np.testing.assert_array_equal(acc.presentations, want[1])
            np.testing.assert_array_equal(acc.first, want[2])
    all_shown = ForgettingAccumulator(130, np.arange(E))
    correct = rng.random((E, 130)) < 0.5
    all_shown.add_packed(np.packbits(correct, axis=1))
    want = _forgetting_by_definition(correct, np.ones_like(correct))
    np.testing.assert_array_equal(all_shown.events, want[0])
    np.testing.assert_array_equal(all_shown.presentations, E)


@pytest.mark.parametrize("kernels", ["C", "numpy"])
def test_stable_order_is_numpys_stable_argsort(kernels, monkeypatch):
    if kernels == "C" and half.backend() != "C":
        pytest.skip("analyze/_half.c not built")
    if kernels == "numpy":
        monkeypatch.setattr(half, "_lib", lambda: None)
    rng = np.random.default_rng(4)
    special = np.array([0.0, -0.0, np.nan, -np.nan, np.inf, -np.inf, 5e-324, -5e-324, 1.0, -1.0, 1e308, -1e308])
    cases = [np.zeros(0), np.array([np.nan]), special, rng.choice(special, 5000),
             rng.integers(0, 30, 10_000).astype(float),  # forgetting counts: few values, many ties
             np.round(rng.standard_normal(100_000), 3),  # AUMs: ties among many values
             rng.standard_normal(100_000).astype(np.float16).astype(float)]
    for x in cases:
        order = np.argsort(x, kind="stable")
        np.testing.assert_array_equal(half.stable_order(x), order)
        np.testing.assert_array_equal(half.stable_ranks(x)[order], np.arange(1, len(x) + 1))


def test_scratch_buffers_are_reused_but_never_shared():
    with half.scratch((1000,), np.float64) as a:
        first = a.__array_interface__["data"][0]
        with half.scratch((1000,), np.float64) as b, half.scratch((10,), np.int32) as c:
            ends = [(x.__array_interface__["data"][0], x.nbytes) for x in (a, b, c)]
            assert all(p + m <= q or q + k <= p for i, (p, m) in enumerate(ends) for q, k in ends[i + 1:])
            assert b.shape == (1000,) and c.dtype == np.int32
    with half.scratch((500,), np.float64) as again:  # a buffer of this thread, given back above
        assert again.__array_interface__["data"][0] in {first, ends[1][0]}
    for size in range(1, 10):
        with half.scratch((size * 1000,), np.uint8):
            pass
    assert len(half._scratch.free) <= half.KEEP
