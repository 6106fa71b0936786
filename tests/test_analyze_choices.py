"""dyn.analyze.networks, .window, .inputs, .naming and .output: network names, epoch windows, what a
run must hold, run labels, and output paths, each refusal one line naming the run or flag."""

import numpy as np
import pytest

from dyn.analyze import inputs, naming, networks, output, window
from dyn.analyze.options import parse_nets
from dyn.errors import DynError, RunFileError, UsageError
from dyn.layout import Layout, Network, Param, Split
from dyn.reader import open_run
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("source")
    a = Synthetic(epochs=11, samples=20, decays=(0.9995, 0.9), weights_every=0).write(
        d / "a.h5", config={"schedule": "constant", "seed": 1})
    b = Synthetic(epochs=11, samples=20, decays=(0.999,), weights_every=0, seed=2).write(
        d / "b.h5", config={"schedule": "cosine", "seed": 2})
    # epochs recorded every 2: rows 0..5 hold epochs 0, 2, ..., 10
    lay = Layout(networks=[Network.sgd(), Network("ema", "ema", None), Network("online")],
                 splits={"val": Split(labels=np.zeros(9, int), predicted=False, loss=False)})
    with RunWriter.create(d / "c.h5", lay, {}) as w:
        for e in range(0, 11, 2):
            w.append(e, evals={"val": {n: {"correct": np.ones(9, bool)} for n in ("sgd", "ema", "online")}})
        w.finish()
    return {k: open_run(p) for k, p in (("a", a), ("b", b), ("c", d / "c.h5"))}


def test_default_networks_are_sgd_then_emas_by_decay(runs):
    assert networks.choose(runs["a"]) == ["sgd", "ema-0.9", "ema-0.9995"]
    assert networks.choose(runs["c"]) == ["sgd", "ema"]  # kind "ema" without a decay; not "online"


def test_network_names_aliases_and_decays(runs):
    a, b = runs["a"], runs["b"]
    assert networks.choose(a, ["ema-0.9995", "sgd", "0.9", "ema-0.90", "sgd"]) == ["ema-0.9995", "sgd", "ema-0.9"]
    assert networks.choose(b, ["ema"]) == ["ema-0.999"]
    assert networks.choose(runs["c"], ["online", "ema"]) == ["online", "ema"]
    with pytest.raises(UsageError, match=r"--net ema is ambiguous: .*a.h5 has 2 EMA networks \(ema-0.9, ema-0.9995\)"):
        networks.choose(a, ["ema"])
    with pytest.raises(UsageError, match=r"--net ema-0.5: no such network in .*a.h5 \(networks: sgd, ema-0.9995, ema-0.9\)"):
        networks.choose(a, ["sgd", "ema-0.5"])
    assert parse_nets(("sgd,ema-0.9", "ema")) == ["sgd", "ema-0.9", "ema"] and parse_nets(()) is None
    with pytest.raises(UsageError, match="empty network name"):
        parse_nets(("sgd,",))


def test_pair_defaults_to_sgd_and_the_only_ema(runs):
    assert networks.pair(runs["b"]) == ("sgd", "ema-0.999")
    assert networks.pair(runs["a"], ["ema-0.9", "sgd"]) == ("ema-0.9", "sgd")
    with pytest.raises(UsageError, match="choose the two networks"):
        networks.pair(runs["a"])
    with pytest.raises(UsageError, match="compares two networks; got 3"):
        networks.pair(runs["a"], ["sgd", "ema-0.9", "ema-0.9995"])


def test_windows(runs):
    c = runs["c"]
    w = window.select(c, "val")
    assert (w.lo, w.hi, w.epochs.tolist(), w.span) == (0, 6, [0, 2, 4, 6, 8, 10], "0..10")
    w = window.select(c, "val", 3, 9)  # ends between recorded epochs: the rows inside
    assert (w.lo, w.hi, w.epochs.tolist()) == (2, 5, [4, 6, 8])
    assert window.select(c, "val", default=window.second_half).epochs.tolist() == [6, 8, 10]
    assert window.select(c, "val", first=4, default=window.second_half).epochs.tolist() == [4, 6, 8, 10]
    with pytest.raises(UsageError, match=r"--to-epoch 11 is outside the recorded epochs 0..10 of split 'val' in .*c.h5"):
        window.select(c, "val", 2, 11)
    with pytest.raises(UsageError, match="--from-epoch 5 is after --to-epoch 3"):
        window.select(c, "val", 5, 3)
    with pytest.raises(UsageError, match="window 5..5 holds no recorded epoch"):
        window.select(c, "val", 5, 5)
    with pytest.raises(DynError, match=r"stability needs at least 2 recorded epochs; the window 4..4 .* has 1 \(epoch 4\)") as e:
        window.select(c, "val", 3, 5, need=2, what="stability")
    assert e.value.exit_code == 2  # the flags chose it


