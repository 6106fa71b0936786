"""The paper's five learning-rate schedules, as one closed form and as a torch scheduler.

`lr_at` is the single source of truth: the learning rate used by optimizer step `iteration`
(0-based). It is plain Python (no torch at module level) so that the analysis stage can draw
Figure 1f from the same formula. `build_scheduler` wraps it in a LambdaLR that is stepped once per
ITERATION for every schedule; per-epoch schedules read the epoch as iteration // iters_per_epoch.
That avoids the torch pitfalls recipe.md lists: ConstantLR is a warm-up helper rather than a
constant, a scheduler defined in epochs but stepped per iteration runs 352x too fast, and
SequentialLR restarts the second scheduler's clock at its milestone.

| schedule  | lr at iteration s (epoch e = s // iters_per_epoch, T = total_iters) |
|-----------|----------------------------------------------------------------------|
| multistep | base_lr * gamma ** (number of milestones <= e)   gamma 0.1, milestones 90, 135 |
| step      | base_lr * gamma ** (e // step_size)              gamma 0.97, step_size 2 |
| cosine    | base_lr * 0.5 * (1 + cos(pi * s / T))                                 |
| linear    | base_lr * (T - s) / T                                                 |
| constant  | base_lr                                                               |

An optional linear warm-up over W = warmup_iters steps (Appendix C: 5000) ramps the lr as
base_lr * s / W for s < W, so step 0 has lr 0. After it, as the authors' WarmupCosineSchedule and
WarmupLinearSchedule run them (recipe.md), cosine and linear start from their peak and run over
the REMAINING T - W steps:
    cosine  base_lr * 0.5 * (1 + cos(pi * (s - W) / (T - W)))
    linear  base_lr * (T - s) / (T - W)
(not the schedule over 0..T multiplied by the ramp, which is 11% lower at step 40,000 of Table
3's run). Constant, multistep and step are multiplied by the ramp; their epoch clock is not
shifted. Past T, cosine and linear hold their final value 0.
"""

import math
from bisect import bisect_right

SCHEDULES = ("multistep", "step", "cosine", "linear", "constant")
DEFAULT_GAMMA = {"multistep": 0.1, "step": 0.97}


def lr_factor(schedule, iteration, *, iters_per_epoch=None, total_iters=None,
              milestones=(90, 135), gamma=None, step_size=2, warmup_iters=0):
    """lr_at(...) / base_lr: the multiplier LambdaLR applies to the optimizer's initial lr."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of: {', '.join(SCHEDULES)}")
    if iteration < 0:
        raise ValueError(f"iteration must be >= 0, got {iteration}")
    if gamma is None:
        gamma = DEFAULT_GAMMA.get(schedule)
    if schedule in ("multistep", "step"):
        if not iters_per_epoch or iters_per_epoch < 1:
            raise ValueError(f"the {schedule} schedule is stepped per epoch: it needs iters_per_epoch >= 1")
        epoch = iteration // iters_per_epoch
        if schedule == "multistep":
            factor = gamma ** bisect_right(sorted(milestones), epoch)
        else:
            factor = gamma ** (epoch // step_size)
    elif schedule in ("cosine", "linear"):
        if not total_iters or total_iters < 1:
            raise ValueError(f"the {schedule} schedule needs total_iters >= 1 (all iterations of the run)")
        if warmup_iters and iteration < warmup_iters:
            return iteration / warmup_iters
        # after a warm-up, from the peak over the remaining steps (the authors' form)
        w = min(warmup_iters or 0, total_iters - 1)
        s, span = min(iteration, total_iters) - w, total_iters - w
        if schedule == "cosine":
            factor = 0.5 * (1 + math.cos(math.pi * s / span))
        else:
            factor = (span - s) / span
    else:
        factor = 1.0
    if warmup_iters and iteration < warmup_iters:
        factor *= iteration / warmup_iters
    return factor


def lr_at(schedule, iteration, *, base_lr, iters_per_epoch=None, total_iters=None,
          milestones=(90, 135), gamma=None, step_size=2, warmup_iters=0):
    """The learning rate of optimizer step `iteration` (0-based) under `schedule`.

    gamma defaults to 0.1 for multistep and 0.97 for step; milestones and step_size are in epochs.
    """
    # written as base_lr * factor, the same float operation LambdaLR performs, so the scheduler's
    # lr equals lr_at exactly rather than to the last bit
    return base_lr * lr_factor(schedule, iteration, iters_per_epoch=iters_per_epoch,
                               total_iters=total_iters, milestones=milestones, gamma=gamma,
                               step_size=step_size, warmup_iters=warmup_iters)


def build_scheduler(optimizer, schedule, *, iters_per_epoch=None, total_iters=None,
                    milestones=(90, 135), gamma=None, step_size=2, warmup_iters=0):
    """A LambdaLR giving lr_at(schedule, s, base_lr=<the optimizer's lr>, ...) for optimizer step s.

    Call scheduler.step() once after every optimizer.step(). Its state_dict holds last_epoch (the
    iteration count) and base_lrs but not the schedule itself (LambdaLR never saves functions):
    to resume, build the scheduler with the same arguments, then load the optimizer's and the
    scheduler's state_dicts.
    """
    from torch.optim.lr_scheduler import LambdaLR  # keeps this module importable without torch

    kwargs = dict(iters_per_epoch=iters_per_epoch, total_iters=total_iters, milestones=tuple(milestones),
                  gamma=gamma, step_size=step_size, warmup_iters=warmup_iters)
    lr_factor(schedule, 0, **kwargs)  # fail now, not at the first step, on a bad configuration

    def factor(iteration):
        return lr_factor(schedule, iteration, **kwargs)

    return LambdaLR(optimizer, factor)
