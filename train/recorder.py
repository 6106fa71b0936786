"""Recording any PyTorch training loop: SGD and its EMA networks, evaluated every epoch.

    rec = Recorder.create("runs/mine.h5", model, decays=[0.99, 0.999],
                          splits={"val": (x_val, y_val), "test": (x_test, y_test)},
                          optimizer=opt)                  # records epoch 0 (initial weights)
    for epoch in range(1, epochs + 1):
        for x, y in loader:
            loss = F.cross_entropy(logits := model(x), y)
            opt.zero_grad(); loss.backward(); opt.step()
            rec.step(loss, logits, y)                     # EMA update + running train metrics
        rec.end_epoch(epoch)                              # evaluate all networks, write, commit
    rec.finish()

At each epoch end, the SGD network and every EMA network are evaluated in eval mode on every
split; per-sample correctness, predictions and losses, the metrics row and (every
`checkpoint_every` epochs) the weights go to the run file in one commit. The EMA never feeds
back into training, so one run tracks any number of decays.

Resume: give `state_fn` (returns a dict of what else your loop needs: optimizer, scheduler,
RNG states, ...). Its result is saved with every epoch, and `Recorder.resume` gives it back
after restoring the model and the EMA networks as they were at the last complete epoch.

Per-sample training dynamics (`presented=`): give the training set's labels (in its order) and
pass each batch's positions in it to `step(loss, logits, labels, indices=idx)`. From the logits of
the training forward pass itself (train mode, augmented, before the update: no extra forward
pass) each example presented gets its correctness, true-class softmax probability and margin,
scattered into per-epoch tensors on the device (no host sync per batch) and written once per
epoch, with that epoch's commit, as split `train-presented` (network sgd only, epochs 1..E; an
example not presented in an epoch: correct 0, prob and margin NaN; presented twice in an epoch:
the later presentation). For every network on clean inputs, `record_every={"train": K}` records
a final split at epochs 0, K, 2K, ... as well as at the end, with prob and margin.

Under torchrun give `dist=Dist.from_env()` (train/distributed.py, its process group started) on
every rank: each rank evaluates its shard of every split and the results are gathered, the
running train metrics are summed over ranks, and only rank 0 opens and writes the run file.
Every rank must make the same calls in the same order (they are collective).
"""

from __future__ import annotations

import hashlib
import io
import math
import time
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from dyn.errors import Diverged, RunFileError
from dyn.layout import Layout, Network, Split
from dyn.writer import Eval, RunWriter

from .ema import EMA, flatten_state
from .evaluate import evaluate, per_sample
from .ranks import shard

TRAIN_METRICS = ["iteration", "lr", "train_loss", "train_acc", "seconds"]
PRESENTED = "train-presented"  # the training set as SGD saw it, from the training forward pass
PRESENTED_SOURCE = "training forward pass"


