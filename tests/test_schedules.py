import io
import math
import subprocess
import sys

import pytest
import torch

from dyn.train.schedules import SCHEDULES, build_scheduler, lr_at

IPE = 352  # CIFAR-10: ceil(45000 / 128)
T = 180 * IPE  # 63,360 iterations
PAPER = dict(base_lr=0.1, iters_per_epoch=IPE, total_iters=T)


def test_multistep_drops_by_ten_at_epochs_90_and_135():
    assert lr_at("multistep", 0, **PAPER) == 0.1
    assert lr_at("multistep", 90 * IPE - 1, **PAPER) == 0.1  # last step of epoch 89
    assert lr_at("multistep", 90 * IPE, **PAPER) == pytest.approx(0.01, rel=1e-12)
    assert lr_at("multistep", 135 * IPE - 1, **PAPER) == pytest.approx(0.01, rel=1e-12)
    assert lr_at("multistep", 135 * IPE, **PAPER) == pytest.approx(0.001, rel=1e-12)
    assert lr_at("multistep", T - 1, **PAPER) == pytest.approx(0.001, rel=1e-12)


def test_multistep_appendix_c_divides_by_five_at_60_120_160():
    kw = dict(PAPER, milestones=(60, 120, 160), gamma=0.2)
    assert lr_at("multistep", 60 * IPE - 1, **kw) == 0.1
    assert lr_at("multistep", 120 * IPE, **kw) == pytest.approx(0.1 / 25, rel=1e-12)
    assert lr_at("multistep", 199 * IPE, **kw) == pytest.approx(0.1 / 125, rel=1e-12)


def test_step_is_0_97_every_two_epochs():
    assert lr_at("step", 2 * IPE - 1, **PAPER) == 0.1  # epochs 0 and 1 share lr 0.1
    assert lr_at("step", 3 * IPE, **PAPER) == pytest.approx(0.1 * 0.97, rel=1e-12)  # epoch 3
    assert lr_at("step", 4 * IPE, **PAPER) == pytest.approx(0.1 * 0.97 * 0.97, rel=1e-12)
    assert lr_at("step", 179 * IPE + 5, **PAPER) == pytest.approx(0.1 * 0.97 ** 89, rel=1e-12)


def test_cosine_is_per_iteration():
    assert lr_at("cosine", 0, **PAPER) == 0.1
    assert lr_at("cosine", T // 2, **PAPER) == pytest.approx(0.05, rel=1e-12)
    assert lr_at("cosine", T // 4, **PAPER) == pytest.approx(0.05 * (1 + math.sqrt(0.5)), rel=1e-12)
    # it changes within an epoch: not stepped per epoch
    assert lr_at("cosine", 1, **PAPER) < lr_at("cosine", 0, **PAPER)
    assert lr_at("cosine", T, **PAPER) == pytest.approx(0.0, abs=1e-15)


def test_linear_and_constant():
    assert lr_at("linear", T // 4, **PAPER) == pytest.approx(0.075, rel=1e-12)
    assert lr_at("linear", 1, **PAPER) == pytest.approx(0.1 * (T - 1) / T, rel=1e-12)
    assert lr_at("linear", T, **PAPER) == 0.0
    assert lr_at("constant", 0, **PAPER) == lr_at("constant", T - 1, **PAPER) == 0.1


def test_warmup_is_linear_from_zero_then_cosine_runs_over_the_remaining_steps():
    kw = dict(PAPER, warmup_iters=5000)
    assert lr_at("constant", 0, **kw) == 0.0
    assert lr_at("constant", 2500, **kw) == pytest.approx(0.05, rel=1e-12)
    assert lr_at("constant", 5000, **kw) == 0.1
    assert lr_at("cosine", 2500, **kw) == pytest.approx(0.05, rel=1e-12)  # the ramp alone
    assert lr_at("cosine", 5000, **kw) == 0.1  # the cosine starts at its peak
    # half-way through the remaining T - 5000 steps (the authors' WarmupCosineSchedule)
    assert lr_at("cosine", 5000 + (T - 5000) // 2, **kw) == pytest.approx(0.05, rel=1e-12)


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="multistep, step, cosine, linear, constant"):
        lr_at("exponential", 0, base_lr=0.1)
    with pytest.raises(ValueError, match="total_iters"):
        lr_at("cosine", 0, base_lr=0.1, iters_per_epoch=IPE)
    with pytest.raises(ValueError, match="iters_per_epoch"):
        lr_at("step", 0, base_lr=0.1, total_iters=T)
    with pytest.raises(ValueError, match="total_iters"):
        build_scheduler(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1), "linear")


def test_lr_at_module_imports_without_torch():
    code = "import sys; import dyn.train.schedules as s; s.lr_at('cosine', 3, base_lr=1, total_iters=9); " \
           "assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def sgd(lr=0.1):
    w = torch.nn.Parameter(torch.ones(3))
    return torch.optim.SGD([w], lr=lr, momentum=0.9, weight_decay=1e-4)


SHORT = dict(iters_per_epoch=4, total_iters=24)


@pytest.mark.parametrize("schedule, extra", [
    ("multistep", dict(milestones=(2, 4))), ("step", dict(step_size=1, gamma=0.5)),
    ("cosine", {}), ("linear", {}), ("constant", {}),
    ("cosine", dict(warmup_iters=5)), ("constant", dict(warmup_iters=5)),
])
def test_scheduler_drives_sgd_at_lr_at_every_step(schedule, extra):
    opt = sgd(lr=0.2)
    sched = build_scheduler(opt, schedule, **SHORT, **extra)
    seen = []
    for s in range(SHORT["total_iters"]):
        # the lr that optimizer step s will use, read where SGD reads it
        assert opt.param_groups[0]["lr"] == lr_at(schedule, s, base_lr=0.2, **SHORT, **extra)
        seen.append(opt.param_groups[0]["lr"])
        opt.param_groups[0]["params"][0].grad = torch.ones(3)
        opt.step()
        sched.step()
    if schedule != "constant" or extra:
        assert len(set(seen)) > 1  # the comparison above saw the lr actually move


def test_scheduler_resumes_from_state_dicts():
    kw = dict(SHORT, warmup_iters=3)
    opt, full = sgd(), []
    sched = build_scheduler(opt, "cosine", **kw)
    for s in range(SHORT["total_iters"]):
        full.append(opt.param_groups[0]["lr"])
        opt.param_groups[0]["params"][0].grad = torch.ones(3)
        opt.step()
        sched.step()
        if s == 9:
            buf = io.BytesIO()
            torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)

    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)  # plain data: no pickled lambdas
    assert ckpt["scheduler"]["last_epoch"] == 10 and ckpt["scheduler"]["lr_lambdas"] == [None]
    opt2 = sgd()
    sched2 = build_scheduler(opt2, "cosine", **kw)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    resumed = []
    for s in range(10, SHORT["total_iters"]):
        resumed.append(opt2.param_groups[0]["lr"])
        opt2.param_groups[0]["params"][0].grad = torch.ones(3)
        opt2.step()
        sched2.step()
    assert resumed == full[10:]
    assert resumed == [lr_at("cosine", s, base_lr=0.1, **kw) for s in range(10, SHORT["total_iters"])]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_is_positive_before_the_end(schedule):
    lrs = [lr_at(schedule, s, **PAPER) for s in range(0, T, 97)]
    assert all(0 < lr <= 0.1 for lr in lrs)
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))  # none of the five ever increases
