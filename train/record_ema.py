"""What the Lightning and Hugging Face callbacks share: a Recorder driven by another loop's hooks.

Imports neither library: dyn.train.lightning and dyn.train.hf adapt their hooks to this.

The other loop owns training; this object owns the run file and the EMA networks:

    start(model, ...)        at the start of training (model on its device): create the run and
                             record epoch 0, or, after `load_state`, reopen it and continue
    optimizer_step()         after each optimizer step (not each batch): one fused EMA update
    observe(loss, ...)       each batch: running train loss/accuracy
    present(logits, index)   each batch, with `train_labels`: its train-presented records
    end_epoch(epoch)         evaluate SGD + every EMA network, commit the epoch
    state() / load_state()   what the loop's own checkpoint must keep to continue exactly
    finish() / close()

A resumed loop redoes the epochs after its checkpoint. An epoch the run file already holds
(committed after the checkpoint was taken, before the kill) is not written again: the file's
epochs stay whole and in order, and the EMA continues from the checkpoint's. A loop resumed from
a checkpoint taken inside an epoch records that epoch's train-presented row from the batches
after the checkpoint only (the others NaN).

Under DDP (a process group the other library started) every rank keeps the EMA and its own
examples' train-presented records; rank 0 alone evaluates and writes, and at each epoch end
every rank's records are summed onto it (train/recorder.py's Presented.take, a collective).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import torch

from dyn.errors import RunFileError

from .distributed import Dist
from .ema import EMA
from .recorder import PRESENTED, Presented, Recorder

STATE_VERSION = 1


def _splits(splits, val, test) -> dict:
    out = dict(splits or {})
    for name, value in (("val", val), ("test", test)):
        if value is not None:
            if name in out:
                raise ValueError(f"{name}= given twice (also in splits=)")
            out[name] = value
    if not out:
        raise ValueError("no evaluation data: give val=(inputs, labels), test=... or splits={name: (inputs, labels)}")
    return out


def _labels(train_labels) -> torch.Tensor | None:
    if train_labels is None:
        return None
    y = torch.as_tensor(train_labels)
    if y.dim() != 1 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise ValueError(f"train_labels: the training set's integer class labels, one per example in its order; "
                         f"got {y.dtype} of shape {tuple(y.shape)}")
    return y.long()


def _to(x, device):
    if isinstance(x, Mapping):
        return {k: _to(v, device) for k, v in x.items()}
    return x.to(device) if isinstance(x, torch.Tensor) else torch.as_tensor(x, device=device)


class RecordingState:
    """The run file and the EMA networks of a training loop that is not dyn's."""

    def __init__(self, out, decays, splits, *, transform: Callable | None = None, checkpoint_every: int = 1,
                 eval_batch_size: int = 1000, overwrite: bool = False, num_classes: int | None = None,
                 config: Mapping | None = None, evaluate_fn: Callable | None = None, train_labels=None):
        self.out = Path(out)
        self.train_labels = _labels(train_labels)  # the training set's labels: record train-presented
        self.presented: Presented | None = None  # every rank's own examples, from start()
        self._train_labels = None  # train_labels on the model's device, from start()
        self.dist: Dist | None = None  # the process group under DDP, for the epoch-end gather
        self.decays = [float(d) for d in decays]
        self.splits = splits
        self.transform, self.checkpoint_every, self.eval_batch_size = transform, checkpoint_every, eval_batch_size
        self.overwrite, self.num_classes, self.config = overwrite, num_classes, dict(config or {})
        self.evaluate_fn = evaluate_fn
        self.ema: EMA | None = None
        self.rec: Recorder | None = None  # rank 0 only
        self.iteration = 0  # optimizer steps seen (EMA updates)
        self.committed: int | None = None  # last epoch in the run file
        self._saved: dict | None = None  # a loaded state, applied at start()

    # -------------------------------------------------------------- start
    def start(self, model: torch.nn.Module, *, writes: bool, optimizer=None, autocast=None, extra_config=None):
        device = next(model.parameters()).device
        splits = {k: (_to(x, device), _to(y, device)) for k, (x, y) in self.splits.items()}
        if self.train_labels is not None:
            self._train_labels = self.train_labels.to(device)
            self.presented = Presented(len(self.train_labels))
            self.dist = Dist.joined(device)
        common = dict(transform=self.transform, optimizer=optimizer, checkpoint_every=self.checkpoint_every,
                      eval_batch_size=self.eval_batch_size, autocast=autocast)
        saved, self._saved = self._saved, None
        if saved is None:
            if not writes:
                self.ema = EMA(model, self.decays)
                return
            cfg = {"decays": self.decays, **self.config, **(extra_config or {})}
            self.rec = Recorder.create(self.out, model, self.decays, splits, num_classes=self.num_classes,
                                       config=cfg, overwrite=self.overwrite, record_initial=False,
                                       presented=self.train_labels, **common)
            self._hook(self.rec)
            self.ema = self.rec.ema
            try:
                self.rec.end_epoch(0)
            except BaseException:
                self.rec.close()
                raise
            self.committed = 0
            return
        self.ema = EMA(model, self.decays)
        self.ema.load_state_dict(saved["ema"])
        self.iteration = int(saved["iteration"])
        if not writes:
            return
        from dyn.writer import RunWriter

        writer = RunWriter.resume(self.out)
        try:
            last = writer.last_epoch("metrics")
            if writer.networks != ["sgd", *self.ema.names]:
                raise RunFileError(f"{self.out}: networks {writer.networks}, this callback records "
                                   f"{['sgd', *self.ema.names]}")
            if last is None or last < saved["committed"]:
                raise RunFileError(f"{self.out}: holds epochs up to {last}, but the checkpoint being resumed "
                                   f"was taken after epoch {saved['committed']} was recorded: not this run's file?")
            has = int(writer.f[f"splits/{PRESENTED}"].attrs["size"]) if PRESENTED in writer.splits else None
            want = None if self.train_labels is None else len(self.train_labels)
            if has != want:  # the layout is fixed when the file is created
                raise RunFileError(f"{self.out}: " + (
                    "was begun without train_labels= (it has no train-presented split)" if has is None else
                    f"records train-presented of {has} examples, but no train_labels= were given" if want is None
                    else f"records train-presented of {has} examples, train_labels= has {want}"))
        except BaseException:
            writer.close()
            raise
        self.rec = Recorder(writer, model, self.ema, splits, {}, state_fn=None, presented=want, **common)
        self._hook(self.rec)
        self.rec.iteration = self.iteration
        self.rec.path = self.out
        self.committed = last

    def _hook(self, rec):
        if self.evaluate_fn is not None:
            rec.evaluate_fn = self.evaluate_fn

    # ----------------------------------------------------------- training
    def optimizer_step(self):
        self.ema.update()
        self.iteration += 1
        if self.rec is not None:
            self.rec.iteration = self.iteration

    def observe(self, loss=None, logits=None, labels=None):
        if self.rec is not None:
            self.rec.observe(loss, logits, labels)

    def present(self, logits: torch.Tensor, index: torch.Tensor) -> None:
        """One training batch's forward pass: its (batch, classes) logits and the examples'
        positions in the training set (their labels are `train_labels[index]`). Checks shapes
        only: an index past the training set fails in the scatter (on CUDA, asynchronously)."""
        index = torch.as_tensor(index)
        if logits.dim() != 2 or index.shape != logits.shape[:1] or index.is_floating_point():
            raise ValueError(f"train-presented needs (batch, classes) logits and the batch's integer positions "
                             f"in the training set, one per row; got logits {tuple(logits.shape)}, "
                             f"index {index.dtype} {tuple(index.shape)}")
        index = index.to(self._train_labels.device, non_blocking=True)
        self.presented.add(logits, self._train_labels[index], index)

    def end_epoch(self, epoch: int, metrics: Mapping[str, float] | None = None):
        """Evaluate and commit `epoch`; None (and nothing written) if the file has it already.
        With train_labels a collective under DDP: every rank must call it."""
        presented = self.presented.take(self.dist) if self.presented is not None else None
        if self.rec is None:
            return None
        if self.committed is not None and epoch <= self.committed:
            self.rec._reset_running()  # redone after a resume: the file keeps what it committed
            return None
        row = self.rec.end_epoch(epoch, metrics=metrics, presented=presented)
        self.committed = epoch
        return row

    # ------------------------------------------------------------- resume
    def state(self) -> dict:
        """What a checkpoint of the other loop must hold to continue this recording exactly."""
        if self.ema is None:
            return {}
        return {"version": STATE_VERSION, "out": str(self.out), "decays": self.decays,
                "ema": {k: (v.clone() if isinstance(v, torch.Tensor) else
                            {kk: vv.clone() for kk, vv in v.items()} if isinstance(v, dict) else v)
                        for k, v in self.ema.state_dict().items()},
                "iteration": self.iteration, "committed": self.committed}

    def load_state(self, state: Mapping) -> None:
        if not state:
            return
        if [float(d) for d in state["decays"]] != self.decays:
            raise ValueError(f"the checkpoint's EMA decays are {state['decays']}, this callback's {self.decays}")
        self._saved = dict(state)

    # ---------------------------------------------------------------- end
    def finish(self):
        if self.rec is not None:
            self.rec.finish()
            self.rec = None

    def close(self):
        if self.rec is not None:
            self.rec.close()
            self.rec = None
