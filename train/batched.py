"""`dyn sweep --batched`: up to G runs of one model and data set trained in one process as one
stacked model.

Each run is a full `Trainer` (loop.py) of its own: its seed and initial weights, its TrainBatches
(data order and augmentation draws), its SGD optimizer (lr, momentum buffers, weight decay), its
lr scheduler, its Recorder and run file. Only the forward and backward passes are shared: the
runs' parameters and buffers are stacked along a leading run axis, and every module tensor of run
i is re-pointed (`.data`) at row i of its stack, so the optimizer's in-place step, the EMA and the
evaluation see the stacked storage. One step of the group is

    loss[i], logits[i] = vmap(functional_call(model, (params[i], buffers[i]), x[i]))
    grads = autograd.grad(loss.sum(), params)         # run i's gradient is row i
    per run: p.grad = grads[i]; optimizer.step(); scheduler.step()
    one fused EMA update over the stacked (N, K, P) storage of every run and decay

vmap of a convolution whose input and weight both carry the run axis is a grouped convolution
(groups = N); its BatchNorm updates each run's own running statistics in its own row. The
grouped kernels sum in another order than a single run's, so the group's results equal the
one-by-one runs' to float32 rounding (about 1e-6 relative per step), not bit for bit.

A run takes part in an epoch only if its file's last epoch is the one before (a group killed
between two of its runs' commits resumes with the late ones catching up alone); a run whose loss
becomes non-finite stops stepping at once and its file is closed as diverged at that epoch, while
the others go on. Evaluation stays per run (the Recorder's own, identical to a run alone).
"""

from __future__ import annotations

import math
import signal
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

from dyn.errors import Diverged, DynError, UsageError
from dyn.faults import test_point

from .config import TrainConfig
from .data import DataNotFound, load_dataset
from .loop import Stop, Trainer, resolve_device, set_deterministic


def group_key(cfg: TrainConfig) -> tuple:
    """Runs with equal keys can share one stacked model: same network, inputs and batch shape."""
    return (cfg.model, cfg.dataset, cfg.batch_size, cfg.data_dir, cfg.val_size, cfg.device, cfg.amp)


def check_batchable(cfg: TrainConfig) -> None:
    for flag, on in (("--compile", cfg.compile), ("--channels-last", cfg.channels_last), ("--sync-bn", cfg.sync_bn)):
        if on:
            raise UsageError(f"{flag}: not with --batched (the stacked model runs eagerly in the default layout)")


