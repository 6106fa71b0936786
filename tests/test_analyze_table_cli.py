"""`dyn table`: the paper's Table 1 from 15 runs whose final accuracies are set by hand,
Table 2 from runs at several lr, and the refusals (mixed models, lacking config keys)."""

import json

import numpy as np
import pytest

from dyn.layout import Layout, Network, Split
from dyn.writer import RunWriter

from helpers import run_dyn

DECAYS = (0.9, 0.99, 0.999, 0.9995, 0.9997)
# The paper's Table 1 (test accuracy %, mean of 3 seeds), recipe.md
PAPER = {"multistep": [91.4, 91.4, 91.4, 91.4, 91.3, 91.4], "step": [90.5, 90.4, 90.7, 90.9, 90.9, 90.9],
         "cosine": [91.4, 91.4, 91.4, 91.4, 91.4, 91.4], "linear": [91.1, 91.1, 91.1, 91.1, 91.1, 91.2],
         "constant": [86.4, 89.3, 91.4, 92.2, 92.3, 92.2]}
SEEDS = (1111, 1234, 4321)
N = 1000  # samples: one sample is 0.1 %


def write_run(path, config, final: dict, train: dict | None = None, epochs=3, decays=DECAYS):
    """A run whose last test epoch has exactly final[net] * N samples right (earlier epochs: none)."""
    nets = [Network.sgd()] + [Network.ema(d) for d in decays]
    splits = {"test": Split(labels=np.zeros(N, int), predicted=False, loss=False)}
    if train:
        splits["train"] = Split(labels=np.zeros(N, int), predicted=False, loss=False)
    rows = lambda acc: np.arange(N) < round(acc * N)  # noqa: E731
    with RunWriter.create(path, Layout(networks=nets, splits=splits), config) as w:
        for e in range(epochs):
            last = e == epochs - 1
            evals = {"test": {n.name: {"correct": rows(final[n.name] if last else 0)} for n in nets}}
            if train and last:
                evals["train"] = {n.name: {"correct": rows(train[n.name])} for n in nets}
            w.append(e, evals=evals)
        w.finish()
    return path


@pytest.fixture(scope="module")
def table1(tmp_path_factory):
    d = tmp_path_factory.mktemp("table1")
    paths = []
    # seeds at mean - 0.1, mean, mean + 0.1 (%): the mean is the paper's, the std 0.1
    for sched, means in reversed(PAPER.items()):  # written out of the paper's order
        for seed, delta in zip(SEEDS, (-0.1, 0.0, 0.1)):
            final = {net: (m + delta) / 100 for net, m in zip(["sgd"] + [f"ema-{d!r}" for d in DECAYS], means)}
            cfg = {"model": "resnet20", "dataset": "cifar10", "schedule": sched, "lr": 0.1, "seed": seed}
            paths.append(write_run(d / f"{sched}-{seed}.h5", cfg, final))
    return paths


