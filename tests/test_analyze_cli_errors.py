"""Bad input to `dyn analyze`: one line naming the file or flag, a non-zero exit, no
traceback, no files left behind; runs lacking what a command needs say so; a live run is
analysed up to its last committed epoch."""

import json

import numpy as np
import pytest

from dynamics.layout import Layout, Network, Param, Split
from dynamics.synthetic import Synthetic
from dynamics.writer import RunWriter

from helpers import run_dyn


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Synthetic(epochs=10, samples=50, decays=(0.999,)).write(tmp_path_factory.mktemp("err") / "run.h5")


def refused(*args, code=2, match=""):
    r = run_dyn(*args, block=("torch",))
    assert r.returncode == code, (r.returncode, r.stderr)
    assert "Traceback" not in r.stderr and r.stdout == ""
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith("dyn: error: ") and match in line, line
    return line


def test_window_outside_the_run(run):
    refused("analyze", "stability", run, "--to-epoch", 10, match="--to-epoch 10 is outside the recorded epochs 0..9")
    refused("analyze", "histogram", run, "--from-epoch", -1, match="--from-epoch -1 is outside")
    refused("analyze", "flips", run, "--from-epoch", 6, "--to-epoch", 2, match="--from-epoch 6 is after --to-epoch 2")
    refused("analyze", "stability", run, "--from-epoch", 4, "--to-epoch", 4,
            match="stability needs at least 2 recorded epochs; the window 4..4 of split 'val' has 1 (epoch 4)")
    refused("analyze", "weight-diff", run, "--to-epoch", 12, match="--to-epoch 12 is outside the epochs 0..5 with weights")


def test_a_single_epoch_run_has_no_stability(tmp_path):
    one = Synthetic(epochs=1, samples=20).write(tmp_path / "one.h5")
    refused("analyze", "stability", one, code=1,
            match="one.h5: stability needs at least 2 recorded epochs; the run of split 'val' has 1 (epoch 0)")
    refused("analyze", "flips", one, code=1, match="flips needs at least 2 recorded epochs")


def test_unknown_network_split_and_file(run, tmp_path):
    refused("analyze", "stability", run, "--net", "sgd,ema-0.5",
            match="--net ema-0.5: no such network in " + str(run) + " (networks: sgd, ema-0.999)")
    refused("analyze", "agreement", run, "--net", "sgd", match="agreement compares two networks; got 1")
    refused("analyze", "histogram", run, "--split", "train", match="--split train: " + str(run) +
            " has no split 'train' (splits: val, test)")
    refused("analyze", "stability", tmp_path / "nope.h5", code=1, match="nope.h5: no such file")
    refused("analyze", "flips", run, "--out", tmp_path / "f.png", "--top", 500, match="--top 500: too many barcodes")


def test_unwritable_outputs_leave_no_files(run, tmp_path):
    (tmp_path / "file").write_text("")
    refused("analyze", "stability", run, "--out", tmp_path / "file" / "s.png", match="is not a directory")
    refused("analyze", "stability", run, "--csv", tmp_path / "file" / "s.csv", match="--csv")
    refused("analyze", "stability", run, "--out", tmp_path / "s.jpg", match="a figure is .png, .pdf or .svg, not .jpg")
    refused("analyze", "report", run, "--out-dir", tmp_path / "file", match="--out-dir")
    # a refusal after the outputs were checked writes none of them
    refused("analyze", "stability", run, "--net", "nope", "--out", tmp_path / "o" / "s.png", "--csv", tmp_path / "o" / "s.csv")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["file"]


def test_runs_lacking_weights_or_correctness_say_so(run, tmp_path):
    lay = Layout(networks=[Network.sgd(), Network.ema(0.99)], params=[Param("w", (4,), "param")])
    with RunWriter.create(tmp_path / "weights.h5", lay, {}) as w:
        for e in range(3):
            w.append(e, weights={"sgd": (np.ones(4) * e, None), "ema-0.99": (np.ones(4), None)})
        w.finish()
    refused("analyze", "stability", tmp_path / "weights.h5", code=1,
            match="weights.h5: records no per-sample correctness (it holds only weights); stability needs it")
    refused("table", tmp_path / "weights.h5", code=1, match="no run records the 'test' split")
    nw = Synthetic(epochs=3, samples=20, weights_every=0).write(tmp_path / "preds.h5")
    refused("analyze", "weight-diff", nw, code=1,
            match="preds.h5: records no weights (it holds only predictions); weight-diff needs SGD and EMA weights")
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
