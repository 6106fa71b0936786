"""examples/: each runs as a user runs it (a fresh interpreter) and writes what it says it does."""

import importlib.util
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

from dyn import open_run
from helpers import ROOT
from test_train_run import assert_same_records

EXAMPLE = ROOT / "examples" / "record_your_own_loop.py"
EPOCHS = 3


def example(*args):
    return subprocess.run([sys.executable, str(EXAMPLE), "--epochs", str(EPOCHS), *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)


def example_module():
    spec = importlib.util.spec_from_file_location("record_your_own_loop", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def own_loop_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("example") / "mine.h5"
    r = example("--out", out)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert f"dyn inspect {out}" in r.stdout and "dyn analyze" in r.stdout  # says how to analyse it
    return out


def test_own_loop_writes_every_network_every_epoch(own_loop_run):
    with open_run(own_loop_run) as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"]
        assert run.splits == ["val", "test"]
        for split in run.splits:
            assert list(run.epochs(split)) == list(range(EPOCHS + 1))
            assert run.correct(split, "sgd").shape == (EPOCHS + 1, 360)
        assert list(run.weight_epochs()) == list(range(EPOCHS + 1))
        assert run.images("val").shape == (360, 8, 8, 1)
        m = run.metrics()
        assert list(m["iteration"]) == [17 * e for e in range(EPOCHS + 1)]  # ceil(1077 / 64) steps
        assert np.isfinite(m["train_loss"].iloc[1:]).all()
        # epoch 0 is the initial weights for every network; after training the EMAs lag SGD
        assert np.array_equal(run.params("ema-0.9", 0), run.params("sgd", 0))
        assert not np.array_equal(run.params("ema-0.9", EPOCHS), run.params("sgd", EPOCHS))


def test_own_loop_accuracies_match_a_separate_evaluation_of_the_stored_weights(own_loop_run):
    mod = example_module()
    _, val, test = mod.digits()
    with open_run(own_loop_run) as run:
        m = run.metrics()
        for split, (x, y) in (("val", val), ("test", test)):
            np.testing.assert_array_equal(run.labels(split), y.numpy())
            model = mod.SmallCNN()
            state = run.state_dict("ema-0.9", EPOCHS)  # an EMA network: its own BN statistics too
            model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
            model.eval()
            with torch.no_grad():
                pred = model(x).argmax(1).numpy()
            np.testing.assert_array_equal(run.predicted(split, "ema-0.9")[-1], pred)
            np.testing.assert_array_equal(run.correct(split, "ema-0.9")[-1], pred == y.numpy())
            assert m[f"ema-0.9/{split}/acc"].iloc[-1] == pytest.approx((pred == y.numpy()).mean())


def test_own_loop_stopped_by_ctrl_c_resumes_bit_for_bit(own_loop_run, tmp_path):
    out = tmp_path / "stopped.h5"
    p = subprocess.Popen([sys.executable, str(EXAMPLE), "--epochs", str(EPOCHS), "--out", str(out)],
                         cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith(f"epoch 1/{EPOCHS}"):
            p.send_signal(signal.SIGINT)  # lands in epoch 2: stopped there, epochs 0..1 kept
            break
    rest, err = p.communicate(timeout=600)
    assert p.returncode == 130, err
    assert "--resume" in rest and "Traceback" not in err
    with open_run(out) as run:
        assert run.state == "stopped" and run.resumable
        assert list(run.epochs("val")) == [0, 1]
    r = example("--out", out, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stdout and "after epoch 1" in r.stdout
    assert_same_records(own_loop_run, out)
