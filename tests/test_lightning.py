"""dyn.train.lightning.RecordEMA on a real pytorch_lightning install: the example, the EMA under
gradient accumulation against a second implementation, and SIGKILL + resume from Lightning's
own checkpoint against an uninterrupted fit (train-presented included)."""

import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

pl = pytest.importorskip("pytorch_lightning")

from dyn import open_run  # noqa: E402
from helpers import ROOT, assert_same_records  # noqa: E402

EXAMPLE = ROOT / "examples" / "lightning_digits.py"
EPOCHS = 3
STEPS = 17  # ceil(1077 / 64) batches per epoch

# runs the example with a callback that SIGKILLs the process at a given point
KILLER = """
import importlib.util, os, signal, sys
import pytorch_lightning as pl
spec = importlib.util.spec_from_file_location("ex", {example!r})
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
class Kill(pl.Callback):
    def on_train_batch_end(self, trainer, *a):
        if {where!r} == "batch" and trainer.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)
    def on_train_epoch_end(self, trainer, *a):  # after RecordEMA's commit, before ModelCheckpoint
        if {where!r} == "epoch_end" and trainer.current_epoch + 1 == {step}:
            os.kill(os.getpid(), signal.SIGKILL)
sys.exit(ex.main(sys.argv[1:], callbacks=[Kill()]))
"""


def run_example(*args, killer=None):
    cmd = [sys.executable, str(EXAMPLE)] if killer is None else [sys.executable, "-c", killer]
    return subprocess.run([*cmd, "--epochs", str(EPOCHS), *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The example as a user runs it, uninterrupted, with the report."""
    d = tmp_path_factory.mktemp("pl")
    r = run_example("--out", d / "ref.h5", "--report", d / "report")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return d


@pytest.mark.slow
def test_example_records_every_network_every_epoch_and_reports(reference):
    with open_run(reference / "ref.h5") as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"]
        assert run.splits == ["val", "test", "train-presented"]
        for split in ("val", "test"):
            assert list(run.epochs(split)) == list(range(EPOCHS + 1))
            assert run.correct(split, "sgd").shape == (EPOCHS + 1, 360)
        # the training forward pass of every epoch (values checked in test_callbacks_presented.py)
        assert list(run.epochs("train-presented")) == list(range(1, EPOCHS + 1))
        assert run.prob("train-presented", "sgd").shape == (EPOCHS, 1077)
        assert not np.isnan(run.prob("train-presented", "sgd")).any()  # EpochShuffle presents all
        assert list(run.weight_epochs()) == list(range(EPOCHS + 1))
        m = run.metrics()
        assert list(m["iteration"]) == [STEPS * e for e in range(EPOCHS + 1)]
        assert np.isfinite(m["train_loss"].iloc[1:]).all()
        assert np.array_equal(run.params("ema-0.9", 0), run.params("sgd", 0))
        assert not np.array_equal(run.params("ema-0.9", EPOCHS), run.params("sgd", EPOCHS))
        assert run.config["accumulate_grad_batches"] == 1 and run.config["precision"] == "32-true"
    assert (reference / "report" / "index.html").is_file()


@pytest.mark.slow
def test_sigkill_and_resume_from_lightnings_checkpoint_equals_an_uninterrupted_fit(reference, tmp_path):
    """Killed twice: right after the run file committed epoch 2 but before Lightning saved that
    epoch's checkpoint (the resume redoes epoch 2, which the file keeps as it was), then in the
    middle of epoch 3 of the resumed fit; the second resume finishes. One run, three processes."""
    out = tmp_path / "killed.h5"
    r = run_example("--out", out, killer=KILLER.format(example=str(EXAMPLE), where="epoch_end", step=2))
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    with open_run(out) as run:  # what the kill left: whole epochs only
        assert list(run.epochs("val")) == [0, 1, 2] and run.state != "complete"
    assert not list((tmp_path / "killed.ckpt").glob("epoch=1-*.ckpt"))  # Lightning's newest: epoch 0
    killer = KILLER.format(example=str(EXAMPLE), where="batch", step=2 * STEPS + 5)
    r = run_example("--out", out, "--resume", killer=killer)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    with open_run(out) as run:
        assert list(run.epochs("val")) == [0, 1, 2] and run.state != "complete"
    r = run_example("--out", out, "--resume")
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_records(reference / "ref.h5", out)


class _Tiny(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        return torch.nn.functional.cross_entropy(self(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


class _Trajectory(pl.Callback):
    """The SGD state_dict after every optimizer step, as Lightning reports the steps."""

    def __init__(self):
        self.states, self.seen = [], 0

    def on_train_start(self, trainer, m):
        self.states.append({k: v.detach().clone() for k, v in m.state_dict().items()})

    def on_train_batch_end(self, trainer, m, *a):
        if trainer.global_step > self.seen:
            self.seen = trainer.global_step
            self.states.append({k: v.detach().clone() for k, v in m.state_dict().items()})


def test_ema_under_gradient_accumulation_equals_an_ema_over_the_sgd_trajectory(tmp_path):
    from dyn.train.lightning import RecordEMA

    torch.manual_seed(0)
    x, y = torch.randn(70, 5), torch.randint(0, 3, (70,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)  # 7 batches
    decays = [0.5, 0.9]
    rec, traj = RecordEMA(tmp_path / "r.h5", decays, val=(x[:20], y[:20])), _Trajectory()
    trainer = pl.Trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[rec, traj], accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(_Tiny(), loader)
    steps = len(traj.states) - 1
    assert steps == 2 * 4 == trainer.global_step  # ceil(7 / 2) optimizer steps per epoch, not 7
    # a second implementation: the recurrence tensor by tensor, in float64
    for k, d in enumerate(decays):
        ema = {n: t.double() for n, t in traj.states[0].items()}
        for s in traj.states[1:]:
            for n, t in s.items():
                ema[n] = d * ema[n] + (1 - d) * t.double() if t.is_floating_point() else t.double()
        got = rec.ema.state_dict_for(k)
        for n in ema:
            torch.testing.assert_close(got[n].double(), ema[n], rtol=1e-5, atol=1e-6)
    assert "net.1.running_mean" in ema  # BatchNorm buffers are averaged too
    with open_run(tmp_path / "r.h5") as run:
        assert list(run.metrics()["iteration"]) == [0, 4, 8]
        np.testing.assert_array_equal(run.params("ema-0.5", 2), rec.ema.flat_params(0).numpy())


def test_bf16_mixed_keeps_the_ema_in_float32(tmp_path):
    from dyn.train.lightning import RecordEMA

    torch.manual_seed(0)
    x, y = torch.randn(40, 5), torch.randint(0, 3, (40,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=10)
    rec = RecordEMA(tmp_path / "r.h5", [0.9], val=(x, y))
    trainer = pl.Trainer(max_epochs=1, precision="bf16-mixed", callbacks=[rec], accelerator="cpu", logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(_Tiny(), loader)
    assert all(t.dtype in (torch.float32, torch.int64) for t in rec.ema.state_dict_for(0).values())
    with open_run(tmp_path / "r.h5") as run:
        assert run.config["precision"] == "bf16-mixed" and list(run.epochs("val")) == [0, 1]
