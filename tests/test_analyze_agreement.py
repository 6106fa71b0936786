"""Agreement/mismatch of two networks against hand-worked values and a naive version."""

import numpy as np
import pytest

from dyn.analyze.measures.agreement import AgreementAccumulator, agreement

A = np.array([[1, 0, 0, 1],
              [1, 1, 0, 1],
              [0, 1, 0, 1]], bool)
B = np.array([[1, 1, 0, 1],    # differs at sample 1
              [1, 1, 0, 1],    # same
              [1, 0, 0, 0]],   # differs at 0, 1, 3
             bool)


def test_hand_worked():
    g = agreement(np.packbits(A, axis=1), np.packbits(B, axis=1), 4)
    assert g.correct_differs.tolist() == [1, 0, 3]
    assert g.epoch_mismatch.tolist() == pytest.approx([0.25, 0.0, 0.75])
    assert g.mismatch.tolist() == [1, 2, 0, 1]
    assert g.sample_mismatch.tolist() == pytest.approx([1 / 3, 2 / 3, 0, 1 / 3])
    assert g.label_differs is None and g.label_mismatch is None
    _, counts = g.histogram(bins=3)
    assert counts.tolist() == [1, 2, 1]


def test_labels_can_differ_where_correctness_agrees():
    la = np.array([[3, 1, 2, 0], [3, 0, 2, 0], [5, 0, 7, 0]])
    lb = np.array([[3, 0, 4, 0], [3, 0, 2, 0], [3, 1, 2, 9]])
    g = agreement(np.packbits(A, axis=1), np.packbits(B, axis=1), 4, labels_a=la, labels_b=lb)
    assert g.label_differs.tolist() == [2, 0, 4]
    assert g.label_mismatch.tolist() == pytest.approx([0.5, 0.0, 1.0])


@pytest.mark.parametrize("n", [3, 64, 129])
def test_matches_naive_over_chunks_and_window(n):
    rng = np.random.default_rng(n)
    a, b = rng.random((30, n)) < 0.6, rng.random((30, n)) < 0.6
    la, lb = rng.integers(0, 3, (30, n)), rng.integers(0, 3, (30, n))
    pa, pb = np.packbits(a, axis=1), np.packbits(b, axis=1)
    acc = AgreementAccumulator(n, np.arange(30), window=(4, 25))
    for s in range(0, 30, 8):
        acc.add(pa[s:s + 8], pb[s:s + 8], la[s:s + 8], lb[s:s + 8])
    g = acc.result()
    w = slice(4, 26)
    assert g.correct_differs.tolist() == (a[w] != b[w]).sum(axis=1).tolist()
    assert g.mismatch.tolist() == (a[w] != b[w]).sum(axis=0).tolist()
    assert g.label_differs.tolist() == (la[w] != lb[w]).sum(axis=1).tolist()
    assert g.epochs.tolist() == list(range(4, 26))


def test_refuses_mismatched_inputs():
    pa = np.packbits(A, axis=1)
    with pytest.raises(ValueError, match="differ in shape"):
        agreement(pa, pa[:2], 4)
    acc = AgreementAccumulator(4, [0, 1, 2])
    acc.add(pa[:1], pa[:1], np.zeros((1, 4)), np.zeros((1, 4)))
    with pytest.raises(ValueError, match="every chunk or for none"):
        acc.add(pa[1:], pa[1:])
    with pytest.raises(ValueError, match="labels must be"):
        agreement(pa, pa, 4, labels_a=np.zeros((3, 5)), labels_b=np.zeros((3, 5)))
