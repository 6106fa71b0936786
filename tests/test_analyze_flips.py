"""Flips per sample, top-k ranking and barcodes, against hand-worked values and
a naive boolean computation."""

import numpy as np
import pytest

from dyn.analyze.measures.flips import FlipsAccumulator, barcode, flips_per_sample, top_flips

HAND = np.array([[1, 0, 0],
                 [1, 1, 0],
                 [0, 1, 0],
                 [0, 1, 1]], bool)


def test_hand_worked():
    f = flips_per_sample(np.packbits(HAND, axis=1), 3)
    assert f.flips.tolist() == [1, 1, 1] and f.transitions == 3
    assert f.stability.tolist() == pytest.approx([2 / 3] * 3)
    g = flips_per_sample(np.packbits(HAND, axis=1), 3, window=(2, 3))
    assert g.flips.tolist() == [0, 0, 1] and g.transitions == 1


@pytest.mark.parametrize("n", [1, 8, 65, 1000])
def test_matches_naive_over_chunks(n):
    rng = np.random.default_rng(n)
    c = rng.random((60, n)) < 0.5
    p = np.packbits(c, axis=1)
    acc = FlipsAccumulator(n, np.arange(60), window=(5, 54))
    for a in range(0, 60, 11):
        acc.add(p[a:a + 11])
    f = acc.result()
    assert f.flips.tolist() == (c[6:55] != c[5:54]).sum(axis=0).tolist()
    assert f.transitions == 49


def test_single_epoch_has_no_flips_and_no_stability():
    f = flips_per_sample(np.packbits(HAND[:1], axis=1), 3)
    assert f.flips.tolist() == [0, 0, 0] and f.transitions == 0
    with pytest.raises(ValueError, match="two epochs"):
        f.stability


SGD = [3, 5, 5, 1, 5]
EMA = [0, 0, 1, 9, 0]


@pytest.mark.parametrize("rank_by,want", [
    ("sgd", [1, 2, 4]),          # three tied at 5: by index
    ("ema", [3, 2, 0]),          # 9, 1, then the 0s by index
    ("sum", [3, 2, 1]),          # 10, 6, then 5 and 5: index 1 before 4
    ("stability", [3, 2, 1]),    # lowest summed per-sample stability first
])
def test_top_flips_rankings_and_ties(rank_by, want):
    assert top_flips(SGD, EMA, k=3, rank_by=rank_by, transitions=10).tolist() == want


def test_top_flips_stability_follows_the_authors_definition():
    rng = np.random.default_rng(0)
    t = 90
    sgd, ema = rng.integers(0, 20, 500), rng.integers(0, 5, 500)
    score = (1 - sgd / t) + (1 - ema / t)
    # the authors: lowest summed stability first; ties by sample index, on exact values
    exact = [(int(2 * t - s - e), i) for i, (s, e) in enumerate(zip(sgd, ema))]
    want = [i for _, i in sorted(exact)][:10]
    got = top_flips(sgd, ema, k=10, rank_by="stability", transitions=t)
    assert got.tolist() == want
    assert np.all(np.diff(score[got]) >= -1e-12)


def test_top_flips_defaults_and_errors():
    assert top_flips(SGD, k=2).tolist() == [1, 2]          # no EMA: rank by SGD
    assert top_flips(SGD, EMA, k=1).tolist() == [3]         # with EMA: by the sum
    assert top_flips(SGD, EMA, k=99).tolist() == [3, 2, 1, 4, 0]
    assert top_flips(SGD, EMA, k=0).size == 0
    with pytest.raises(ValueError, match="rank_by"):
        top_flips(SGD, EMA, rank_by="max")
    with pytest.raises(ValueError, match="EMA"):
        top_flips(SGD, rank_by="sum")
    with pytest.raises(ValueError, match="transitions"):
        top_flips(SGD, EMA, rank_by="stability")


def test_top_flips_on_a_million_samples_is_exact():
    rng = np.random.default_rng(1)
    key = rng.integers(0, 50, 1_000_000)
    got = top_flips(key, k=10)
    assert got.tolist() == np.lexsort((np.arange(key.size), -key))[:10].tolist()


def test_barcode_reads_chosen_samples():
    rng = np.random.default_rng(2)
    n = 37
    c = rng.random((12, n)) < 0.5
    p = np.packbits(c, axis=1)
    idx = [36, 0, 9, 9, 17]
    want = c[:, idx].T
    assert np.array_equal(barcode(p, idx, n), want)
    assert np.array_equal(barcode(iter([p[:5], p[5:]]), idx, n), want)


class ColumnsOnly:
    """Array-like that records which byte columns were read (like an h5py dataset)."""

    def __init__(self, a):
        self.a, self.shape, self.read = a, a.shape, []

    def __getitem__(self, key):
        rows, cols = key
        assert list(cols) == sorted(set(cols)), "h5py needs increasing, unique columns"
        self.read.append(list(cols))
        return self.a[rows, cols]


def test_barcode_reads_only_the_needed_byte_columns():
    n = 800
    c = np.random.default_rng(3).random((7, n)) < 0.5
    src = ColumnsOnly(np.packbits(c, axis=1))
    got = barcode(src, [799, 3, 5], n)
    assert src.read == [[0, 99]]
    assert np.array_equal(got, c[:, [799, 3, 5]].T)


def test_barcode_refuses_bad_indices():
    with pytest.raises(ValueError):
        barcode(np.zeros((2, 1), np.uint8), [8], 8)
