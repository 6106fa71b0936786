"""Every `dyn analyze` command in a fresh interpreter with torch unimportable, on synthetic
runs: the numbers against values computed here from the generator's own booleans and
weights, the figures written, the tables printed."""

import json

import numpy as np
import pytest

from dyn.synthetic import Synthetic

from helpers import run_dyn

SYN = Synthetic(epochs=25, samples=1003, decays=(0.9, 0.9995), images=True, weights_every=4)


def truth(syn):
    """Correctness, predictions and weights of every epoch, as the generator made them."""
    correct, predicted, weights = {}, {}, []
    for epoch, kw in syn.records():
        for split, nets in kw["evals"].items():
            for net, rec in nets.items():
                correct.setdefault((split, net), []).append(rec["correct"])
                predicted.setdefault((split, net), []).append(rec["predicted"])
        if "weights" in kw:
            weights.append((epoch, kw["weights"]))
    arr = lambda d: {k: np.array(v) for k, v in d.items()}  # noqa: E731
    return arr(correct), arr(predicted), weights


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return SYN.write(tmp_path_factory.mktemp("cli") / "run.h5", config={"schedule": "constant", "seed": 7})


@pytest.fixture(scope="module")
def facts():
    return truth(SYN)


def dyn_ok(*args):
    r = run_dyn(*args, block=("torch",))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    return r


def dyn_json(*args):
    return json.loads(dyn_ok(*args, "--json").stdout)


def test_stability_numbers_table_csv_and_figure(run, facts, tmp_path):
    correct, _, _ = facts
    r = dyn_ok("analyze", "stability", run, "--from-epoch", 3, "--to-epoch", 20, "--out", tmp_path / "s.svg",
               "--csv", tmp_path / "s.csv")
    assert "SGD" in r.stdout and "EMA 0.9995" in r.stdout and "epochs 3..20" in r.stdout
    assert (tmp_path / "s.svg").stat().st_size > 5000
    lines = (tmp_path / "s.csv").read_text().splitlines()
    assert lines[0] == "run,network,epoch,stability,accuracy" and len(lines) == 1 + 3 * 18
    doc = dyn_json("analyze", "stability", run, "--from-epoch", 3, "--to-epoch", 20)
    nets = doc["runs"][0]["networks"]
    assert list(nets) == ["sgd", "ema-0.9", "ema-0.9995"]
    for net, got in nets.items():
        c = correct[("val", net)][3:21]
        assert got["epochs"] == list(range(3, 21)) and got["stability_epochs"] == list(range(4, 21))
        assert np.allclose(got["stability"], (c[1:] == c[:-1]).mean(axis=1))
        assert np.allclose(got["accuracy"], c.mean(axis=1))
        assert got["last_stability"] == pytest.approx((c[-1] == c[-2]).mean())


def test_stability_without_out_loads_neither_torch_nor_matplotlib_nor_pandas(run):
    r = run_dyn("analyze", "stability", run, "--net", "ema", "--net", "sgd", "--split", "test", block=("torch",),
                code_after="import json; print('MODULES=' + json.dumps(sorted(sys.modules)))")
    assert r.returncode == 2 and "--net ema is ambiguous" in r.stderr  # two EMA networks here
    r = run_dyn("analyze", "stability", run, "--net", "0.9,sgd", "--split", "test", block=("torch",),
                code_after="import json; print('MODULES=' + json.dumps(sorted(sys.modules)))")
    assert r.returncode == 0, r.stderr
    loaded = {m.split(".")[0] for m in json.loads(r.stdout.split("MODULES=")[-1])}
    assert not {"torch", "matplotlib", "pandas"} & loaded
    assert r.stdout.index("EMA 0.9 ") < r.stdout.index("SGD")  # in the order asked for


