"""dyn sweep --batched: runs trained as one stacked model record what the runs trained one by
one record, resume after SIGKILL, and a diverging run stops alone.

Tolerance. A group's forward and backward are grouped convolutions (vmap over the run axis),
whose kernels sum in another order than one run's: after one step the weights differ by float32
rounding (measured 1.2e-7). Training amplifies such differences (ResNet-20 on the digits: up to
~10x a step at batch 128), so the multi-epoch comparison uses one full batch per epoch (3 steps
in all), where the measured worst differences were 3.6e-4 in a weight, 3.3e-5 in a train loss
and 1 correctness bit of 15,102; the bounds below leave ~5x room. What does not depend on the
weights is compared exactly: initial records, lr, iterations, the data-order generator.
"""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dyn import open_run
from dyn.cli import main
from helpers import ROOT, assert_same_records
from dyn.train.batched import BatchedGroup
from dyn.train.config import TrainConfig
from dyn.train.loop import Trainer

BASE = dict(dataset="digits", batch_size=1077, decays=(0.9, 0.99), device="cpu", epochs=3)
RUNS = [dict(schedule="cosine", lr=0.05, seed=1), dict(schedule="constant", lr=0.1, seed=2),
        dict(schedule="linear", lr=0.2, seed=3)]
WEIGHT_ATOL, LOSS_ATOL, TRAIN_LOSS_ATOL, FLIPS = 2e-3, 5e-3, 2e-4, 1e-3


def configs(**over):
    return [TrainConfig(**{**BASE, **r, **over}).validate() for r in RUNS]


def quiet(text):
    pass


def _resume_state(path):
    with open_run(path) as f:
        epoch, blob = f.resume_state()
    return epoch, torch.load(io.BytesIO(blob), weights_only=False)


def test_one_group_step_is_each_runs_step_to_rounding(tmp_path):
    cfgs = configs(batch_size=128, epochs=1)
    alone = [Trainer(c, tmp_path / f"alone{i}.h5", progress=False) for i, c in enumerate(cfgs)]
    group = BatchedGroup([(c, tmp_path / f"group{i}.h5", False, False) for i, c in enumerate(cfgs)], echo=quiet)
    try:
        xs, ys = [], []
        for t, g in zip(alone, group.trainers):
            (xa, ya), (xb, yb) = next(t.batches.epoch()), next(g.batches.epoch())
            assert torch.equal(xa, xb) and torch.equal(ya, yb)  # same data order and augmentation draws
            t.model.train()
            loss = torch.nn.functional.cross_entropy(t.model(xa), ya)
            t.optimizer.zero_grad()
            loss.backward()
            t.optimizer.step()
            t.scheduler.step()
            t.rec.step(loss)
            xs.append(xb)
            ys.append(yb)
        group._step([0, 1, 2], xs, ys, None)
        for t, g in zip(alone, group.trainers):
            for (name, a), b in zip(t.model.state_dict().items(), g.model.state_dict().values()):
                np.testing.assert_allclose(b.double(), a.double(), rtol=0, atol=1e-6, err_msg=name)
            for k in range(2):  # every EMA network, through the fused update
                a, b = t.rec.ema.flat_params(k), g.rec.ema.flat_params(k)
                np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
            assert g.optimizer.param_groups[0]["lr"] == t.optimizer.param_groups[0]["lr"]
    finally:
        for t in alone:
            t.rec.close()
        group.close()


@pytest.mark.slow
def test_batched_group_records_what_runs_one_by_one_record(tmp_path):
    cfgs = configs()
    for i, c in enumerate(cfgs):
        assert Trainer(c, tmp_path / f"alone{i}.h5", progress=False).run() == 0
    group = BatchedGroup([(c, tmp_path / f"group{i}.h5", False, False) for i, c in enumerate(cfgs)], echo=quiet)
    assert group.run() == 0
    for i in range(len(cfgs)):
        a, b = tmp_path / f"alone{i}.h5", tmp_path / f"group{i}.h5"
        with open_run(a) as ra, open_run(b) as rb:
            assert ra.state == rb.state == "complete"
            assert ra.networks == rb.networks and ra.splits == rb.splits
            ma, mb = ra.metrics(), rb.metrics()
            np.testing.assert_array_equal(ma["epoch"], mb["epoch"])
            np.testing.assert_array_equal(ma["iteration"], mb["iteration"])
            np.testing.assert_array_equal(ma["lr"], mb["lr"])  # each run's own schedule and lr, exactly
            np.testing.assert_allclose(mb["train_loss"], ma["train_loss"], rtol=0, atol=TRAIN_LOSS_ATOL)
            np.testing.assert_array_equal(ra.weight_epochs(), rb.weight_epochs())
            flips = total = 0
            for net in ra.networks:
                for e in ra.weight_epochs():
                    same = np.testing.assert_array_equal if e == 0 else (
                        lambda x, y: np.testing.assert_allclose(y, x, rtol=0, atol=WEIGHT_ATOL))
                    same(ra.params(net, e), rb.params(net, e))
                    same(ra.buffers(net, e), rb.buffers(net, e))
                for s in ra.splits:
                    np.testing.assert_array_equal(ra.epochs(s), rb.epochs(s))
                    ca, cb = ra.correct(s, net), rb.correct(s, net)
                    if s in ("val", "test"):  # epoch 0: the same initial networks, bit for bit
                        np.testing.assert_array_equal(ca[0], cb[0])
                        np.testing.assert_array_equal(ra.loss(s, net)[0], rb.loss(s, net)[0])
                    np.testing.assert_allclose(rb.loss(s, net).astype(float), ra.loss(s, net).astype(float),
                                               rtol=0, atol=LOSS_ATOL)
                    flips += int((ca != cb).sum())
                    total += ca.size
            assert flips <= FLIPS * total, (flips, total)
        # the same data order and augmentation draws: the generators end in the same state
        (ea, sa), (eb, sb) = _resume_state(a), _resume_state(b)
        assert ea == eb == BASE["epochs"]
        assert torch.equal(sa["user"]["batches"]["generator"], sb["user"]["batches"]["generator"])
        assert sa["iteration"] == sb["iteration"]


