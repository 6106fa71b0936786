"""Oracles for the per-sample training-dynamics measures (dyn.analyze.measures.dynamics):
forgetting events against Toneva et al.'s definition on hand-made sequences, data maps against
cartography's formulas, AUM against the `aum` package itself fed the same margins."""

import numpy as np
import pandas as pd
import pytest

from dyn.analyze.measures import dynamics as dy

# Toneva et al.'s oracle (reference/training-dynamics.md): E = 5, one run.
SEQS = ["00000", "11111", "01011", "10101", "11110", "10000"]
EVENTS = [0, 0, 1, 2, 1, 1]          # 1 -> 0 transitions
COUNTED = [5, 0, 1, 2, 1, 1]         # never learned counted as E = 5


def _correct(seqs):
    return np.array([[c == "1" for c in s] for s in seqs]).T  # (E, N)


def _toneva(correct_en, npresentations):
    """order_examples_by_forgetting.py's compute_forgetting_statistics + sort, restated."""
    stats = []
    for acc in correct_en.T.astype(int):
        transitions = acc[1:] - acc[:-1]
        learned = np.flatnonzero(acc == 1)
        stats.append(npresentations if not len(learned) else int(np.sum(transitions == -1)))
    return np.array(stats)


def test_forgetting_oracle():
    df = dy.forgetting(_correct(SEQS))
    assert df["forgetting_events"].tolist() == EVENTS
    assert df["forgetting"].tolist() == COUNTED
    assert df["never_learned"].tolist() == [True, False, False, False, False, False]
    assert df["first_learned"].tolist()[1:] == [0, 1, 0, 0, 0] and np.isnan(df["first_learned"][0])
    order = dy.order_by_forgetting(df["forgetting"])
    assert order["forgetting_counts"].tolist() == [0, 1, 1, 1, 2, 5]
    assert order["index"].tolist() == [1, 2, 4, 5, 3, 0]
    assert order.attrs["unforgettable"] == 1


def test_never_learned_choices():
    c = _correct(SEQS)
    assert dy.forgetting(c, never_learned="inf")["forgetting"][0] == np.inf
    skip = dy.forgetting(c, never_learned="skip")
    assert np.isnan(skip["forgetting"][0])
    assert dy.order_by_forgetting(skip["forgetting"])["index"].tolist() == [1, 2, 4, 5, 3]
    with pytest.raises(ValueError, match="never_learned"):
        dy.forgetting(c, never_learned="zero")


def test_forgetting_random_against_reference_over_seeds():
    rng = np.random.default_rng(0)
    runs = [rng.random((7, 300)) < p for p in (0.3, 0.6, 0.9)]  # three "seeds"
    ours = np.stack([dy.forgetting(c)["forgetting"].to_numpy() for c in runs])
    ref = np.stack([_toneva(c, 7) for c in runs])
    np.testing.assert_array_equal(ours, ref)
    order = dy.order_by_forgetting(ours)
    total = ref.sum(axis=0)
    np.testing.assert_array_equal(order["forgetting_counts"], np.sort(total))
    np.testing.assert_array_equal(total[order["index"]], np.sort(total))  # a valid sort of the reference's totals


def test_unpresented_epochs_are_skipped_and_chunks_agree():
    # presentations of sample 0: 1 (e0), - (e1), 0 (e2): one event across the gap;
    # sample 1: 0, 1, -, 1: learned at epoch 1, never forgotten.
    correct = np.array([[1, 0], [0, 1], [0, 0], [0, 1]], bool)
    presented = np.array([[1, 1], [0, 1], [1, 0], [0, 1]], bool)
    df = dy.forgetting(correct, presented)
    assert df["forgetting_events"].tolist() == [1, 0]
    assert df["presentations"].tolist() == [2, 3]
    assert df["first_learned"].tolist() == [0, 1]
    rng = np.random.default_rng(1)
    c, p = rng.random((9, 50)) < 0.5, rng.random((9, 50)) < 0.8
    acc = dy.ForgettingAccumulator(50, np.arange(9))
    for a in (0, 4, 5):  # uneven chunks
        b = {0: 4, 4: 5, 5: 9}[a]
        acc.add(c[a:b], p[a:b])
    pd.testing.assert_frame_equal(acc.frame(), dy.forgetting(c, p))


def test_data_map_oracle():
    logits = np.array([[2, 1, 0], [0, 1, 0], [3, 0, 0]], float)  # one example, true class 0, 3 epochs
    p = dy.prob_from_logits(logits, [0, 0, 0])
    np.testing.assert_allclose(p, [0.665241, 0.211942, 0.909443], atol=1e-6)
    df = dy.data_map(p[:, None], (logits.argmax(1) == 0)[:, None])
    assert df["confidence"][0] == pytest.approx(0.595542, abs=1e-6)
    assert df["variability"][0] == pytest.approx(0.288987, abs=1e-6)  # population std (ddof 1: 0.353936)
    assert df["correct_epochs"][0] == 2 and df["correctness"][0] == pytest.approx(2 / 3)


def test_data_map_matches_cartography_formulas():
    rng = np.random.default_rng(2)
    prob = rng.random((6, 40)).astype(np.float32)
    correct = prob > 0.5
    prob[2, :5] = np.nan  # not presented
    df = dy.data_map(prob, correct)
    for i in range(40):
        seen = ~np.isnan(prob[:, i])
        q = prob[seen, i].astype(float)
        assert df["confidence"][i] == pytest.approx(np.mean(q), abs=1e-9)
        assert df["variability"][i] == pytest.approx(np.std(q), abs=1e-7)
        assert df["correctness"][i] == pytest.approx(np.mean(correct[seen, i]))
    top = dy.region_top(df, "hard-to-learn", 3)
    assert top["sample"].tolist() == list(np.argsort(df["confidence"].to_numpy(), kind="stable")[:3])
    assert dy.region_top(df, "ambiguous", 1)["sample"].item() == int(np.argmax(df["variability"]))


def test_margin_oracle():
    # the aum package's own test cases
    np.testing.assert_array_equal(dy.margin_from_logits([[1, 2, 3], [6, 5, 4], [7, 8, 9]], [1, 0, 2]), [-1, 1, 1])


@pytest.mark.slow
def test_aum_against_the_aum_package(tmp_path):
    torch = pytest.importorskip("torch")
    aum = pytest.importorskip("aum")
    rng = np.random.default_rng(3)
    E, N, C = 5, 60, 4
    logits = rng.standard_normal((E, N, C)).astype(np.float32) * 3
    targets = rng.integers(0, C, N)
    margins = np.stack([dy.margin_from_logits(z, targets) for z in logits]).astype(np.float32)
    calc = aum.AUMCalculator(str(tmp_path), compressed=True)
    for z in logits:  # the package computes its margins from the logits itself
        calc.update(torch.from_numpy(z), torch.from_numpy(targets), list(range(N)))
    calc.finalize()
    ref = pd.read_csv(tmp_path / "aum_values.csv").set_index("sample_id")["aum"]
    ours = dy.area_under_margin(margins)
    np.testing.assert_allclose(ours["aum"].to_numpy(), ref.loc[np.arange(N)].to_numpy(), rtol=1e-5, atol=1e-5)
    assert (ours["measurements"] == E).all()
    # NaN (not measured) is left out, as the package leaves out examples not fed in an epoch
    m = margins.copy()
    m[0, :10] = np.nan
    part = dy.area_under_margin(m)
    np.testing.assert_allclose(part["aum"][:10], margins[1:, :10].mean(axis=0), rtol=1e-6)
