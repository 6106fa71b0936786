"""The Python API (dyn.analyze.stability, ...): each function's DataFrame holds the numbers its
command's --csv holds on the same run, with the command's defaults; runs may be paths or open
runs; plotting functions draw on a given figure; examples/notebook.py runs."""

import os
import re
import runpy
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import dyn
import dyn.analyze as da
from dyn.analyze.cli import analyze
from dyn.synthetic import Synthetic

ROOT = Path(__file__).resolve().parents[1]
SYN = Synthetic(epochs=14, samples=301, decays=(0.9, 0.9995), weights_every=3, images=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return SYN.write(tmp_path_factory.mktemp("api") / "run.h5", config={"schedule": "constant", "seed": 3})


def command_csv(tmp_path, *args) -> pd.DataFrame:
    out = tmp_path / "out.csv"
    r = CliRunner().invoke(analyze, [*map(str, args), "--csv", str(out)])
    assert r.exit_code == 0, r.output
    return pd.read_csv(out, keep_default_na=False, na_values=[""])


def same(api: pd.DataFrame, csv: pd.DataFrame):
    """Every column of the CSV, equal in the API's DataFrame (floats to the CSV's full precision)."""
    assert len(api) == len(csv) > 0
    for c in csv.columns:
        a, b = api[c].to_numpy(), csv[c].to_numpy()
        if pd.api.types.is_numeric_dtype(api[c]):
            np.testing.assert_array_equal(a.astype(float), b.astype(float), err_msg=c)
        else:
            assert [("" if x is None or x != x else str(x)) for x in a] == \
                   [("" if x != x else str(x)) for x in b], c


CASES = [  # (function, its keyword arguments, the command and its flags)
    ("stability", {}, ["stability"]),
    ("stability", {"networks": "sgd,ema-0.9", "split": "test", "from_epoch": 4, "to_epoch": 9},
     ["stability", "--net", "sgd,ema-0.9", "--split", "test", "--from-epoch", "4", "--to-epoch", "9"]),
    ("misclassification", {}, ["histogram"]),
    ("misclassification", {"bins": 7, "from_epoch": 2}, ["histogram", "--bins", "7", "--from-epoch", "2"]),
    ("weight_difference", {}, ["weight-diff"]),
    ("weight_difference", {"networks": ["ema-0.9995"], "include_buffers": True},
     ["weight-diff", "--net", "ema-0.9995", "--include-buffers"]),
    ("accuracy", {}, ["accuracy"]),
    ("accuracy", {"split": "test", "band": "std"}, ["accuracy", "--split", "test", "--band", "std"]),
    ("agreement", {"networks": "sgd,ema-0.9"}, ["agreement", "--net", "sgd,ema-0.9"]),
]


@pytest.mark.parametrize("fn,kw,cmd", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_each_function_returns_its_commands_csv(run, tmp_path, fn, kw, cmd):
    csv = command_csv(tmp_path, cmd[0], run, *cmd[1:])
    df = getattr(da, fn)(run, **kw)
    assert list(df.columns) == list(csv.columns)
    same(df, csv)


def test_flips_long_frame_holds_the_commands_wide_csv(run, tmp_path):
    csv = command_csv(tmp_path, "flips", run, "--top", "12", "--rank-by", "ema")
    df = da.flips(run, top=12, rank_by="ema")
    nets = ["sgd", "ema-0.9", "ema-0.9995"]
    assert sorted(df["network"].unique()) == sorted(nets) and len(df) == 12 * len(nets)
    for net in nets:
        d = df[df["network"] == net].sort_values("rank").reset_index(drop=True)
        same(d[["run", "rank", "sample", "dataset_index", "label"]], csv[["run", "rank", "sample", "dataset_index",
                                                                         "label"]])
        np.testing.assert_array_equal(d["flips"], csv[f"flips_{net}"])
        # the barcode, against the generator's own booleans, and its flips counted by hand
        truth = np.array([kw["evals"]["val"][net]["correct"] for _, kw in SYN.records()])
        for s, code, f in zip(d["sample"], d["barcode"], d["flips"]):
            assert code == "".join("1" if b else "0" for b in truth[:, s])
            assert f == np.count_nonzero(truth[1:, s] != truth[:-1, s])


def test_stability_by_hand_and_over_open_runs_and_several(run, tmp_path):
    other = Synthetic(epochs=6, samples=50, decays=(0.99,), seed=5).write(tmp_path / "b.h5")
    with dyn.open_run(run) as opened:
        df = da.stability([opened, other], networks="sgd")
        assert opened.networks  # an open run given is left open
    truth = np.array([kw["evals"]["val"]["sgd"]["correct"] for _, kw in SYN.records()])
    a = df[df["run"] == str(run)]
    np.testing.assert_allclose(a["accuracy"], truth.mean(axis=1))
    np.testing.assert_allclose(a["stability"].to_numpy()[1:], (truth[1:] == truth[:-1]).mean(axis=1))
    assert np.isnan(a["stability"].iloc[0]) and len(df[df["run"] == str(other)]) == 6
    assert list(da.stability(run, networks=[0.9995, "sgd"])["network"].unique()) == ["ema-0.9995", "sgd"]


def test_plot_functions_draw_on_a_given_figure_and_refuse_an_ambiguous_run(run, tmp_path):
    from matplotlib.figure import Figure

    other = Synthetic(epochs=6, samples=50, seed=5).write(tmp_path / "b.h5")
    df = da.stability([run, other])
    with pytest.raises(ValueError, match="holds 2 runs"):
        da.plot_stability(df)
    fig = Figure()
    left, right = fig.subfigures(1, 2)
    assert da.plot_stability(df, run=str(run), fig=left) is left
    ax = right.subplots()
    assert da.plot_weight_difference(da.weight_difference(run), ax=ax) is right
    assert len(left.axes) == 2 and [len(a.lines) for a in left.axes] == [3, 3] and len(ax.lines) == 2


def test_import_dyn_analyze_loads_no_pandas_until_a_function_is_used():
    import subprocess
    import sys

    code = ("import sys, dyn.analyze as da\n"
            "assert not [m for m in sys.modules if m.split('.')[0] in ('pandas', 'matplotlib', 'h5py')]\n"
            "assert callable(da.stability) and callable(da.plot_flips)\n"
            "import dyn.analyze.measures.stability\n"
            "assert callable(da.stability)  # the analysis module does not clobber the function\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_the_notebook_example_runs_and_draws(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DYN_NOTEBOOK_OUT", str(tmp_path / "notebook.png"))
    ns = runpy.run_path(str(ROOT / "examples" / "notebook.py"), run_name="__main__")
    assert (tmp_path / "notebook.png").stat().st_size > 10_000
    fig = ns["fig"]
    assert len(fig.subfigs) == 2 and all(sf.axes for sf in fig.subfigs)
    for name in ("stab", "hist", "flip", "wd", "acc", "agree"):
        assert isinstance(ns[name], pd.DataFrame) and len(ns[name]), name
    assert os.path.basename(ns["RUN"]).endswith(".h5")


DOC = (ROOT / "docs" / "python-api.md").read_text()


def test_documented_columns_are_the_columns(run):
    documented = {}
    for fn, body in re.findall(r"^### `(\w+)\(.*?\)`\n(.*?)(?=^### |^## )", DOC, re.M | re.S):
        (cols,) = re.findall(r"^Columns: (.*)$", body, re.M)
        documented[fn] = re.findall(r"`(\w+)`", cols)
    from dyn.analyze import api

    assert sorted(documented) == sorted(api.__all__)
    for fn, cols in documented.items():
        if fn in ("forgetting", "datamap", "aum"):
            continue  # need train dynamics, which this run lacks: tests/test_dynamics_commands.py
        kw = {"networks": "sgd,ema-0.9"} if fn == "agreement" else {}
        assert list(getattr(da, fn)(run, **kw).columns) == cols, fn


@pytest.mark.slow
def test_documented_examples_run(tmp_path):
    import subprocess
    import sys

    code = "\n".join(re.findall(r"```python\n(.*?)```", DOC, re.S))
    names = sorted(set(re.findall(r'"(runs/[\w.-]+\.h5)"', code)))
    (tmp_path / "runs").mkdir()
    for i, name in enumerate(names):  # a run of its own per name: the accuracy example averages seeds
        Synthetic(epochs=100, samples=60, weights_every=20, seed=i).write(tmp_path / name, config={"seed": i})
    r = subprocess.run([sys.executable, "-c", "import dyn.analyze as da\n" + code], capture_output=True, text=True,
                       cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "stability-and-weights.png").stat().st_size > 10_000