def test_runs_lacking_what_an_analysis_needs(runs, tmp_path):
    lay = Layout(networks=[Network.sgd(), Network.ema(0.9)], params=[Param("w", (3,), "param")])
    with RunWriter.create(tmp_path / "w.h5", lay, {}) as w:
        w.append(0, weights={"sgd": (np.ones(3), None), "ema-0.9": (np.ones(3), None)})
        w.finish()
    with open_run(tmp_path / "w.h5") as run:
        with pytest.raises(RunFileError, match=r"w.h5: records no per-sample correctness \(it holds only weights\); "
                                               "stability needs it"):
            inputs.need_correctness(run, "val", "stability")
        inputs.need_weights(run, "weight-diff")
    with pytest.raises(UsageError, match=r"--split train: .*a.h5 has no split 'train' \(splits: val, test\)"):
        inputs.need_correctness(runs["a"], "train", "stability")
    with pytest.raises(RunFileError, match=r"a.h5: records no weights \(it holds only predictions\); weight-diff"):
        inputs.need_weights(runs["a"], "weight-diff")


def test_run_labels_say_what_differs(runs):
    infos = naming.name_runs([runs["a"], runs["b"]])
    assert [(i.label, i.name, i.title) for i in infos] == [("constant, seed 1", "a", "constant, seed 1"),
                                                           ("cosine, seed 2", "b", "cosine, seed 2")]
    (one,) = naming.name_runs([runs["a"]])
    assert (one.label, one.title) == ("a", "constant")
    assert naming.name_runs([runs["c"]])[0].title is None
    assert naming.slug("constant, lr 0.1/x") == "constant_lr_0.1_x"


def test_output_paths(tmp_path):
    assert output.check_figure(tmp_path / "f") == tmp_path / "f.png"
    assert output.check_figure(tmp_path / "new" / "deeper" / "f.svg") == tmp_path / "new" / "deeper" / "f.svg"
    with pytest.raises(UsageError, match=r"--out .*f.jpg: a figure is .png, .pdf or .svg, not .jpg"):
        output.check_figure(tmp_path / "f.jpg")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match=r"--csv .*file/x.csv: .*file is not a directory"):
        output.check_writable(tmp_path / "file" / "x.csv", "--csv")
    with pytest.raises(UsageError, match="is a directory"):
        output.check_writable(tmp_path, "--csv")
    assert output.figure_paths(tmp_path / "s.pdf", ["a"]) == [tmp_path / "s.pdf"]
    assert output.figure_paths(tmp_path / "s.pdf", ["a", "b"]) == [tmp_path / "s-a.pdf", tmp_path / "s-b.pdf"]


def test_text_outputs(tmp_path):
    text = output.csv_text([{"a": 1, "b": float("nan")}, {"a": np.int64(2), "b": 0.1 + 0.2}], ["a", "b"])
    assert text == "a,b\n1,\n2,0.30000000000000004\n"
    assert output.json_text({"x": np.array([1.5, np.nan]), "y": np.float32(2)}) == \
        '{\n  "x": [\n    1.5,\n    null\n  ],\n  "y": 2.0\n}\n'
    assert output.text_table(["name", "v"], [["sgd", output.fmt(0.5)], ["ema-0.9", output.fmt(None)]]) == \
        "name" + " " * 10 + "v\n" + "sgd" + " " * 6 + "0.5000\n" + "ema-0.9" + " " * 7 + "—"
    p = output.write_text(tmp_path / "sub" / "x.csv", "hello", "--csv")
    assert p.read_text() == "hello" and [q.name for q in p.parent.iterdir()] == ["x.csv"]
