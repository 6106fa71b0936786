"""`dyn import dynamics`: cartography's training_dynamics/, the aum package's records and
example_forgetting's stats_dict.pkl into a run, and the analyses on it give the reference tools'
own numbers. A pickle that would build anything but plain data is refused, and nothing runs."""

import json
import pickle

import numpy as np
import pandas as pd
import pytest

import dyn.analyze as da
from dyn import open_run
from dyn.analyze.measures import dynamics as dy
from tests.helpers import run_dyn


def _cartography(folder, logits, gold, guids, skip=()):
    (folder / "training_dynamics").mkdir(parents=True)
    for e in range(len(logits)):
        with open(folder / "training_dynamics" / f"dynamics_epoch_{e}.jsonl", "w") as f:
            for i, g in enumerate(guids):
                if (e, i) not in skip:
                    f.write(json.dumps({"guid": g, f"logits_epoch_{e}": logits[e][i].tolist(), "gold": int(gold[i])}) + "\n")


def test_cartography_oracle_and_gaps(tmp_path):
    from dyn.importers.dynamics import import_dynamics

    # example 7: the oracle (true class 0, logits per epoch [2,1,0], [0,1,0], [3,0,0]);
    # example 3: absent from epoch 1's file (not presented)
    logits = np.array([[[2, 1, 0], [0, 0, 5]], [[0, 1, 0], [0, 0, 5]], [[3, 0, 0], [1, 0, 0]]], float)
    _cartography(tmp_path / "carto", logits, [0, 2], [7, 3], skip={(1, 1)})
    out = import_dynamics(tmp_path / "carto", tmp_path / "c.h5")
    with open_run(out) as run:
        assert run.splits == ["train-presented"] and run.networks == ["sgd"]
        np.testing.assert_array_equal(run.dataset_index("train-presented"), [3, 7])  # sorted by guid
        np.testing.assert_array_equal(run.epochs("train-presented"), [0, 1, 2])
        assert np.isnan(run.prob("train-presented", "sgd")[1, 0])
    d = da.datamap(out).set_index("dataset_index")
    assert d.loc[7, "confidence"] == pytest.approx(0.595542, abs=2e-4)  # float16 storage
    assert d.loc[7, "variability"] == pytest.approx(0.288987, abs=2e-4)
    assert d.loc[7, "correct_epochs"] == 2 and d.loc[3, "presentations"] == 2
    a = da.aum(out).set_index("dataset_index")
    assert a.loc[7, "aum"] == pytest.approx(np.mean([1, -1, 3]))
    assert a.loc[3, "aum"] == pytest.approx(np.mean([5, -1]))


def test_aum_package_records_round_trip(tmp_path):
    torch = pytest.importorskip("torch")
    aum = pytest.importorskip("aum")
    rng = np.random.default_rng(0)
    E, N, C = 4, 30, 5
    targets = rng.integers(0, C, N)
    calc = aum.AUMCalculator(str(tmp_path / "aum"), compressed=False)
    for _ in range(E):
        calc.update(torch.from_numpy(rng.standard_normal((N, C)).astype(np.float32) * 2),
                    torch.from_numpy(targets), list(range(N)))
    calc.finalize()
    r = run_dyn("import", "dynamics", tmp_path / "aum" / "full_aum_records.csv", "--out", tmp_path / "a.h5",
                "--net", "ema-0.999", block=("torch",))
    assert r.returncode == 0, r.stderr
    ref = pd.read_csv(tmp_path / "aum" / "aum_values.csv").set_index("sample_id")["aum"]
    ours = da.aum(tmp_path / "a.h5").set_index("dataset_index")
    assert set(ours["network"]) == {"ema-0.999"}
    np.testing.assert_allclose(ours["aum"], ref.loc[ours.index], atol=5e-3)  # margins stored as float16
    with open_run(tmp_path / "a.h5") as run:
        np.testing.assert_array_equal(run.labels("train-presented"), targets)
    r = run_dyn("import", "dynamics", tmp_path / "aum" / "aum_values.csv", "--out", tmp_path / "b.h5")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "full_aum_records.csv" in r.stderr
    assert not (tmp_path / "b.h5").exists()


def test_toneva_stats_dict(tmp_path):
    seqs = ["00000", "11111", "01011", "10101", "11110", "10000"]  # the reference's oracle
    stats = {np.int64(10 + i): [[0.5] * 5, [float(c) for c in s], [1.0] * 5] for i, s in enumerate(seqs)}
    stats["train"] = [[0.3], [0.9]]  # their summary keys: left out
    (tmp_path / "s.pkl").write_bytes(pickle.dumps(stats))
    r = run_dyn("import", "dynamics", tmp_path / "s.pkl", "--out", tmp_path / "t.h5")
    assert r.returncode == 0, r.stderr
    f = da.forgetting(tmp_path / "t.h5")
    assert f["forgetting"].tolist() == [5, 0, 1, 2, 1, 1] and f["dataset_index"].tolist() == list(range(10, 16))
    order = dy.order_by_forgetting(f["forgetting"], f["dataset_index"])
    assert order["index"].tolist() == [11, 12, 14, 15, 13, 10]
    d = da.datamap(tmp_path / "t.h5")
    assert d["confidence"][0] == pytest.approx(np.exp(-0.5), abs=1e-3)  # prob = exp(-loss)


class _Evil:
    def __reduce__(self):
        import os

        return (os.system, ("touch PWNED",))


def test_a_pickle_that_runs_code_is_refused(tmp_path):
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({1: [[0.1], [1.0], [_Evil()]]}))
    r = run_dyn("import", "dynamics", tmp_path / "evil.pkl", "--out", tmp_path / "e.h5", cwd=tmp_path)
    assert r.returncode != 0 and r.stderr.count("\n") == 1, r.stderr
    assert "refused" in r.stderr and "system" in r.stderr
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "e.h5").exists()