def test_table1_layout_from_15_runs(table1):
    r = run_dyn("table", *table1, "--detail", "mean", block=("torch",))
    assert r.returncode == 0, r.stderr
    want = ["| schedule | No EMA | 0.9 | 0.99 | 0.999 | 0.9995 | 0.9997 |", "|---|---|---|---|---|---|---|"]
    want += [f"| {s} | " + " | ".join(f"{m:.1f}" for m in ms) + " |" for s, ms in PAPER.items()]
    assert [ln.replace("**", "") for ln in r.stdout.splitlines()[:7]] == want
    assert r.stdout.splitlines()[6] == "| constant | 86.4 | 89.3 | **91.4** | **92.2** | **92.3** | **92.2** |"
    assert "Table: test accuracy (%) of resnet20 on cifar10, mean over seeds" in r.stdout
    full = run_dyn("table", *table1, block=("torch",)).stdout.splitlines()
    assert full[6] == "| constant | 86.4 ± 0.1 (n=3) | 89.3 ± 0.1 (n=3) | **91.4 ± 0.1 (n=3)** | " \
                      "**92.2 ± 0.1 (n=3)** | **92.3 ± 0.1 (n=3)** | **92.2 ± 0.1 (n=3)** |"
    doc = json.loads(run_dyn("table", *table1, "--format", "json", block=("torch",)).stdout)
    cell = doc["rows"][1]["cells"]["0.9995"]
    assert doc["rows"][1]["key"] == {"schedule": "step"}
    assert cell["n"] == 3 and cell["mean"] == pytest.approx(90.9) and cell["std"] == pytest.approx(0.1)
    tex = run_dyn("table", *table1, "--format", "latex", "--detail", "mean", block=("torch",)).stdout
    # the best of each column in bold, ties at the shown precision all bold (as the paper)
    assert r"constant & 86.4 & 89.3 & \textbf{91.4} & \textbf{92.2} & \textbf{92.3} & \textbf{92.2} \\" in tex
    assert r"step & 90.5 & 90.4 & 90.7 & 90.9 & 90.9 & 90.9 \\" in tex


def test_table_gives_mixed_models_rows_of_their_own(table1, tmp_path):
    other = write_run(tmp_path / "r32.h5", {"model": "resnet32", "dataset": "cifar10", "schedule": "constant",
                                             "lr": 0.1, "seed": 1}, {n: 0.5 for n in ["sgd"] + [f"ema-{d!r}" for d in DECAYS]})
    for extra in ([], ["--group-by", "schedule,model"]):  # the differing key becomes a row level either way
        r = run_dyn("table", table1[0], other, "--detail", "mean", *extra, block=("torch",))
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[0].startswith("| schedule | model | No EMA |")
        assert "| constant | resnet32 | 50.0 |" in r.stdout and "| constant | resnet20 | **86.3** |" in r.stdout
    r = run_dyn("table", table1[0], table1[0], block=("torch",))
    assert r.returncode == 2 and f"{table1[0]} is given twice; give each run once" in r.stderr


def test_table2_layout_and_increase(tmp_path):
    paths = []
    for lr, (sgd_test, ema_test) in {0.05: (0.800, 0.880), 0.1: (0.850, 0.900)}.items():
        cfg = {"model": "resnet20", "dataset": "cifar10", "schedule": "constant", "lr": lr, "seed": 1234}
        paths.append(write_run(tmp_path / f"lr{lr}.h5", cfg, {"sgd": sgd_test, "ema-0.9995": ema_test},
                               train={"sgd": 0.9, "ema-0.9995": 0.95}, decays=(0.9995,)))
    r = run_dyn("table", *paths, "--layout", "lr", "--detail", "mean", "--digits", 2, block=("torch",))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "| lr | No EMA Train | No EMA Test | EMA Train | EMA Test | Increase (%) |"
    assert lines[2] == "| 0.05 | **90.00** | 80.00 | **95.00** | 88.00 | **10.00** |"  # 88 / 80 - 1
    assert lines[3] == "| 0.1 | **90.00** | **85.00** | **95.00** | **90.00** | 5.88 |"   # 90 / 85 - 1


def test_imported_runs_without_config_are_never_pooled(tmp_path):
    a = write_run(tmp_path / "a.h5", {}, {"sgd": 0.5, "ema-0.9": 0.6}, decays=(0.9,))
    b = write_run(tmp_path / "b.h5", {}, {"sgd": 0.7, "ema-0.9": 0.8}, decays=(0.9,))
    r = run_dyn("table", a, b, "--detail", "full", block=("torch",))
    assert r.returncode == 0, r.stderr
    # a row each, named by file: never averaged as two seeds of an unknown experiment
    assert "| — | a | 50.0 (n=1) | 60.0 (n=1) |" in r.stdout
    assert "| — | b | **70.0 (n=1)** | **80.0 (n=1)** |" in r.stdout
    assert f"Note: {b}: its config has no seed, model or data set, so it is not pooled" in r.stdout
