"""`dyn table` pools runs only as seeds of one experiment (dyn.analyze.runs.pool), says on the
table what it left out or replaced, prints Table 3 as the paper does, and fills the Train
columns from the augmented training split by default (issues 13.3, 13.4, 19.1, 19.3, 19.8).

Runs are written with the core writer; each split's last epoch has exactly round(acc * N)
samples right, so every expected cell is worked out by hand from the accuracies given."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dyn.cli import main
from dyn.layout import Layout, Network, Split
from dyn.writer import RunWriter

N = 1000  # samples per split: one sample is 0.1 %
EMA = "ema-0.9995"


def write(path, config, test, train=None, aug=None, epochs=2, finish=True, extra_splits=()):
    """A run whose last epoch has test[net] (train[net], aug[net]) of N right; sgd and one EMA."""
    nets = [Network.sgd(), Network.ema(0.9995)]
    accs = {"test": test, "train": train, "train-augmented": aug, **{s: test for s in extra_splits}}
    accs = {s: a for s, a in accs.items() if a is not None}
    splits = {s: Split(labels=np.zeros(N, int), predicted=False, loss=False) for s in accs}
    rows = lambda acc: np.arange(N) < round(acc * N)  # noqa: E731
    with RunWriter.create(path, Layout(networks=nets, splits=splits), config) as w:
        for e in range(epochs):
            last = e == epochs - 1
            evals = {s: {n.name: {"correct": rows(a[n.name] if last else 0)} for n in nets} for s, a in accs.items()
                     if s in ("test", *extra_splits) or last}
            w.append(e, evals=evals)
        if finish:
            w.finish()
    return path


def cfg(**kw):
    return {"model": "resnet20", "dataset": "cifar10", "schedule": "constant", "lr": 0.1, "epochs": 8, **kw}


@pytest.fixture
def table(capsys):
    """`dyn table ARGS` in this process (a fresh interpreter per call would cost ~1 s each)."""
    def run(*args):
        try:
            main(["table", *map(str, args)])
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run


def test_runs_differing_in_one_key_beside_the_seed_are_not_averaged(table, tmp_path):
    a = write(tmp_path / "a.h5", cfg(seed=1), {"sgd": 0.5, EMA: 0.6})
    b = write(tmp_path / "b.h5", cfg(seed=2), {"sgd": 0.7, EMA: 0.8})
    c = write(tmp_path / "c.h5", cfg(seed=3, epochs=60), {"sgd": 0.9, EMA: 0.95})
    r = table(a, b, c)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # seeds 1 and 2 pooled: (50 + 70) / 2 = 60, std sqrt(200) = 14.1; the 60-epoch run alone
    assert lines[0] == "| schedule | epochs | No EMA | 0.9995 |"
    assert lines[2:4] == ["| constant | 8 | 60.0 ± 14.1 (n=2) | 70.0 ± 14.1 (n=2) |",
                          "| constant | 60 | **90.0 (n=1)** | **95.0 (n=1)** |"]
    # --group-by takes any config key: an ablation over epochs
    r = table(a, b, c, "--group-by", "epochs", "--detail", "mean", "--format", "json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [row["key"] for row in doc["rows"]] == [{"epochs": 8}, {"epochs": 60}]
    assert [row["cells"]["No EMA"]["n"] for row in doc["rows"]] == [2, 1]
    # a list-valued key (decays) makes rows too
    d = write(tmp_path / "d.h5", cfg(seed=4, decays=[0.9995]), {"sgd": 0.4, EMA: 0.5})
    e = write(tmp_path / "e.h5", cfg(seed=5, decays=[0.99, 0.9995]), {"sgd": 0.6, EMA: 0.7})
    r = table(d, e, "--detail", "mean")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "| schedule | decays | No EMA | 0.9995 |"
    assert sorted(r.stdout.splitlines()[2:4]) == ["| constant | 0.99,0.9995 | **60.0** | **70.0** |",
                                                  "| constant | 0.9995 | 40.0 | 50.0 |"]
    r = table(a, b, "--group-by", "batch_size")
    assert r.returncode == 2 and r.stderr.strip() == "dyn: error: --group-by batch_size: no run's config has 'batch_size'"


def test_a_run_still_being_written_is_left_out_and_the_table_says_so(table, tmp_path):
    a = write(tmp_path / "a.h5", cfg(seed=1), {"sgd": 0.5, EMA: 0.6})
    b = write(tmp_path / "b.h5", cfg(seed=2), {"sgd": 0.7, EMA: 0.8})
    live = write(tmp_path / "live.h5", cfg(seed=3), {"sgd": 0.1, EMA: 0.1}, finish=False)
    r = table(a, b, live)
    assert r.returncode == 0, r.stderr
    assert "| constant | 60.0 ± 14.1 (n=2) | 70.0 ± 14.1 (n=2) |" in r.stdout  # not (50 + 70 + 10) / 3
    assert f"Note: left out {live} (interrupted, not pooled with complete runs)" in r.stdout
    doc = json.loads(table(a, b, live, "--format", "json").stdout)
    assert doc["notes"] == [f"left out {live} (interrupted, not pooled with complete runs)"]
    # alone it is used, and the table says which epoch stands for its final accuracy
    r = table(live)
    assert r.returncode == 0 and f"Note: {live} is interrupted: its last recorded epoch (1) is used" in r.stdout


# The paper's Table 3 (ResNet-50, decay 0.9995), Appendix C
TABLE3 = {"multistep": (100.0, 93.4, 100.0, 93.3), "cosine": (100.0, 94.8, 100.0, 94.8),
          "constant": (97.7, 91.6, 100.0, 95.3)}


@pytest.fixture(scope="module")
def table3(tmp_path_factory):
    d = tmp_path_factory.mktemp("table3")
    out = []
    for sched, (tr, te, etr, ete) in reversed(TABLE3.items()):  # not in the paper's order
        # as `dyn sweep --preset table3` runs them: the multistep run has its own milestones and
        # gamma and no warm-up; the schedule alone still names each row
        c = {"model": "resnet50", "dataset": "cifar10", "schedule": sched, "lr": 0.1, "epochs": 200, "seed": 1111,
             **({"milestones": [60, 120, 160], "gamma": 0.2, "warmup_iters": 0} if sched == "multistep" else
                {"milestones": [90, 135], "gamma": None, "warmup_iters": 5000})}
        out.append(write(d / f"{sched}.h5", c, {"sgd": te / 100, EMA: ete / 100},
                         train={"sgd": 0.5, EMA: 0.5}, aug={"sgd": tr / 100, EMA: etr / 100}))
    return out


def test_table3_layout_as_printed_with_bold_best_cells(table, table3, tmp_path):
    r = table(*table3, "--layout", "table3", "--detail", "mean")
    assert r.returncode == 0, r.stderr
    # bold by hand: the best of each column (ties all bold)
    assert r.stdout.splitlines()[:5] == ["| Schedule | No EMA Train | No EMA Test | EMA Train | EMA Test |",
                                         "|---|---|---|---|---|",
                                         "| Multistep | **100.0** | 93.4 | **100.0** | 93.3 |",
                                         "| Cosine | **100.0** | **94.8** | **100.0** | 94.8 |",
                                         "| Constant | 97.7 | 91.6 | **100.0** | **95.3** |"]
    assert "Train: augmented training images" in r.stdout
    tex = table(*table3, "--layout", "table3", "--detail", "mean", "--format", "latex").stdout
    assert r"Schedule & Train & Test & Train & Test \\" in tex and "Increase" not in tex
    assert r"Constant & 97.7 & 91.6 & \textbf{100.0} & \textbf{95.3} \\" in tex
    # a run that differs in a key Table 3 cannot show: one line naming it
    other = write(tmp_path / "short.h5", {"model": "resnet50", "dataset": "cifar10", "schedule": "constant",
                                          "lr": 0.1, "epochs": 100, "seed": 1111, "milestones": [90, 135],
                                          "gamma": None, "warmup_iters": 5000}, {"sgd": 0.9, EMA: 0.9})
    r = table(*table3, other, "--layout", "table3")
    assert r.returncode == 2
    assert r.stderr.strip() == ("dyn: error: --layout table3 has one row per schedule, but the runs also differ in "
                                "epochs (epochs 200, epochs 100); select runs of one epochs, or use --layout lr "
                                "--group-by schedule,epochs")


def test_train_columns_are_the_augmented_split_by_default(table, tmp_path):
    c = cfg(seed=1)
    run = write(tmp_path / "r.h5", c, {"sgd": 0.8, EMA: 0.9}, train={"sgd": 0.95, EMA: 0.99},
                aug={"sgd": 0.91, EMA: 0.97})
    r = table(run, "--layout", "lr", "--detail", "mean")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2] == "| 0.1 | 91.0 | 80.0 | 97.0 | 90.0 | 12.5 |"  # 90 / 80 - 1
    assert "Train: augmented training images (one fixed-seed crop and flip per image" in r.stdout
    r = table(run, "--layout", "lr", "--detail", "mean", "--train-split", "clean")
    assert r.stdout.splitlines()[2] == "| 0.1 | 95.0 | 80.0 | 99.0 | 90.0 | 12.5 |"
    assert "Train: clean training images" in r.stdout
    # Table 1's layout with --split train follows the same choice
    r = table(run, "--split", "train", "--detail", "mean")
    assert r.stdout.splitlines()[2] == "| constant | 91.0 | 97.0 |"
    # an older run without the augmented split: clean, and the caption says so
    old = write(tmp_path / "old.h5", c, {"sgd": 0.8, EMA: 0.9}, train={"sgd": 0.95, EMA: 0.99})
    r = table(old, "--layout", "lr", "--detail", "mean")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[2] == "| 0.1 | 95.0 | 80.0 | 99.0 | 90.0 | 12.5 |"
    assert "Train: clean training images" in r.stdout
    assert f"Note: Train is measured on clean training images, not augmented ones as in the paper: {old} " \
           "records no 'train-augmented' split" in r.stdout
    r = table(old, "--layout", "lr", "--train-split", "augmented")
    assert r.returncode == 2 and "--train-split augmented: " in r.stderr and "no 'train-augmented'" in r.stderr


def test_split_val_says_the_tables_use_test_and_train(table, tmp_path):
    run = write(tmp_path / "r.h5", cfg(seed=1), {"sgd": 0.8, EMA: 0.9}, extra_splits=("val",))
    r = table(run, "--split", "val")
    assert r.returncode == 2
    assert r.stderr.strip() == ("dyn: error: --split val: the tables show final accuracies on test (or train), "
                                "as the paper's tables do; val is not used")
