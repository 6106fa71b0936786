"""The `lr` metric is the learning rate the epoch's last optimizer step used (issue 13, point 1).

Checked against the schedules' closed forms written out here, independently of
dyn.train.schedules: for all five schedules, with and without a linear warm-up, through the
public Recorder API and through `dyn train`.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn

from dyn import open_run
from dyn.train.recorder import Recorder
from dyn.train.schedules import build_scheduler
from helpers import run_dyn

LR0, IPE, EPOCHS = 0.2, 3, 5
T = IPE * EPOCHS
MILESTONES, GAMMA_MULTI, GAMMA_STEP, STEP_SIZE = (1, 3), 0.1, 0.5, 2


def closed_form(schedule, s, *, lr0=LR0, ipe=IPE, T=T, W=0, milestones=MILESTONES, gamma=None):
    """The lr of optimizer step s (0-based), as recipe.md states each schedule."""
    ramp = s / W if W and s < W else 1.0
    e = s // ipe
    if schedule == "multistep":
        return lr0 * (gamma or GAMMA_MULTI) ** sum(m <= e for m in milestones) * ramp
    if schedule == "step":
        return lr0 * (gamma or GAMMA_STEP) ** (e // STEP_SIZE) * ramp
    if schedule == "constant":
        return lr0 * ramp
    if W and s < W:
        return lr0 * s / W
    if schedule == "cosine":  # from the peak over the remaining T - W steps
        return lr0 * (1 + math.cos(math.pi * (s - W) / (T - W))) / 2
    if schedule == "linear":
        return lr0 * (T - s) / (T - W)
    raise AssertionError(schedule)


CASES = [(s, w) for s in ("multistep", "step", "cosine", "linear", "constant") for w in (0, 4)]


@pytest.mark.parametrize("schedule, warmup", CASES)
def test_recorder_records_the_lr_of_each_epochs_last_step(tmp_path, schedule, warmup):
    torch.manual_seed(0)
    x, y = torch.randn(8 * IPE + 8, 4), torch.randint(0, 3, (8 * IPE + 8,))
    model = nn.Sequential(nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=LR0, momentum=0.9)
    kw = dict(iters_per_epoch=IPE, total_iters=T, warmup_iters=warmup)
    if schedule == "multistep":
        kw["milestones"] = MILESTONES
    if schedule == "step":
        kw.update(gamma=GAMMA_STEP, step_size=STEP_SIZE)
    sched = build_scheduler(opt, schedule, **kw)
    rec = Recorder.create(tmp_path / "run.h5", model, [0.9], {"val": (x[:8], y[:8])}, num_classes=3,
                          optimizer=opt)
    used = []  # what SGD actually read, step by step
    for epoch in range(1, EPOCHS + 1):
        for b in range(IPE):
            i = 8 + 8 * b
            loss = nn.functional.cross_entropy(model(x[i:i + 8]), y[i:i + 8])
            opt.zero_grad()
            loss.backward()
            used.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
            rec.step(loss)
        rec.end_epoch(epoch)
    rec.finish()
    want = [closed_form(schedule, k * IPE - 1, W=warmup) for k in range(1, EPOCHS + 1)]
    assert used[IPE - 1::IPE] == pytest.approx(want, rel=1e-12, abs=1e-15)  # the closed form is right
    with open_run(tmp_path / "run.h5") as run:
        m = run.metrics()
    assert list(m["epoch"]) == list(range(EPOCHS + 1))
    assert math.isnan(m["lr"].iloc[0])  # epoch 0, the initial weights: no step took an lr
    assert list(m["lr"].iloc[1:]) == pytest.approx(want, rel=1e-12, abs=1e-15)
    assert len(set(np.round(want, 12))) > 1 or schedule == "constant" and not warmup


@pytest.mark.slow
@pytest.mark.parametrize("args, schedule, warmup, milestones", [
    (["--schedule", "multistep", "--milestones", "1,2"], "multistep", 0, (1, 2)),  # the example
    (["--schedule", "cosine", "--warmup-iters", "7"], "cosine", 7, ()),
])
def test_dyn_train_records_the_lr_of_each_epochs_last_step(tmp_path, args, schedule, warmup, milestones):
    out = tmp_path / "run.h5"
    r = run_dyn("train", "--dataset", "digits", "--lr", "0.1", "--decay", "0.9", "--batch-size", "256",
                "--epochs", "3", "--no-progress", *args, "--out", out)
    assert r.returncode == 0, r.stderr
    with open_run(out) as run:
        m = run.metrics()
    ipe = 5  # 1,077 digits training samples / 256
    want = [closed_form(schedule, k * ipe - 1, lr0=0.1, ipe=ipe, T=3 * ipe, W=warmup, milestones=milestones)
            for k in (1, 2, 3)]
    if schedule == "multistep":
        assert want == pytest.approx([0.1, 0.01, 0.001], rel=1e-12)
    assert math.isnan(m["lr"].iloc[0])
    assert list(m["lr"].iloc[1:]) == pytest.approx(want, rel=1e-12, abs=1e-15)
