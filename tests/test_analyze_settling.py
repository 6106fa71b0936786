"""dyn analyze settling: a hand-worked case, a naive per-sample loop over chunks and windows, and
the command's CSV against the generator's own booleans."""

import io
import json

import numpy as np
import pandas as pd
import pytest

from dyn.analyze.bits import pack
from dyn.analyze.measures.settling import SettlingAccumulator, settling
from dyn.synthetic import Synthetic

from helpers import run_dyn


def naive(correct: np.ndarray, epochs: np.ndarray) -> np.ndarray:
    """The settling epoch of each sample, one sample at a time."""
    out = []
    for col in correct.T:
        flips = [t for t in range(1, len(col)) if col[t] != col[t - 1]]
        out.append(epochs[flips[-1]] if flips else epochs[0])
    return np.array(out)


def test_hand_worked():
    #                 s0 never flips, s1 last flips at row 3, s2 flips once at row 1 and stays wrong
    correct = np.array([[1, 0, 1],
                        [1, 1, 0],
                        [1, 0, 0],
                        [1, 1, 0]], bool)
    s = settling(pack(correct), 3, epochs=[0, 2, 4, 6])
    assert s.settled.tolist() == [0, 6, 2] and s.final.tolist() == [True, True, False]
    np.testing.assert_allclose(s.settled_by(), [1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(s.settled_right_by(), [1 / 3, 1 / 3, 1 / 3, 2 / 3])


@pytest.mark.parametrize("n", [1, 8, 13, 200])
def test_matches_naive_over_chunks_and_window(n):
    rng = np.random.default_rng(n)
    correct = rng.random((40, n)) < 0.7
    correct[:, 0] = True  # a sample that never flips
    epochs = np.arange(0, 80, 2)
    rows = pack(correct)
    for window in (None, (10, 50), (31, 33)):
        lo, hi = (0, 40) if window is None else (np.searchsorted(epochs, window[0]),
                                                   np.searchsorted(epochs, window[1], "right"))
        acc = SettlingAccumulator(n, epochs, window)
        for a in range(0, 40, 7):  # chunks that straddle the window's ends
            acc.add(rows[a:a + 7])
        s = acc.result()
        np.testing.assert_array_equal(s.epochs, epochs[lo:hi])
        np.testing.assert_array_equal(s.settled, naive(correct[lo:hi], epochs[lo:hi]))
        np.testing.assert_array_equal(s.final, correct[hi - 1])
        want = [(s.settled <= e).mean() for e in epochs[lo:hi]]
        np.testing.assert_allclose(s.settled_by(), want)
        np.testing.assert_allclose(s.settled_right_by(), [((s.settled <= e) & s.final).mean() for e in epochs[lo:hi]])


def test_command_csv_and_json_against_the_generators_booleans(tmp_path):
    syn = Synthetic(epochs=15, samples=97, decays=(0.9, 0.9995))
    run = syn.write(tmp_path / "run.h5")
    r = run_dyn("analyze", "settling", run, "--from-epoch", "3", "--csv", tmp_path / "s.csv",
                "--out", tmp_path / "s.png")
    assert r.returncode == 0, r.stderr
    assert "median epoch" in r.stdout and (tmp_path / "s.png").stat().st_size > 0
    csv = pd.read_csv(tmp_path / "s.csv")
    for net in ("sgd", "ema-0.9", "ema-0.9995"):
        truth = np.array([kw["evals"]["val"][net]["correct"] for e, kw in syn.records() if e >= 3])
        epochs = np.arange(3, 15)
        settled, final = naive(truth, epochs), truth[-1]
        d = csv[csv["network"] == net]
        np.testing.assert_array_equal(d["epoch"], epochs)
        np.testing.assert_allclose(d["settled"], [(settled <= e).mean() for e in epochs])
        np.testing.assert_allclose(d["settled_right"], [((settled <= e) & final).mean() for e in epochs])
    doc = json.load(io.StringIO(run_dyn("analyze", "settling", run, "--net", "sgd", "--json").stdout))
    truth = np.array([kw["evals"]["val"]["sgd"]["correct"] for _, kw in syn.records()])
    assert doc["runs"][0]["networks"]["sgd"]["median_epoch"] == float(np.median(naive(truth, np.arange(15))))


def test_a_window_of_one_epoch_is_refused_in_one_line(tmp_path):
    run = Synthetic(epochs=5, samples=10).write(tmp_path / "run.h5")
    r = run_dyn("analyze", "settling", run, "--from-epoch", "4")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().endswith("settling needs at least 2 recorded epochs; the window 4..4 of split 'val' "
                                     "has 1 (epoch 4)")