def test_histogram_default_window_is_the_second_half(run, facts, tmp_path):
    correct, _, _ = facts
    doc = dyn_json("analyze", "histogram", run, "--bins", 4, "--out", tmp_path / "h.pdf", "--log")
    (r,) = doc["runs"]
    assert r["window"] == [12, 24] and r["epochs_in_window"] == 13
    assert (tmp_path / "h.pdf").stat().st_size > 5000
    for net, got in r["networks"].items():
        right = correct[("val", net)][12:25].sum(axis=0)   # 0..13 epochs right, per sample
        wrong = 13 - right
        assert got["always_right"] == pytest.approx(np.mean(right == 13))
        assert got["always_wrong"] == pytest.approx(np.mean(right == 0))
        assert got["in_between"] == pytest.approx(np.mean((right > 0) & (right < 13)))
        # bins [0, .25) [.25, .5) [.5, .75) [.75, 1]: wrong/13 in each, counted by hand
        want = [np.sum(wrong <= 3), np.sum((wrong >= 4) & (wrong <= 6)), np.sum((wrong >= 7) & (wrong <= 9)),
                np.sum(wrong >= 10)]
        assert got["counts"] == [int(x) for x in want] and got["bin_edges"] == [0, 0.25, 0.5, 0.75, 1]


def test_flips_reads_barcodes_only_for_what_shows_them(run, facts):
    from dyn.analyze.commands.flips import FlipsCommand
    from dyn.analyze.options import SharedOptions
    from dyn.reader import open_run

    correct, _, _ = facts
    ask = dict(runs=(), nets=["sgd"], split="val", first=None, last=None, out=None, csv=None)
    with open_run(run) as r:
        (table,) = FlipsCommand().compute([r], SharedOptions(**ask, as_json=False), top=4)
        (doc,) = FlipsCommand().compute([r], SharedOptions(**ask, as_json=True), top=4)
        (forced,) = FlipsCommand().compute([r], SharedOptions(**ask, as_json=False), top=4, barcodes=True)
    assert table.barcodes is None and table.top.tolist() == doc.top.tolist()
    want = correct[("val", "sgd")][:, doc.top].T
    assert np.array_equal(doc.barcodes["sgd"], want) and np.array_equal(forced.barcodes["sgd"], want)


