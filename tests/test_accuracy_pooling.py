"""`dyn analyze accuracy` (and every label) under the one pooling rule (issues 13.4, 19.1, 19.3):
runs are pooled as seeds only when their configs differ in nothing but the seed; runs of unknown
identity are never pooled and are named by file; whatever is left out or cut is said on the
output (the table, the JSON and the figure's panel titles), not only on stderr."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dyn import open_run
from dyn.analyze import naming
from dyn.cli import main
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter

BASE = {"model": "resnet20", "dataset": "digits", "schedule": "constant", "lr": 0.05}


def write(path, n, rng, /, finish=True, **config):
    """A synthetic run of n recorded epochs (0..n-1) with exactly `config`; unfinished runs
    stay 'running' (read back as interrupted: no writer holds them)."""
    syn = Synthetic(epochs=n, samples=64, decays=(0.9,), weights_every=0, seed=rng)
    with RunWriter.create(path, syn.layout(), config) as w:
        for e, kw in syn.records():
            w.append(e, **kw)
        if finish:
            w.finish()
    return path


@pytest.fixture
def dyn(capsys):
    def run(*args):
        try:
            main([*map(str, args)])
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run


def accuracy(dyn, *paths):
    r = dyn("analyze", "accuracy", *paths, "--split", "val", "--json")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["groups"]


def test_a_longer_run_is_its_own_group_not_cut_to_the_short_ones(dyn, tmp_path):
    a = write(tmp_path / "a.h5", 9, 1, **BASE, seed=1, epochs=8)
    b = write(tmp_path / "b.h5", 9, 2, **BASE, seed=2, epochs=8)
    c = write(tmp_path / "c.h5", 61, 3, **BASE, seed=3, epochs=60)
    groups = accuracy(dyn, a, b, c)
    assert [(g["label"], len(g["runs"]), g["networks"]["sgd"]["last_epoch"]) for g in groups] == \
        [("epochs 8", 2, 8), ("epochs 60", 1, 60)]
    # the 60-epoch group's curve is c's own, every epoch of it
    with open_run(c) as run:
        want = run.accuracy("val", "sgd", slice(None))
    np.testing.assert_allclose(groups[1]["networks"]["sgd"]["mean"], want)
    assert all(g["notes"] == [] for g in groups)


def test_a_run_being_written_is_left_out_and_the_outputs_say_so(dyn, tmp_path, monkeypatch):
    a = write(tmp_path / "a.h5", 9, 1, **BASE, seed=1, epochs=8)
    b = write(tmp_path / "b.h5", 9, 2, **BASE, seed=2, epochs=8)
    live = write(tmp_path / "live.h5", 4, 3, finish=False, **BASE, seed=3, epochs=8)
    (g,) = accuracy(dyn, a, b, live)
    assert g["runs"] == [str(a), str(b)] and g["networks"]["sgd"]["last_epoch"] == 8
    with open_run(a) as ra, open_run(b) as rb:  # the mean of the two complete seeds, by hand
        want = (ra.accuracy("val", "sgd", slice(None)) + rb.accuracy("val", "sgd", slice(None))) / 2
    np.testing.assert_allclose(g["networks"]["sgd"]["mean"], want)
    assert g["notes"] == [f"left out {live} (interrupted, not pooled with complete runs)"]
    r = dyn("analyze", "accuracy", a, b, live, "--split", "val")
    assert f"note: left out {live} (interrupted, not pooled with complete runs)" in r.stdout
    # the figure: the panel title says it
    from matplotlib.figure import Figure

    from dyn.analyze.plot import accuracy as plot

    drawn = {}
    monkeypatch.setattr(plot, "accuracy_figure", lambda path, panels, **kw: drawn.update(panels) or Figure())
    assert dyn("analyze", "accuracy", a, b, live, "--split", "val", "--out", tmp_path / "f.png").returncode == 0
    assert list(drawn) == ["constant\n(1 run left out: not complete)"]


def test_seeds_of_different_lengths_are_cut_and_the_outputs_say_so(dyn, tmp_path):
    # two seeds, both still being written, one further along: pooled on the epochs they share
    a = write(tmp_path / "a.h5", 6, 1, finish=False, **BASE, seed=1, epochs=8)
    b = write(tmp_path / "b.h5", 4, 2, finish=False, **BASE, seed=2, epochs=8)
    (g,) = accuracy(dyn, a, b)
    assert g["networks"]["sgd"]["epochs"] == [0, 1, 2, 3]
    assert f"{a} cut to epochs 0..3, the epochs its seeds share (it records 0..5)" in g["notes"]


def test_runs_of_unknown_identity_are_named_by_file_and_never_pooled(dyn, tmp_path):
    imp1 = write(tmp_path / "imported_one.h5", 5, 1, source="dyn import predictions", model=None, dataset=None)
    imp2 = write(tmp_path / "imported_two.h5", 5, 2, source="dyn import predictions", model=None, dataset=None)
    native = write(tmp_path / "native.h5", 5, 3, **BASE, seed=3, epochs=4)
    groups = accuracy(dyn, imp1, imp2, native)
    assert [(g["label"], g["runs"]) for g in groups] == [("imported_one", [str(imp1)]), ("imported_two", [str(imp2)]),
                                                         ("native", [str(native)])]
    # per-run labels (stability, flips, ... legends and titles): file names, never "?, ?, ?, ?"
    with open_run(imp1) as r1, open_run(native) as r3:
        assert naming.labels([r1, r3]) == ["imported_one", "native"]
    # two imported runs alone: two groups, not "runs 1"
    assert [g["label"] for g in accuracy(dyn, imp1, imp2)] == ["imported_one", "imported_two"]


def test_the_rule_itself():
    from dyn.analyze.runs import pool

    run = lambda path, state="complete", **cfg: SimpleNamespace(path=path, config=cfg, state=state)  # noqa: E731
    runs = [run("x/a.h5", **BASE, seed=1, environment={"host": "m1"}, data_dir="d1"),
            run("x/b.h5", **BASE, seed=2, environment={"host": "m2"}, data_dir="d2"),  # where it ran: same experiment
            run("x/c.h5", **BASE, seed=3, warmup_iters=5),
            run("x/d.h5", **{**BASE, "lr": 0.1}, seed=4),
            run("x/e.h5", seed=5),                                # no model, no data set: unknown
            run("x/f.h5", **BASE, seed=6, state="running")]       # partial: left out of a's pool
    pools = pool(runs)
    assert [[m.path for m in p.members] for p in pools] == [["x/a.h5", "x/b.h5"], ["x/c.h5"], ["x/d.h5"], ["x/e.h5"]]
    assert [p.label for p in pools] == ["lr 0.05, no warmup iters", "lr 0.05, warmup iters 5", "lr 0.1, no warmup iters",
                                        "e"]
    assert [m.path for m, _ in pools[0].left_out] == ["x/f.h5"]
