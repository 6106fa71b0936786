"""`dyn train` end to end on the digits: a valid run file, resume bit for bit, divergence, signals."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dyn import open_run
from helpers import ROOT, assert_same_records, run_dyn

TINY = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9,0.99",
        "--batch-size", "256", "--no-progress"]


def dyn_train(*args, timeout=600):
    return run_dyn("train", *TINY, *args, timeout=timeout)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """An uninterrupted 4-epoch run: the reference for resume and for the record's contents."""
    out = tmp_path_factory.mktemp("full") / "full.h5"
    r = dyn_train("--epochs", "4", "--out", out)
    assert r.returncode == 0, r.stderr
    return out


def test_run_file_is_valid_and_accuracies_match_a_separate_evaluation(full_run):
    from dyn.train.data import load_dataset, normalize
    from dyn.train.models import build_model

    data = load_dataset("digits")
    with open_run(full_run) as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"]
        assert run.splits == ["val", "test", "train", "train-augmented"]
        assert list(run.epochs("val")) == [0, 1, 2, 3, 4] and list(run.epochs("train")) == [4]
        assert list(run.epochs("train-augmented")) == [4]
        assert list(run.weight_epochs()) == [0, 1, 2, 3, 4]
        assert run.images("val").shape == (360, 8, 8, 1)
        np.testing.assert_array_equal(run.dataset_index("val"), data.val_indices)
        m = run.metrics()
        assert list(m["iteration"]) == [0, 5, 10, 15, 20]  # 1,077 samples / 256 = 5 steps per epoch
        assert np.allclose(m["lr"].iloc[1:], 0.05)
        for net in run.networks:
            for split in ("val", "test"):
                x, y = data.split(split)
                model = build_model("resnet20", 10, in_channels=1)
                model.load_state_dict({k: torch.from_numpy(v) for k, v in run.state_dict(net, 4).items()})
                model.eval()
                with torch.no_grad():
                    pred = model(normalize(x, data.mean, data.std)).argmax(1).numpy()
                np.testing.assert_array_equal(run.correct(split, net)[-1], pred == y.numpy())
                np.testing.assert_array_equal(run.predicted(split, net)[-1], pred)
                assert m[f"{net}/{split}/acc"].iloc[-1] == pytest.approx((pred == y.numpy()).mean())


def test_resume_after_sigkill_equals_uninterrupted_bit_for_bit(full_run, tmp_path):
    out = tmp_path / "killed.h5"
    cmd = [sys.executable, "-m", "dyn", "train", *TINY, "--epochs", "4", "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # kill as soon as epoch 2 is committed, in the middle of epoch 3
        if line.startswith("epoch 2/4"):
            time.sleep(0.1)
            p.send_signal(signal.SIGKILL)
            break
    p.wait()
    with open_run(out) as run:
        assert run.state == "interrupted" and run.resumable and 2 <= run.rows("metrics") - 1 < 4
    r = run_dyn("train", "--resume", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert_same_records(full_run, out)


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_cleanly_and_resumes(full_run, tmp_path, sig, code):
    out = tmp_path / "stopped.h5"
    cmd = [sys.executable, "-m", "dyn", "train", *TINY, "--epochs", "4", "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if line.startswith("epoch 1/4"):
            p.send_signal(sig)
            break
    _, err = p.communicate()
    assert p.returncode == code, err
    assert f"{sig.name}: stopped" in err and "--resume" in err and "Traceback" not in err
    with open_run(out) as run:
        assert run.state == "stopped" and run.resumable
    r = run_dyn("train", "--resume", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert_same_records(full_run, out)


def test_divergence_stops_with_exit_3(tmp_path):
    out = tmp_path / "div.h5"
    r = dyn_train("--lr", "1e6", "--epochs", "5", "--out", out)
    assert r.returncode == 3, r.stderr
    assert "diverged" in r.stderr and "Traceback" not in r.stderr
    with open_run(out) as run:
        assert run.state == "diverged"
        k = run.diverged_epoch
        assert k >= 1 and list(run.epochs("val")) == list(range(k))  # the epochs before are kept
    r = run_dyn("inspect", out)
    assert f"diverged at epoch {k}" in r.stdout
    # the analyses work on the epochs before; no NaN is printed without its reason
    for command in ("stability", "flips", "histogram", "accuracy", "weight-diff"):
        text, doc = run_dyn("analyze", command, out), run_dyn("analyze", command, out, "--json")
        assert text.returncode == doc.returncode == 0, (command, text.stderr, doc.stderr)
        assert not {"nan", "-nan", "inf", "-inf"} & set(text.stdout.lower().split()), text.stdout
        assert ": NaN" not in doc.stdout and "Infinity" not in doc.stdout  # JSON: null, never NaN
        shown = json.loads(doc.stdout)
        for result in shown.get("runs", []):
            if "window" in result:
                assert result["window"] == [0, k - 1], command
            for values in result["networks"].values():
                if command == "weight-diff":  # each missing ratio comes with why
                    assert values["epochs"][-1] == k - 1
                    assert [v is None for v in values["relative"]] == [bool(w) for w in values["reasons"]]
        for group in shown.get("groups", []):
            assert {v["last_epoch"] for v in group["networks"].values()} == {k - 1}


def test_train_without_torch_says_how_to_install(tmp_path):
    r = run_dyn("train", "--dataset", "digits", "--out", tmp_path / "x.h5", block=("torch", "torchvision"))
    assert r.returncode == 2
    assert "pip install 'dyn-ema[train]'" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.h5").exists()