class Presented:
    """One epoch's train-presented records of `n` examples, accumulated on the device.

    add() scatters a batch (index_put_ with tensor indices: no host synchronisation); take()
    brings the epoch to the host and starts the next. With `dist`, take() is a collective: every
    rank must call it, and each gets the records of all ranks' examples.
    """

    def __init__(self, n: int):
        self.n = int(n)
        self._pres = None  # (seen, correct, [prob; margin]) on the device, made at the epoch's first batch

    def add(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        if self._pres is None:
            n, dev = self.n, logits.device
            self._pres = (torch.zeros(n, dtype=torch.bool, device=dev), torch.zeros(n, dtype=torch.bool, device=dev),
                          torch.full((2, n), math.nan, dtype=torch.float16, device=dev))
        seen, correct, values = self._pres
        c, _, _, prob, margin = per_sample(logits.detach().float(), labels)
        idx = indices.to(seen.device)
        seen[idx] = True
        correct[idx] = c
        values[:, idx] = torch.stack([prob, margin]).to(torch.float16)

    def take(self, dist=None) -> Eval:
        """The epoch's records on the host (over all ranks of `dist`); starts the next epoch."""
        n = self.n
        if dist is not None:
            # each rank holds its own examples: sum (seen, correct, prob, margin), zero where
            # unseen; an example one rank saw keeps its float16 values exactly
            if self._pres is None:
                rows = torch.zeros(4, n, dtype=torch.float64)
            else:
                seen, correct, values = self._pres
                vals = torch.where(seen, values.double(), 0.0)
                rows = torch.cat([seen.double()[None], correct.double()[None], vals])
            total = dist.sum(rows).cpu()
            count = total[0]
            prob = (total[2] / count).to(torch.float16).numpy()  # 0/0: NaN where no rank saw it
            margin = (total[3] / count).to(torch.float16).numpy()
            correct = ((total[1] == count) & (count > 0)).numpy()
        elif self._pres is None:
            correct, prob, margin = np.zeros(n, bool), np.full(n, np.nan, np.float16), np.full(n, np.nan, np.float16)
        else:
            _, c, values = self._pres
            correct, values = c.cpu().numpy(), values.cpu().numpy()
            prob, margin = values[0], values[1]
        self._pres = None
        return Eval(correct=correct, prob=prob, margin=margin)


class Recorder:
    def __init__(self, writer: RunWriter | None, model: torch.nn.Module, ema: EMA, splits, final_splits, *,
                 transform, optimizer, state_fn, checkpoint_every, eval_batch_size, autocast=None, dist=None,
                 presented: int | None = None, record_every: Mapping[str, int] | None = None):
        self.writer, self.model, self.ema = writer, model, ema  # writer None on ranks other than 0
        self.dist = dist
        self.path = writer.path if writer is not None else None  # set by create/resume on other ranks
        self._last_epoch = writer.last_epoch("metrics") if writer is not None else None
        self.splits, self.final_splits = dict(splits), dict(final_splits)
        self._final_recorded: dict[str, int | None] = {}  # final split -> the epoch it was last recorded at
        self.transform, self.optimizer, self.state_fn = transform, optimizer, state_fn
        self.checkpoint_every, self.eval_batch_size = checkpoint_every, eval_batch_size
        self.autocast = autocast
        self.evaluate_fn = evaluate  # (model, states, x, y, batch_size=, transform=, autocast=) -> Eval per net
        self.networks = ["sgd", *ema.names]
        self.iteration = 0
        # the lr the epoch's last optimizer step used, taken as that step runs: by the time
        # step() is called a scheduler has usually moved the optimizer's lr on to the NEXT step's
        self._step_lr = math.nan
        # A wrapper (accelerate's AcceleratedOptimizer) subclasses Optimizer without its hooks'
        # state and steps the optimizer it wraps: hook that one.
        inner = optimizer
        while inner is not None and not hasattr(inner, "_optimizer_step_pre_hooks") and hasattr(inner, "optimizer"):
            inner = inner.optimizer
        self._lr_hook = (inner.register_step_pre_hook(self._take_lr)
                         if inner is not None and hasattr(inner, "_optimizer_step_pre_hooks") else None)
        self.eval_seconds = 0.0  # time spent evaluating and writing at the last epoch end
        # copy the model's and EMA's tensors before saving them for a resume: where they are views
        # into a larger storage (a batched sweep's stacks of all its runs) torch.save writes it whole
        self.copy_resume_tensors = False
        self.presented = presented  # size of the training set recorded as train-presented, or None
        self._pres = Presented(presented) if presented is not None else None
        self.record_every = {s: int(k) for s, k in dict(record_every or {}).items() if s in self.final_splits}
        self._reset_running()
        self._t0 = time.perf_counter()

    # ------------------------------------------------------------- opening
    @classmethod
    def create(cls, path, model, decays, splits: Mapping[str, tuple], *, final_splits: Mapping[str, tuple] = (),
               transform: Callable | None = None, images: Mapping[str, np.ndarray] | None = None,
               indices: Mapping[str, np.ndarray] | None = None, num_classes: int | None = None,
               config: Mapping | None = None, metrics: tuple[str, ...] = (), optimizer=None,
               state_fn: Callable[[], dict] | None = None, checkpoint_every: int = 1,
               eval_batch_size: int = 1000, overwrite: bool = False, record_initial: bool = True,
               ema_warmup: bool = False, autocast=None, dist=None,
               augmentation: Mapping[str, str] | None = None, presented=None,
               record_every: Mapping[str, int] | None = None) -> "Recorder":
        """Create the run file and, unless `record_initial` is False, record epoch 0.

        splits / final_splits: name -> (inputs, labels) tensors on the model's device; inputs go
        through `transform` per batch. final_splits (e.g. the un-augmented training set) are
        evaluated once, by `finish()`. images: name -> uint8 (N, H, W, C) to store for figures.
        augmentation: name -> how that split's inputs were transformed ("none" for clean
        images), stored as the split's `augmentation` attribute.
        presented: the training set's labels, in its order: record split `train-presented`
        from the training forward pass (module docstring); its index and augmentation are
        `indices` and `augmentation` under that name.
        record_every: final split -> K: also recorded at epochs 0, K, 2K, ..., with the true
        class's probability and margin.
        """
        record_every = {s: int(k) for s, k in dict(record_every or {}).items()}
        for s, k in record_every.items():
            if s not in dict(final_splits) or k < 1:
                raise ValueError(f"record_every: {s!r} must be a final split and {k} >= 1")
        ema = EMA(model, decays, warmup=ema_warmup)
        nets = [Network.sgd()] + [Network.ema(d, n) for d, n in zip(ema.decays, ema.names)]
        images, indices, augmentation = dict(images or {}), dict(indices or {}), dict(augmentation or {})
        all_splits = {**dict(splits), **dict(final_splits)}
        layout_splits = {}
        for name, (_, y) in all_splits.items():
            layout_splits[name] = Split(labels=y.cpu().numpy(), index=indices.get(name),
                                        images=images.get(name), num_classes=num_classes,
                                        augmentation=augmentation.get(name),
                                        prob=name in record_every, margin=name in record_every)
        labels = None
        if presented is not None:
            labels = presented.cpu().numpy() if isinstance(presented, torch.Tensor) else np.asarray(presented)
            layout_splits[PRESENTED] = Split(
                labels=labels, index=indices.get(PRESENTED), num_classes=num_classes,
                augmentation=augmentation.get(PRESENTED), source=PRESENTED_SOURCE, networks=["sgd"],
                predicted=False, loss=False, prob=True, margin=True)
        cols = TRAIN_METRICS + [f"{n}/{s}/{k}" for n in [x.name for x in nets] for s in splits
                                for k in ("loss", "acc")] + [m for m in metrics if m not in TRAIN_METRICS]
        layout = Layout(networks=nets, splits=layout_splits, params=ema.table, metrics=cols, resume=True)
        writer = RunWriter.create(path, layout, config, overwrite=overwrite) if _writes(dist) else None
        rec = cls(writer, model, ema, splits, final_splits, transform=transform, optimizer=optimizer,
                  state_fn=state_fn, checkpoint_every=checkpoint_every, eval_batch_size=eval_batch_size,
                  autocast=autocast, dist=dist, presented=None if labels is None else len(labels),
                  record_every=record_every)
        rec.path = Path(path)
        if record_initial:
            try:
                rec.end_epoch(0)
            except BaseException:
                rec.close()
                raise
        return rec

    @classmethod
    def resume(cls, path, model, decays, splits, *, final_splits=(), transform=None, optimizer=None,
               state_fn=None, checkpoint_every: int = 1, eval_batch_size: int = 1000, ema_warmup=False,
               autocast=None, dist=None, presented=None, record_every=None) -> tuple["Recorder", int, dict]:
        """Reopen a run: restores `model` and the EMA networks as at the last complete epoch.

        Returns (recorder, last complete epoch, the dict `state_fn` returned then). Final splits
        that the file lacks (a run begun by an older dyn, e.g. without `train-augmented`) are
        not recorded: the file's layout is fixed when it is created; so is `train-presented`
        (recorded if the file has it and `presented` is given: anything, e.g. True).
        """
        writer = None
        if not _writes(dist):  # the other ranks read the state before rank 0 opens (repairs) the file
            from dyn import open_run

            with open_run(path) as run:
                saved, networks, have = run.resume_state(), run.networks, list(run.splits)
                n_presented = run.split_size(PRESENTED) if PRESENTED in have else None
                recorded = {s: (int(run.epochs(s)[-1]) if s in run.splits and len(run.epochs(s)) else None)
                            for s in dict(final_splits)}
            dist.barrier()
        else:
            if dist is not None:
                dist.barrier()
            writer = RunWriter.resume(path)
            saved, networks, have = writer.resume_state(), writer.networks, list(writer.splits)
            n_presented = int(writer.f[f"splits/{PRESENTED}"].attrs["size"]) if PRESENTED in have else None
            recorded = {s: writer.last_epoch(f"split/{s}") if s in writer.splits else None for s in dict(final_splits)}
        try:
            if saved is None:
                raise RunFileError(f"{path}: holds no resume state (was it written by a Recorder?)")
            epoch, blob = saved
            if writer is not None and writer.last_epoch("metrics") != epoch:
                raise RunFileError(f"{path}: resume state is for epoch {epoch}, records end at "
                                   f"{writer.last_epoch('metrics')}")
            state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
            ema = EMA(model, decays, warmup=ema_warmup)
            expected = ["sgd", *ema.names]
            if networks != expected:
                raise RunFileError(f"{path}: networks {networks}, this run would record {expected}")
            model.load_state_dict(state["model"])
            ema.load_state_dict(state["ema"])
        except BaseException:
            if writer is not None:
                writer.close()
            raise
        final_splits = {s: v for s, v in dict(final_splits).items() if s in have}
        rec = cls(writer, model, ema, splits, final_splits, transform=transform, optimizer=optimizer,
                  state_fn=state_fn, checkpoint_every=checkpoint_every, eval_batch_size=eval_batch_size,
                  autocast=autocast, dist=dist, presented=n_presented if presented is not None else None,
                  record_every=record_every)
        rec.iteration = int(state["iteration"])
        rec.path, rec._last_epoch = Path(path), epoch
        rec._final_recorded = recorded
        return rec, epoch, state.get("user") or {}

    # ------------------------------------------------------------ training
    def _take_lr(self, optimizer, args, kwargs):
        self._step_lr = float(optimizer.param_groups[0]["lr"])

    def _reset_running(self):
        self._loss_sum = self._correct = None
        self._seen = 0

    @torch.no_grad()
    def step(self, loss: torch.Tensor | None = None, logits: torch.Tensor | None = None,
             labels: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> None:
        """Call after every optimizer step: updates every EMA network; accumulates the running
        train loss/accuracy on the device (no synchronisation), and with `indices` (the batch's
        positions in the training set) the batch's train-presented records. The epoch's `lr` metric is the lr
        that its last optimizer.step() used, taken by a step pre-hook on the optimizer, so it
        does not matter whether scheduler.step() runs before this call or after."""
        self.ema.update()
        self.iteration += 1
        self.observe(loss, logits, labels, indices)

    @torch.no_grad()
    def observe(self, loss: torch.Tensor | None = None, logits: torch.Tensor | None = None,
                labels: torch.Tensor | None = None, indices: torch.Tensor | None = None) -> None:
        """Add one batch to the running train loss/accuracy without an EMA update (the batches of
        a gradient accumulation that end in no optimizer step)."""
        if indices is not None and self.presented is not None and logits is not None and labels is not None:
            self._present(logits, labels, indices)
        if loss is not None:
            n = len(labels) if labels is not None else 1
            part = loss.detach().float() * n
            self._loss_sum = part if self._loss_sum is None else self._loss_sum + part
            self._seen += n
            if logits is not None and labels is not None:
                c = (logits.detach().argmax(1) == labels).sum()
                self._correct = c if self._correct is None else self._correct + c

    def _present(self, logits: torch.Tensor, labels: torch.Tensor, indices: torch.Tensor) -> None:
        self._pres.add(logits, labels, indices)

    def _take_presented(self) -> Eval:
        return self._pres.take(self.dist)

    def states(self) -> dict:
        """Every network's state for evaluation: None (the module itself) for SGD, EMA views."""
        return {"sgd": None, **{n: self.ema.state_dict_for(k) for k, n in enumerate(self.ema.names)}}

    def end_epoch(self, epoch: int, metrics: Mapping[str, float] | None = None,
                  weights: bool | None = None, presented: Eval | None = None) -> dict:
        """Evaluate every network on every split and commit the epoch. Returns its metrics.

        Raises Diverged (and marks the run diverged at `epoch`) if the running train loss is not
        finite. `weights`: record weights now (default: every `checkpoint_every` epochs).
        `presented`: the epoch's train-presented records, taken by a caller that accumulates
        them itself (`Presented.take`; the callbacks do, on every rank); default: this
        recorder's own, from `step(..., indices=)`.
        """
        t_eval = time.perf_counter()
        row = {"iteration": self.iteration}
        if self.optimizer is not None:
            # NaN for an epoch without steps (epoch 0: the initial weights)
            row["lr"] = self._step_lr
            self._step_lr = math.nan
        loss_sum, correct, seen = self._running()
        if seen:
            row["train_loss"] = loss_sum / seen
            if correct is not None:
                row["train_acc"] = correct / seen
            if not math.isfinite(row["train_loss"]):
                if self.writer is not None:
                    self.writer.finish("diverged", diverged_epoch=epoch)
                raise Diverged(f"{self.path}: the training loss became {row['train_loss']} in "
                               f"epoch {epoch}; the run is marked diverged and keeps epochs 0..{epoch - 1}")
        due = {s: v for s, v in self.final_splits.items()
               if s in self.record_every and epoch % self.record_every[s] == 0 and self._final_recorded.get(s) != epoch}
        evals = self._evaluate(self.splits)
        extra = self._evaluate(due) if due else {}
        if presented is None and self.presented is not None and epoch > 0:
            presented = self._take_presented()
        row["seconds"] = time.perf_counter() - self._t0  # training and evaluation; not the write
        for s, per_net in evals.items():
            for n, ev in per_net.items():
                row[f"{n}/{s}/acc"], row[f"{n}/{s}/loss"] = ev.accuracy, ev.mean_loss
        row.update(metrics or {})
        if weights is None:
            weights = epoch % self.checkpoint_every == 0
        if self.writer is not None:
            records = {**evals, **extra}
            if presented is not None:
                records[PRESENTED] = {"sgd": presented}
            self.writer.append(epoch, metrics=row, evals=records, weights=self._weights() if weights else None,
                               resume=self._resume_blob())
        for s in extra:
            self._final_recorded[s] = epoch
        self._last_epoch = epoch
        self._reset_running()
        self.eval_seconds = time.perf_counter() - t_eval
        self._t0 = time.perf_counter()
        return row

    def _running(self) -> tuple[float, float | None, int]:
        """(loss sum, correct count or None, samples) of the epoch so far, over all ranks."""
        loss_sum = float(self._loss_sum) if self._loss_sum is not None else 0.0
        correct = float(self._correct) if self._correct is not None else None
        if self.dist is None:
            return loss_sum, correct, self._seen
        total = self.dist.sum(torch.tensor([loss_sum, correct or 0.0, self._seen], dtype=torch.float64))
        loss_sum, correct_sum, seen = total.tolist()
        return loss_sum, (correct_sum if correct is not None else None), int(seen)

    def _evaluate(self, splits) -> dict:
        states = self.states()
        out = {}
        for s, (x, y) in splits.items():
            if self.dist is None:
                out[s] = self.evaluate_fn(self.model, states, x, y, batch_size=self.eval_batch_size,
                                  transform=self.transform, autocast=self.autocast)
            else:  # this rank's contiguous shard, then everyone's results in sample order
                part = shard(len(y), self.dist.rank, self.dist.world)
                mine = self.evaluate_fn(self.model, states, x[part], y[part], batch_size=self.eval_batch_size,
                                transform=self.transform, autocast=self.autocast)
                out[s] = self.dist.gather_evals(mine, len(y))
        return out

    def weights_digest(self) -> str:
        """sha256 of every network's flattened weights as the run file stores them (float32
        params, float64 buffers, network by network): equal digests, equal networks."""
        h = hashlib.sha256()
        for name, (p, b) in self._weights().items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(p).tobytes())
            h.update(np.ascontiguousarray(b).tobytes())
        return h.hexdigest()

    def _weights(self) -> dict:
        out = {}
        p, b = flatten_state(self.model, self.ema.table)
        out["sgd"] = (p.cpu().numpy(), b.cpu().numpy())
        for k, name in enumerate(self.ema.names):
            out[name] = (self.ema.flat_params(k).cpu().numpy(), self.ema.flat_buffers(k).cpu().numpy())
        return out

    def _resume_blob(self) -> bytes | None:
        nets = {"model": self.model.state_dict(), "ema": self.ema.state_dict()}
        if self.copy_resume_tensors:
            nets = _copied(nets)
        state = {**nets, "iteration": self.iteration, "user": self.state_fn() if self.state_fn else {}}
        buf = io.BytesIO()
        torch.save(state, buf)
        return buf.getvalue()

    # ------------------------------------------------------------- the end
    @property
    def last_epoch(self) -> int | None:
        return self._last_epoch

    def finish(self, weights: bool = True) -> None:
        """Evaluate the final splits (e.g. train), record the last weights if they are not yet,
        mark the run complete and close it."""
        epoch = self.last_epoch
        # a run killed after recording them at this epoch (but before it was marked complete)
        # has them already: recording them again would be refused as not after the last epoch
        todo = {s: v for s, v in self.final_splits.items() if self._final_recorded.get(s) != epoch}
        if todo and epoch is not None:
            evals = self._evaluate(todo)
            if self.writer is not None:
                self.writer.append(epoch, evals=evals)
        if self.writer is None:
            return
        if weights and epoch is not None and self.writer.last_epoch("weights") != epoch:
            # the last epoch's weights are worth having whatever checkpoint_every says; appended
            # as their own record (the metrics row of that epoch is already committed)
            self.writer.append(epoch, weights=self._weights())
        self.writer.finish("complete")
        self.close()

    def stop(self) -> None:
        """Stop cleanly (e.g. on Ctrl-C): the run stays resumable from its last complete epoch."""
        if self.writer is not None:
            self.writer.finish("stopped")
        self.close()

    def close(self) -> None:
        if self._lr_hook is not None:
            self._lr_hook.remove()
            self._lr_hook = None
        if self.writer is not None:
            self.writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _copied(obj):
    """`obj` with every tensor copied to its own storage."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().clone()
    if isinstance(obj, dict):
        return type(obj)((k, _copied(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_copied(v) for v in obj)
    return obj


def _writes(dist) -> bool:
    """Whether this process writes the run file: always, or rank 0 of a torchrun job."""
    return dist is None or dist.is_main


__all__ = ["Presented", "Recorder"]
