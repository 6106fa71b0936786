"""`dyn analyze forgetting | datamap | aum` on a hand-built run: the numbers the commands write
are the pure measures' (dyn.analyze.measures.dynamics) of the records written, the default split
is train-presented, val works from its losses, and what a split lacks is said in one line."""

import json

import numpy as np
import pandas as pd
import pytest

import dyn.analyze as da
from dyn import Eval, Layout, Network, RunWriter, Split
from dyn.analyze.measures import dynamics as dy
from tests.helpers import run_dyn

N, E = 50, 6


def _records(seed, shape):
    rng = np.random.default_rng(seed)
    margin = (rng.standard_normal(shape) + np.linspace(-1, 2, shape[1])).astype(np.float32)
    prob = (1 / (1 + np.exp(-margin))).astype(np.float32)
    return margin, prob, margin > 0


@pytest.fixture(scope="module")
def run_path(tmp_path_factory):
    return dynamics_run(tmp_path_factory.mktemp("dyn") / "run.h5")


def dynamics_run(path):
    """A run with train-presented, train (every 3 epochs, prob and margin) and val (losses)."""
    labels = np.arange(N) % 4
    lay = Layout(networks=[Network.sgd(), Network.ema(0.9)], splits={
        "val": Split(labels=labels[:20]),
        "train": Split(labels=labels, prob=True, margin=True, augmentation="none"),
        "train-presented": Split(labels=labels, index=np.arange(N) + 100, prob=True, margin=True, predicted=False,
                                 loss=False, networks=["sgd"], source="training forward pass"),
    })
    mp, pp, cp = _records(0, (E, N))
    pp[2, :7] = mp[2, :7] = np.nan  # not presented in epoch 3
    cp[2, :7] = False
    mv, _, cv = _records(1, (E + 1, 20))
    with RunWriter.create(path, lay) as w:
        for e in range(E + 1):
            ev = {"val": {n: Eval(correct=cv[e], loss=np.log1p(np.exp(-mv[e]))) for n in ("sgd", "ema-0.9")}}
            if e % 3 == 0:
                mt, pt, ct = _records(10 + e, (2, N))
                ev["train"] = {n: Eval(correct=ct[i], prob=pt[i], margin=mt[i]) for i, n in enumerate(("sgd", "ema-0.9"))}
            if e:
                ev["train-presented"] = {"sgd": Eval(correct=cp[e - 1], prob=pp[e - 1], margin=mp[e - 1])}
            w.append(e, evals=ev)
        w.finish()
    return path


def _f16(x):
    return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)


def test_api_defaults_to_train_presented_and_matches_the_measures(run_path):
    mp, pp, cp = _records(0, (E, N))
    pp[2, :7] = mp[2, :7] = np.nan
    cp[2, :7] = False
    f = da.forgetting(run_path)
    assert set(f["network"]) == {"sgd"}  # train-presented: SGD only
    ref = dy.forgetting(cp, ~np.isnan(pp), epochs=np.arange(1, E + 1))
    np.testing.assert_array_equal(f["forgetting_events"], ref["forgetting_events"])
    np.testing.assert_array_equal(f["dataset_index"], np.arange(N) + 100)
    d = da.datamap(run_path)
    refd = dy.data_map(_f16(pp), cp)
    np.testing.assert_allclose(d["confidence"], refd["confidence"], rtol=1e-6)
    np.testing.assert_allclose(d["variability"], refd["variability"], rtol=1e-5, atol=1e-7)
    assert (d["presentations"][:7] == E - 1).all() and (d["presentations"][7:] == E).all()
    a = da.aum(run_path)
    np.testing.assert_allclose(a["aum"], np.nanmean(_f16(mp), axis=0), rtol=1e-5)
    assert a.sort_values("rank")["sample"].iloc[0] == int(np.nanargmin(np.nanmean(_f16(mp), axis=0)))
    # the train split holds every network
    assert list(dict.fromkeys(da.aum(run_path, split="train")["network"])) == ["sgd", "ema-0.9"]