def test_flips_ranking_barcodes_and_csv(run, facts, tmp_path):
    correct, _, _ = facts
    lay = SYN.layout()
    r = dyn_ok("analyze", "flips", run, "--net", "sgd,ema-0.9995", "--top", 6, "--csv", tmp_path / "f.csv",
               "--out", tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 5000 and "top 6 by sum" in r.stdout
    doc = dyn_json("analyze", "flips", run, "--net", "sgd,ema-0.9995", "--top", 6, "--from-epoch", 5)
    (got,) = doc["runs"]
    c = {n: correct[("val", n)][5:] for n in ("sgd", "ema-0.9995")}
    flips = {n: (v[1:] != v[:-1]).sum(axis=0) for n, v in c.items()}
    total = flips["sgd"] + flips["ema-0.9995"]
    want = sorted(range(SYN.samples), key=lambda i: (-total[i], i))[:6]
    assert [t["sample"] for t in got["top"]] == want
    for t in got["top"]:
        s = t["sample"]
        assert t["flips"] == {n: int(flips[n][s]) for n in c}
        assert t["label"] == lay.splits["val"].labels[s] and t["dataset_index"] == lay.splits["val"].index[s]
        assert t["barcodes"]["sgd"] == "".join("1" if x else "0" for x in c["sgd"][:, s])
    assert got["networks"]["sgd"]["mean_flips"] == pytest.approx(flips["sgd"].mean())
    csv = (tmp_path / "f.csv").read_text().splitlines()
    assert csv[0] == "run,rank,sample,dataset_index,label,flips_sgd,flips_ema-0.9995" and len(csv) == 7
    ema_only = dyn_json("analyze", "flips", run, "--rank-by", "ema", "--top", 3)["runs"][0]
    f9, f95 = ((correct[("val", n)][1:] != correct[("val", n)][:-1]).sum(axis=0) for n in ("ema-0.9", "ema-0.9995"))
    assert [t["sample"] for t in ema_only["top"]] == sorted(range(SYN.samples), key=lambda i: (-(f9 + f95)[i], i))[:3]


def test_weight_diff_streams_every_recorded_epoch(run, facts, tmp_path):
    _, _, weights = facts
    doc = dyn_json("analyze", "weight-diff", run, run, "--out", tmp_path / "w.png")
    assert (tmp_path / "w.png").stat().st_size > 5000
    nets = doc["runs"][0]["networks"]
    assert list(nets) == ["ema-0.9", "ema-0.9995"]
    for net, got in nets.items():
        assert got["epochs"] == [e for e, _ in weights]
        want = [np.linalg.norm(w[net][0].astype(np.float64) - w["sgd"][0]) / np.linalg.norm(w["sgd"][0].astype(np.float64))
                for _, w in weights]
        assert got["relative"][0] == 0 and np.allclose(got["relative"], want, rtol=1e-12)
    buf = dyn_json("analyze", "weight-diff", run, "--net", "ema-0.9", "--include-buffers", "--to-epoch", 8)
    got = buf["runs"][0]["networks"]["ema-0.9"]
    # the float buffers only: num_batches_tracked (the last buffer value) is a counter, not a weight
    full = lambda w, n: np.concatenate([w[n][0].astype(np.float64), w[n][1][:-1]])  # noqa: E731
    want = [np.linalg.norm(full(w, "ema-0.9") - full(w, "sgd")) / np.linalg.norm(full(w, "sgd"))
            for e, w in weights if e <= 8]
    assert got["epochs"] == [0, 4, 8] and np.allclose(got["relative"], want, rtol=1e-12)
    assert buf["runs"][0]["buffers"] == ["bn.running_mean"]


def test_accuracy_bands_over_seeds_and_lr(tmp_path):
    syns = [Synthetic(epochs=8, samples=101, decays=(0.99,), seed=s, weights_every=0) for s in (1, 2, 3)]
    paths = [syn.write(tmp_path / f"r{i}.h5", config={"schedule": sch, "seed": syn.seed})
             for i, (syn, sch) in enumerate(zip(syns, ["constant", "constant", "cosine"]))]
    doc = dyn_json("analyze", "accuracy", *paths, "--split", "test", "--lr", "--out", tmp_path / "a.png")
    assert (tmp_path / "a.png").stat().st_size > 5000
    const, cos = doc["groups"]
    assert (const["label"], cos["label"], const["runs"], cos["runs"]) == \
        ("constant", "cosine", [str(paths[0]), str(paths[1])], [str(paths[2])])
    accs = [truth(s)[0][("test", "ema-0.99")].mean(axis=1) for s in syns]
    got = const["networks"]["ema-0.99"]
    assert got["runs"] == 2 and np.allclose(got["mean"], (accs[0] + accs[1]) / 2)
    assert np.allclose(got["lo"], np.minimum(accs[0], accs[1])) and np.allclose(got["hi"], np.maximum(accs[0], accs[1]))
    assert np.allclose(cos["networks"]["ema-0.99"]["mean"], accs[2])
    assert const["lr"] == {"epochs": list(range(8)), "lr": [0.1] * 8}


def test_agreement_correctness_and_labels(run, facts, tmp_path):
    correct, predicted, _ = facts
    doc = dyn_json("analyze", "agreement", run, "--net", "sgd,ema-0.9", "--split", "test", "--out", tmp_path / "g.png")
    assert (tmp_path / "g.png").stat().st_size > 5000
    (got,) = doc["runs"]
    a, b = correct[("test", "sgd")], correct[("test", "ema-0.9")]
    assert np.allclose(got["correct_differs"], (a != b).mean(axis=1))
    assert np.allclose(got["label_differs"], (predicted[("test", "sgd")] != predicted[("test", "ema-0.9")]).mean(axis=1))
    assert got["never_differ"] == pytest.approx(np.mean((a != b).sum(axis=0) == 0))


def test_the_command_table_loads_each_command_by_name_and_says_its_first_help_line():
    import importlib

    from dyn.analyze.cli import ANALYSES
    from dyn.analyze.command import Analysis

    for name, (path, line) in ANALYSES.items():
        module, attr = path.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        assert cmd.name == name and cmd.help.strip().splitlines()[0] == line, name
    shapes = {cls.__name__ for cls in Analysis.__subclasses__()} | {
        c.__name__ for base in Analysis.__subclasses__() for c in base.__subclasses__()}
    assert {"StabilityCommand", "SettlingCommand", "ForgettingCommand", "WeightDiffCommand"} <= shapes
