"""Stability and accuracy per epoch: a hand-worked case, then a naive boolean version."""

import numpy as np
import pytest

from dyn.analyze.measures.stability import StabilityAccumulator, stability
from dyn.analyze.window import ChunkWindow, check_epochs, rows_in, second_half

# 3 samples over epochs 0..3
HAND = np.array([[1, 0, 0],
                 [1, 1, 0],   # sample 1 changed       -> stability 2/3
                 [0, 1, 0],   # sample 0 changed       -> 2/3
                 [0, 1, 0]],  # nothing changed        -> 1
                bool)


def naive(correct):
    return (correct[1:] == correct[:-1]).mean(axis=1), correct.mean(axis=1)


def test_hand_worked():
    s = stability(np.packbits(HAND, axis=1), 3)
    assert s.epochs.tolist() == [0, 1, 2, 3]
    assert s.stability_epochs.tolist() == [1, 2, 3]
    assert s.stability.tolist() == pytest.approx([2 / 3, 2 / 3, 1.0])
    assert s.accuracy.tolist() == pytest.approx([1 / 3, 2 / 3, 1 / 3, 1 / 3])
    assert s.changed.tolist() == [1, 1, 0] and s.correct.tolist() == [1, 2, 1, 1]


def test_window_starting_mid_run_does_not_use_the_row_before():
    s = stability(np.packbits(HAND, axis=1), 3, window=(2, 3))
    assert s.stability_epochs.tolist() == [3]
    assert s.stability.tolist() == [1.0]          # not the 2 -> 1 change
    assert s.accuracy.tolist() == pytest.approx([1 / 3, 1 / 3])


@pytest.mark.parametrize("n", [1, 5, 64, 333])
def test_matches_naive_and_chunking_does_not_matter(n):
    rng = np.random.default_rng(n)
    c = rng.random((40, n)) < 0.7
    p = np.packbits(c, axis=1)
    epochs = np.arange(100, 140)       # a window of a longer run
    whole = stability(p, n, epochs)
    acc = StabilityAccumulator(n, epochs)
    for a, b in [(0, 1), (1, 1), (1, 17), (17, 18), (18, 40)]:
        acc.add(p[a:b])
    streamed = acc.result()
    want_stab, want_acc = naive(c)
    for s in (whole, streamed):
        assert np.allclose(s.stability, want_stab) and np.allclose(s.accuracy, want_acc)
        assert s.stability_epochs.tolist() == list(range(101, 140))


def test_window_selects_recorded_epochs_and_skips_the_rest():
    rng = np.random.default_rng(3)
    c = rng.random((30, 50)) < 0.5
    epochs = np.arange(0, 60, 2)       # recorded every 2 epochs
    acc = StabilityAccumulator(50, epochs, window=(11, 31))
    for a in range(0, 30, 7):
        acc.add(np.packbits(c[a:a + 7], axis=1))
    s = acc.result()
    sel = (epochs >= 11) & (epochs <= 31)
    assert s.epochs.tolist() == epochs[sel].tolist() == list(range(12, 32, 2))
    want_stab, want_acc = naive(c[sel])
    assert np.allclose(s.stability, want_stab) and np.allclose(s.accuracy, want_acc)


def test_single_epoch_window_has_accuracy_but_no_stability():
    s = stability(np.packbits(HAND, axis=1), 3, window=(1, 1))
    assert s.stability.size == 0 and s.accuracy.tolist() == pytest.approx([2 / 3])


def test_streaming_refuses_too_many_or_too_few_rows():
    p = np.packbits(HAND, axis=1)
    acc = StabilityAccumulator(3, [0, 1, 2])
    with pytest.raises(ValueError, match="only 3 epochs"):
        acc.add(p)
    acc = StabilityAccumulator(3, [0, 1, 2, 3])
    acc.add(p[:2])
    with pytest.raises(ValueError, match="fed 2 rows"):
        acc.result()


def test_window_helpers():
    e = check_epochs([0, 1, 2, 5, 9])
    assert rows_in(e, None) == (0, 5)
    assert rows_in(e, (2, None)) == (2, 5)
    assert rows_in(e, (3, 8)) == (3, 4)     # only epoch 5 lies within
    with pytest.raises(ValueError, match="holds no recorded epoch"):
        rows_in(e, (6, 8))
    assert second_half(np.arange(181)) == (90, 180)   # the paper's 90..180
    assert second_half([10, 11, 12, 13, 14]) == (12, 14)
    with pytest.raises(ValueError, match="strictly increasing"):
        check_epochs([0, 2, 2])
    with pytest.raises(ValueError, match="integer"):
        check_epochs([0.0, 1.0])


def test_cursor_slices_chunks_against_the_window():
    cur = ChunkWindow(np.arange(10), (3, 6))
    assert [cur.take(t) for t in (2, 3, 0, 4, 1)] == [
        slice(2, 2), slice(1, 3), slice(0, 0), slice(0, 2), slice(0, 0)]
    cur.done()