def test_datamap_on_val_uses_exp_minus_loss(run_path):
    d = da.datamap(run_path, split="val", networks="sgd")
    mv, _, cv = _records(1, (E + 1, 20))
    prob = np.exp(-_f16(np.log1p(np.exp(-mv))))  # stored loss is float16
    np.testing.assert_allclose(d["confidence"], prob.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(d["correctness"], cv.mean(axis=0))


@pytest.mark.slow
def test_commands_csv_json_figures_without_torch(run_path, tmp_path):
    r = run_dyn("analyze", "forgetting", run_path, "--csv", tmp_path / "order.csv", "--out", tmp_path / "f.png",
                "--never-learned", "skip", block=("torch",))
    assert r.returncode == 0, r.stderr
    order = pd.read_csv(tmp_path / "order.csv")
    f = da.forgetting(run_path, never_learned="skip")
    ref = dy.order_by_forgetting(f["forgetting"], f["dataset_index"])
    np.testing.assert_array_equal(order["index"], ref["index"])
    np.testing.assert_array_equal(order["forgetting_counts"], ref["forgetting_counts"])
    assert "unforgettable" in r.stdout and (tmp_path / "f.png").stat().st_size > 1000
    r = run_dyn("analyze", "datamap", run_path, "--split", "train", "--json", "--out", tmp_path / "d.png",
                block=("torch",))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["variability"] == "population std (ddof 0)"
    d = da.datamap(run_path, split="train", networks="ema-0.9")
    hard = dy.region_top(d, "hard-to-learn", 10)["dataset_index"].tolist()
    assert doc["runs"][0]["networks"]["ema-0.9"]["hard-to-learn"] == hard
    r = run_dyn("analyze", "aum", run_path, "--out", tmp_path / "a.png", "--csv", tmp_path / "a.csv")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "a.csv")) == N


def test_what_a_split_lacks_is_one_line(run_path):
    r = run_dyn("analyze", "aum", run_path, "--split", "val")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and "records no margin" in r.stderr and "logits" in r.stderr
    r = run_dyn("analyze", "forgetting", run_path, "--net", "ema-0.9")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "train-presented" in r.stderr, r.stderr


def test_documented_columns_are_the_columns(run_path):
    import re

    from tests.helpers import ROOT

    doc = (ROOT / "docs" / "python-api.md").read_text()
    for fn in ("forgetting", "datamap", "aum"):
        (body,) = re.findall(rf"^### `{fn}\(.*?\)`\n(.*?)(?=^### |^## )", doc, re.M | re.S)
        (cols,) = re.findall(r"^Columns: (.*)$", body, re.M)
        assert list(getattr(da, fn)(run_path).columns) == re.findall(r"`(\w+)`", cols), fn


def test_ranking_across_runs_sums_per_dataset_index(run_path, tmp_path):
    import shutil

    second = tmp_path / "seed2.h5"
    shutil.copy(run_path, second)  # the same counts twice: every total doubles, the order stays
    r = run_dyn("analyze", "forgetting", run_path, second, "--csv", tmp_path / "o.csv")
    assert r.returncode == 0, r.stderr
    both = pd.read_csv(tmp_path / "o.csv")
    f = da.forgetting(run_path)
    ref = dy.order_by_forgetting(np.stack([f["forgetting"]] * 2), f["dataset_index"])
    np.testing.assert_array_equal(both["index"], ref["index"])
    np.testing.assert_array_equal(both["forgetting_counts"], 2 * np.sort(f["forgetting"]))


def test_the_printed_tables_need_no_pandas(run_path):
    # pandas' import is ~0.3 s of a ~1 s command at ImageNet size: only --csv, --out, the Python
    # API (DataFrames) and forgetting's --json (the whole ranking) import it
    for cmd, extra in [(c, ()) for c in ("forgetting", "datamap", "aum")] + [("datamap", ("--json",)),
                                                                          ("aum", ("--json",))]:
        r = run_dyn("analyze", cmd, run_path, *extra, block=("pandas",))
        assert r.returncode == 0, (cmd, r.stderr)
    doc = json.loads(run_dyn("analyze", "datamap", run_path, "--json", block=("pandas",)).stdout)
    d = da.datamap(run_path)  # through DataFrames: pandas' mean skips NaN, as the command's does
    for net, got in doc["runs"][0]["networks"].items():
        want = d[d["network"] == net]
        assert got["mean_confidence"] == float(want["confidence"].mean())
        assert got["mean_variability"] == float(want["variability"].mean())