@pytest.mark.slow
def test_a_diverging_run_stops_alone_at_the_epoch_it_diverges_alone(tmp_path):
    cfgs = configs(epochs=3)
    cfgs[1] = TrainConfig(**{**BASE, **RUNS[1], "lr": 1e30}).validate()
    alone = tmp_path / "alone.h5"
    with pytest.raises(Exception, match="diverged"):
        Trainer(cfgs[1], alone, progress=False).run()
    with open_run(alone) as f:
        assert f.state == "diverged"
        expected = f.diverged_epoch
    assert expected == 2  # the huge step is taken in epoch 1; epoch 2's loss is not finite
    said = []
    group = BatchedGroup([(c, tmp_path / f"group{i}.h5", False, False) for i, c in enumerate(cfgs)],
                         echo=said.append)
    assert group.run() == 0
    assert group.result[tmp_path / "group1.h5"] == "diverged"
    with open_run(tmp_path / "group1.h5") as f:
        assert f.state == "diverged" and f.diverged_epoch == expected
        assert f.metrics()["epoch"].tolist() == list(range(expected))
    for i in (0, 2):
        with open_run(tmp_path / f"group{i}.h5") as f:
            assert f.state == "complete"
            assert f.metrics()["epoch"].tolist() == [0, 1, 2, 3]
    assert any("group1.h5" in s and "diverged" in s for s in said)


SWEEP = ["sweep", "--dataset", "digits", "--schedule", "cosine", "--lr", "0.05,0.1", "--seed", "1",
         "--batch-size", "1077", "--epochs", "2", "--decay", "0.9", "--device", "cpu", "--batched"]


def _sweep_killed_at(point: str, out) -> list[str]:
    """`dyn sweep --batched` in a fresh interpreter, SIGKILLed at the pause point `point`."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DYN_TEST_PAUSE": f"60:{point}"}
    child = subprocess.Popen([sys.executable, "-m", "dyn", *SWEEP, "--out-dir", str(out)], cwd=ROOT, env=env,
                             stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    lines = []
    try:
        for line in child.stderr:
            lines.append(line)
            if line.startswith("dyn-test:") and point in line:
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.wait(timeout=120)
    assert child.returncode == -signal.SIGKILL, "".join(lines)
    return lines


def _sweep(out):
    try:
        main([*SWEEP, "--out-dir", str(out)])
    except SystemExit as e:
        assert not e.code


@pytest.mark.slow
def test_a_group_killed_and_resumed_equals_an_uninterrupted_group(tmp_path):
    _sweep(tmp_path / "whole")
    names = sorted(p.name for p in (tmp_path / "whole").glob("*.h5"))
    assert len(names) == 2
    # killed when every run has committed epoch 1: the resumed group is bit for bit the same
    _sweep_killed_at("batched: epoch 1 committed", tmp_path / "killed")
    for name in names:
        with open_run(tmp_path / "killed" / name) as f:
            assert f.state == "interrupted" and f.metrics()["epoch"].tolist() == [0, 1]
    _sweep(tmp_path / "killed")
    for name in names:
        assert_same_records(tmp_path / "whole" / name, tmp_path / "killed" / name)
    # killed between its runs' commits: the late run catches up alone, then they go on together
    _sweep_killed_at("batched: epoch 1 run 0 committed", tmp_path / "between")
    with open_run(tmp_path / "between" / names[0]) as a, open_run(tmp_path / "between" / names[1]) as b:
        assert a.metrics()["epoch"].tolist() == [0, 1] and b.metrics()["epoch"].tolist() == [0]
    _sweep(tmp_path / "between")
    for name in names:
        with open_run(tmp_path / "whole" / name) as ra, open_run(tmp_path / "between" / name) as rb:
            assert rb.state == "complete"
            np.testing.assert_array_equal(ra.metrics()["lr"], rb.metrics()["lr"])
            for net in ra.networks:
                for e in ra.weight_epochs():
                    np.testing.assert_allclose(rb.params(net, e), ra.params(net, e), rtol=0, atol=WEIGHT_ATOL)


@pytest.mark.parametrize("flags, message", [
    (["--group-size", "3"], "--group-size: only with --batched"),
    (["--batched", "--group-size", "0"], "--group-size: must be >= 1, got 0"),
    (["--batched", "--gpus", "0"], "--batched: not with --gpus"),
    (["--batched", "--nproc", "2"], "--batched: not with --nproc"),
    (["--batched", "--compile"], "--compile: not with --batched"),
    (["--batched", "--channels-last"], "--channels-last: not with --batched"),
])
def test_batched_flags_that_cannot_work_are_refused_in_one_line(tmp_path, capsys, flags, message):
    with pytest.raises(SystemExit) as e:
        main(["sweep", "--dataset", "digits", "--epochs", "1", "--out-dir", str(tmp_path / "o"), *flags])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith(f"dyn: error: {message}") and err.count("\n") == 1, err
    assert "Traceback" not in err and not (tmp_path / "o").exists()
