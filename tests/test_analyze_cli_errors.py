"""`dyn analyze` at the edges: an undefined weight difference says why; a live run is analysed up
to its last committed epoch. What `dyn analyze` refuses (bad flags, windows, networks, splits,
files, outputs) is in the table of tests/test_bad_inputs.py."""

import json

import numpy as np

from dyn.layout import Layout, Network, Param, Split
from dyn.writer import RunWriter

from helpers import run_dyn


def test_weight_diff_of_zero_sgd_weights_says_why_it_is_undefined(tmp_path):
    lay = Layout(networks=[Network.sgd(), Network.ema(0.99)], params=[Param("w", (4,), "param")])
    with RunWriter.create(tmp_path / "weights.h5", lay, {}) as w:
        for e in range(3):
            w.append(e, weights={"sgd": (np.ones(4) * e, None), "ema-0.99": (np.ones(4), None)})
        w.finish()
    r = run_dyn("analyze", "weight-diff", tmp_path / "weights.h5", "--json", block=("torch",))
    got = json.loads(r.stdout)["runs"][0]["networks"]["ema-0.99"]
    assert got["relative"][0] is None and got["reasons"][0] == "SGD weights are all zero (norm 0)"
    assert np.allclose(got["relative"][1:], [0, 0.5])
    assert "undefined at 1 epochs (first 0: SGD weights are all zero (norm 0))" in \
        run_dyn("analyze", "weight-diff", tmp_path / "weights.h5", block=("torch",)).stdout


def test_a_live_run_is_analysed_up_to_its_last_committed_epoch(tmp_path):
    n = 30
    lay = Layout(networks=[Network.sgd(), Network.ema(0.9)],
                 splits={"val": Split(labels=np.zeros(n, int), predicted=False, loss=False)})
    rows = np.random.default_rng(0).random((8, n)) < 0.5
    with RunWriter.create(tmp_path / "live.h5", lay, {}) as w:
        for e in range(5):
            w.append(e, evals={"val": {"sgd": {"correct": rows[e]}, "ema-0.9": {"correct": rows[e]}}})
        r = run_dyn("analyze", "stability", tmp_path / "live.h5", "--json", block=("torch",))
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)["runs"][0]["networks"]["sgd"]
        assert got["epochs"] == [0, 1, 2, 3, 4]
        assert np.allclose(got["stability"], (rows[1:5] == rows[:4]).mean(axis=1))
