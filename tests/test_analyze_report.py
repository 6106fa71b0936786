"""`dyn analyze report`: every figure, CSV and table in one folder with an index.html that
shows them all; analyses a run cannot support are skipped with their reason."""

import re

from dyn.synthetic import Synthetic

from helpers import run_dyn


def test_report_writes_every_figure_and_an_index(tmp_path):
    a = Synthetic(epochs=12, samples=203, decays=(0.9, 0.999), images=True, weights_every=3).write(
        tmp_path / "a.h5", config={"schedule": "constant", "seed": 1})
    b = Synthetic(epochs=12, samples=203, decays=(0.9, 0.999), weights_every=0, seed=2).write(
        tmp_path / "b.h5", config={"schedule": "cosine", "seed": 2})
    one = Synthetic(epochs=1, samples=203, decays=(0.9, 0.999), weights_every=0, seed=3).write(
        tmp_path / "c.h5", config={"schedule": "step", "seed": 3})
    out = tmp_path / "report"
    r = run_dyn("analyze", "report", a, b, one, "--out-dir", out, "--format", "svg", "--top", 3, block=("torch",))
    assert r.returncode == 0, r.stderr
    index = (out / "index.html").read_text()
    linked = set(re.findall(r'(?:src|href)="([^"]+)"', index))
    files = {p.name for p in out.iterdir()}
    assert linked <= files and files - linked == {"index.html"}  # everything shown or linked
    for name in ["accuracy", "weight-diff"] + [f"{k}-{r}" for k in ("stability", "histogram", "flips", "agreement")
                                               for r in ("a", "b")]:
        assert (out / f"{name}.svg").stat().st_size > 3000 and (out / f"{name}.csv").stat().st_size > 50, name
    assert {"table.md", "table.csv", "table.tex", "table.json"} <= files
    assert "| step |" in (out / "table.md").read_text()  # one epoch is still a final accuracy
    # the one-epoch run: its stability and flips are skipped, with the reason on the page
    assert "stability of step, seed 3: skipped" in index and "needs at least 2 recorded epochs" in index
    assert "histogram-c.svg" in files and "stability-c.svg" not in files
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # the build folder is gone
    # weight-diff over the run with weights only
    assert "b.h5" not in (out / "weight-diff.csv").read_text()


def test_report_refuses_bad_flags_and_leaves_nothing(tmp_path):
    a = Synthetic(epochs=4, samples=20, weights_every=0).write(tmp_path / "a.h5")
    r = run_dyn("analyze", "report", a, "--out-dir", tmp_path / "rep", "--net", "ema-0.1", block=("torch",))
    assert r.returncode == 2 and "--net ema-0.1: no such network" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "rep").exists()  # not even the folder it made for --out-dir


def test_report_adds_settling_and_the_training_sets_dynamics_where_recorded(tmp_path):
    from test_dynamics_commands import dynamics_run

    run = dynamics_run(tmp_path / "run.h5")
    plain = Synthetic(epochs=6, samples=40, decays=(0.9,), weights_every=0).write(tmp_path / "plain.h5")
    out = tmp_path / "report"
    r = run_dyn("analyze", "report", run, plain, "--out-dir", out, block=("torch",))
    assert r.returncode == 0, r.stderr
    files = {p.name for p in out.iterdir()}
    for name in ("forgetting-run", "datamap-run", "aum-run", "settling-run", "settling-plain"):
        assert {f"{name}.png", f"{name}.csv"} <= files, name
    assert not any(n.startswith(("forgetting-plain", "datamap-plain", "aum-plain")) for n in files)
    # what the report's CSV says is what the command says on its own (default split: train-presented)
    alone = tmp_path / "alone.csv"
    assert run_dyn("analyze", "aum", run, "--csv", alone).returncode == 0
    assert (out / "aum-run.csv").read_text() == alone.read_text()