class BatchedGroup:
    """Train `runs` [(config, out, resume, overwrite)] together; `run()` returns {out: result}
    with result completed | diverged | stopped, or raises DynError."""

    def __init__(self, runs, *, echo=print, progress=False):
        self.echo = echo
        cfg0 = runs[0][0]
        keys = {group_key(c) for c, *_ in runs}
        if len(keys) != 1:
            raise ValueError("a batched group needs one model, data set, batch size and device")
        for c, *_ in runs:
            check_batchable(c)
        device = resolve_device(cfg0.device)
        set_deterministic(cfg0.deterministic, device)
        try:
            data = load_dataset(cfg0.dataset, cfg0.data_dir, cfg0.val_size, device)
        except DataNotFound as e:
            raise DynError(f"--data-dir: {e}", exit_code=2) from None
        self.trainers: list[Trainer] = []
        try:
            for cfg, out, resume, overwrite in runs:
                t = Trainer(cfg, out, resume=resume, overwrite=overwrite, progress=progress, data=data)
                t.rec.copy_resume_tensors = True  # they become views into the stacks (_stack)
                self.trainers.append(t)
        except BaseException:
            self.close()
            raise
        self.device = device
        self.open = [True] * len(self.trainers)  # file still being trained
        self.result = {t.out: "" for t in self.trainers}
        self.diverged_at: dict[Path, int] = {}
        self._stack()
        self._fuse_ema()

    # --------------------------------------------------------------- stacking
    def _stack(self):
        models = [t.model for t in self.trainers]
        self.param_names = [n for n, _ in models[0].named_parameters()]
        self.buffer_names = [n for n, _ in models[0].named_buffers()]
        self.params, self.buffers = {}, {}
        for store, names, getter in ((self.params, self.param_names, "named_parameters"),
                                     (self.buffers, self.buffer_names, "named_buffers")):
            per_run = [dict(getattr(m, getter)()) for m in models]
            for name in names:
                store[name] = torch.stack([d[name].detach() for d in per_run])
                for i, d in enumerate(per_run):
                    d[name].data = store[name][i]  # run i's tensor is now row i of the stack
        self.run_params = [[dict(m.named_parameters())[n] for n in self.param_names] for m in models]
        self.base = models[0]

    def _fuse_ema(self):
        """Point every run's EMA storage at rows of one (N, K, P) tensor per dtype group, so one
        copy and one lerp update all runs and decays (train/ema.py's update, with a run axis)."""
        from .ema import _shaped_like

        emas = [t.rec.ema for t in self.trainers]
        e0 = emas[0]
        self.fused = (all(e.decays == e0.decays and e.warmup == e0.warmup for e in emas)
                      and not any(g.permuted for g in e0._groups))
        if not self.fused:
            return
        self.fused_groups = []
        for gi, g0 in enumerate(e0._groups):
            groups = [e._groups[gi] for e in emas]
            big = torch.stack([g.ema for g in groups])  # (N, K, P) or (N, P)
            staging = torch.empty((len(emas), g0.size), dtype=g0.dtype, device=big.device) if g0.averaged else big
            for i, g in enumerate(groups):
                g.ema = big[i]
                if g.averaged:
                    g.flat_sgd = staging[i]
                mine = staging[i]
                g.views = [_shaped_like(mine[o:o + r.size], s) for o, r, s in zip(g.offsets, g.rows, g.sources)]
            stacks = [self.params[r.name] if r.name in self.params else self.buffers[r.name] for r in g0.rows]
            dst = [staging[:, o:o + r.size].unflatten(1, r.shape) if r.shape else staging[:, o]
                   for o, r in zip(g0.offsets, g0.rows)]
            self.fused_groups.append((g0, big, staging, dst, stacks))

    @torch.no_grad()
    def _ema_update(self):
        e0 = self.trainers[0].rec.ema
        for g0, big, staging, dst, stacks in self.fused_groups:
            torch._foreach_copy_(dst, stacks)
            if g0.averaged:
                big.lerp_(staging[:, None, :], e0.lerp_weight(g0))
        for t in self.trainers:
            t.rec.ema.step += 1

    # ---------------------------------------------------------------- training
    def _forward(self, params, buffers, x, y):
        logits = functional_call(self.base, (params, buffers), (x,))
        return F.cross_entropy(logits.float(), y), logits

    def _step(self, runs: list[int], xs, ys, autocast):
        """One SGD step of `runs` (indices into the group) on their batches; returns their losses."""
        everyone = len(runs) == len(self.trainers)
        if everyone:
            params = {n: v.detach().requires_grad_() for n, v in self.params.items()}
            buffers = self.buffers
        else:  # a subset: gathered copies, the buffers (BatchNorm statistics) written back after
            idx = torch.tensor(runs, device=self.device)
            params = {n: v[idx].requires_grad_() for n, v in self.params.items()}
            buffers = {n: v[idx] for n, v in self.buffers.items()}
        x, y = torch.stack(xs), torch.stack(ys)
        if autocast is not None:
            with autocast:
                loss, logits = vmap(self._forward)(params, buffers, x, y)
        else:
            loss, logits = vmap(self._forward)(params, buffers, x, y)
        grads = torch.autograd.grad(loss.sum(), list(params.values()))
        if not everyone:
            with torch.no_grad():
                for n, v in buffers.items():
                    self.buffers[n][idx] = v
        loss, logits = loss.detach(), logits.detach()
        for j, i in enumerate(runs):
            t = self.trainers[i]
            for p, g in zip(self.run_params[i], grads):
                p.grad = g[j]
            t.optimizer.step()
            t.scheduler.step()
            for p in self.run_params[i]:
                p.grad = None
        if everyone and self.fused and len({self.trainers[i].rec.ema.step for i in runs}) == 1:
            self._ema_update()
            for j, i in enumerate(runs):
                rec = self.trainers[i].rec
                rec.iteration += 1
                rec.observe(loss[j], logits[j], ys[j])
        else:
            for j, i in enumerate(runs):
                self.trainers[i].rec.step(loss[j], logits[j], ys[j])
        return loss

    def run(self) -> int:
        """Train every run of the group to its last epoch. Returns 0, or 128 + signal."""
        stop = {}

        def on_signal(signum, frame):
            stop["signum"] = signum

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        check_every = 1 if self.device.type == "cpu" else 32
        ts = self.trainers
        try:
            for i, t in enumerate(ts):  # resumed complete (or nothing left): finish now
                if t.start >= t.cfg.epochs:
                    self._finish(i)
            first = min((t.start for i, t in enumerate(ts) if self.open[i]), default=None)
            last = max((t.cfg.epochs for i, t in enumerate(ts) if self.open[i]), default=0)
            for epoch in range(first + 1 if first is not None else 1, last + 1):
                t0 = time.perf_counter()
                runs = [i for i, t in enumerate(ts) if self.open[i] and t.rec.last_epoch == epoch - 1
                        and epoch <= t.cfg.epochs]
                if not runs:
                    continue
                for i in runs:
                    ts[i].model.train()
                iters = {i: ts[i].batches.epoch() for i in runs}
                stepping = list(runs)
                for step in range(1, ts[runs[0]].iters_per_epoch + 1):
                    batches = [next(iters[i]) for i in stepping]
                    loss = self._step(stepping, [b[0] for b in batches], [b[1] for b in batches],
                                      ts[stepping[0]].autocast)
                    if step % check_every == 0:
                        bad = [i for i, v in zip(stepping, loss.tolist()) if not math.isfinite(v)]
                        stepping = [i for i in stepping if i not in bad]  # the recorder marks them diverged
                    if stop:
                        raise Stop(stop["signum"])
                    if not stepping:
                        break
                for i in runs:
                    t = ts[i]
                    try:
                        t.rec.end_epoch(epoch, weights=True if epoch == t.cfg.epochs else None)
                    except Diverged as e:
                        t.rec.close()
                        self.open[i] = False
                        self.result[t.out] = "diverged"
                        self.diverged_at[t.out] = epoch
                        self.echo(f"dyn sweep: {t.out.name}: {e}")
                        continue
                    test_point(f"batched: epoch {epoch} run {i} committed")
                    if epoch == t.cfg.epochs:
                        self._finish(i)
                self.echo(f"dyn sweep: batched group of {len(ts)}: epoch {epoch} ({len(runs)} runs, "
                          f"{time.perf_counter() - t0:.1f} s)")
                test_point(f"batched: epoch {epoch} committed")
                if stop:
                    raise Stop(stop["signum"])
            return 0
        except Stop as s:
            for i, t in enumerate(ts):
                if self.open[i]:
                    t.rec.stop()
                    self.open[i] = False
                    self.result[t.out] = "stopped"
            self.echo(f"dyn sweep: {signal.Signals(s.signum).name}: stopped; the group's runs stay resumable")
            return 128 + s.signum
        finally:
            self.close()
            for s, h in old.items():
                signal.signal(s, h)

    def _finish(self, i):
        t = self.trainers[i]
        t.rec.finish()
        self.open[i] = False
        self.result[t.out] = "completed"

    def close(self):
        for i, t in enumerate(getattr(self, "trainers", [])):
            if getattr(self, "open", None) is None or self.open[i]:
                t.rec.close()


__all__ = ["BatchedGroup", "group_key", "check_batchable"]
