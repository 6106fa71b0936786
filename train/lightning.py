"""Record a PyTorch Lightning fit: SGD and its EMA networks, every epoch, in one dyn run file.

    from dyn.train.lightning import RecordEMA

    trainer = pl.Trainer(max_epochs=20, callbacks=[
        RecordEMA("runs/mine.h5", decays=[0.99, 0.999], val=(x_val, y_val), test=(x_test, y_test))])
    trainer.fit(model, train_loader)
    # killed? trainer.fit(model, train_loader, ckpt_path="last") continues the run file exactly

Per-sample training dynamics (split `train-presented`, as `dyn train --record-train`): give
`train_labels=` (the training set's labels in its order) and let `training_step` return the
logits and the examples' positions in the training set beside the loss:

    def training_step(self, batch, i):
        x, y, index = batch                 # e.g. TensorDataset(x, y, torch.arange(len(y)))
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits, "index": index}

Needs `pip install dyn-ema[train,lightning]`.
"""

from __future__ import annotations

from typing import Callable, Mapping

import pytorch_lightning as pl
import torch

from .record_ema import RecordingState, _splits


class RecordEMA(pl.Callback):
    """Keeps one EMA network per decay beside the LightningModule and records them with it.

    After every OPTIMIZER step (with `accumulate_grad_batches=k`, one update per k batches) every
    EMA network takes dyn's fused update (train/ema.py) over the module's whole state_dict,
    BatchNorm running statistics included. The EMA lives in the dtype of the module's tensors:
    float32 under `precision="bf16-mixed"` or `"16-mixed"` (Lightning keeps the weights float32
    and autocasts the forward pass).

    At the start of the fit (epoch 0, the initial weights) and at each training epoch's end
    (dyn epoch = Lightning's 0-based `current_epoch` + 1), the SGD network and every EMA network
    are evaluated in eval mode on each split given (`val=`, `test=`, `splits={name: (inputs,
    labels)}`, tensors; inputs pass through `transform` per batch, under the fit's autocast),
    and per-sample correctness, predictions and losses, the accuracies, the running train loss
    and (every `checkpoint_every` epochs, and at the end) all networks' weights are committed to
    `out`, as `dyn train` does. Under DDP every rank updates its EMA; rank 0 alone evaluates and
    writes.

    Training dynamics: with `train_labels=` (integer labels of the whole training set, in the
    order `index` counts it), every training batch's forward pass (train mode, augmented, before
    the optimizer step; with `accumulate_grad_batches=k`, every batch, not every k-th) gives its
    examples' correctness, true-class softmax probability and margin, scattered into device
    tensors (no host synchronisation per batch) and committed with the epoch as split
    `train-presented` (network sgd; an example not presented in an epoch: correct 0, prob and
    margin NaN; presented twice: the later). `training_step` must return a dict with `"loss"`,
    `"logits"` ((batch, classes), detached or not) and `"index"` (the batch's positions in the
    training set); a batch whose output lacks them raises ValueError (one returning None, a
    skipped batch, is not presented). Under DDP each rank scatters its own examples and rank 0
    writes all of them (an example the DistributedSampler's padding gives two ranks: the mean).

    Resuming: the EMA networks and the recording's position are this callback's state in
    Lightning's own checkpoint (`state_dict`/`load_state_dict`), so `trainer.fit(...,
    ckpt_path=...)` continues them. The run file keeps every epoch it committed; epochs redone
    after the checkpoint are not written twice. With a checkpoint taken at an epoch end and data
    whose order depends only on the epoch, the resumed fit's file equals an uninterrupted one's
    on CPU (Lightning restores weights, optimizer, schedulers, loop counters and callback states;
    it does not restore global RNG states, nor a dataloader's position inside an epoch).

    Lightning's own `EMAWeightAveraging` (pytorch_lightning.callbacks) keeps ONE average, of
    the parameters only unless told otherwise, and swaps it in for validation and the saved
    checkpoint; it records nothing per sample. RecordEMA never changes the module: it keeps K
    decays side by side in one (K, P) buffer and writes what the paper's analyses read.
    """

    def __init__(self, out, decays=(0.99, 0.999), *, val=None, test=None, splits: Mapping | None = None,
                 transform: Callable | None = None, checkpoint_every: int = 1, eval_batch_size: int = 1000,
                 overwrite: bool = False, num_classes: int | None = None, config: Mapping | None = None,
                 train_labels=None):
        super().__init__()
        self.recording = RecordingState(out, decays, _splits(splits, val, test), transform=transform,
                                        checkpoint_every=checkpoint_every, eval_batch_size=eval_batch_size,
                                        overwrite=overwrite, num_classes=num_classes, config=config,
                                        train_labels=train_labels)
        self._global_step = 0

    @property
    def state_key(self) -> str:
        return f"RecordEMA[{self.recording.out}]"

    @property
    def ema(self):
        return self.recording.ema

    # ------------------------------------------------------------- hooks
    def on_train_start(self, trainer, pl_module):
        precision = str(trainer.precision)
        autocast = None
        if precision in ("bf16-mixed", "16-mixed"):
            dtype = torch.bfloat16 if precision.startswith("bf16") else torch.float16
            autocast = torch.autocast(pl_module.device.type, dtype=dtype)
        optimizer = trainer.optimizers[0] if trainer.optimizers else None
        extra = {"source": "dyn.train.lightning.RecordEMA", "precision": precision,
                 "accumulate_grad_batches": trainer.accumulate_grad_batches, "max_epochs": trainer.max_epochs,
                 "world_size": trainer.world_size, "pytorch_lightning": pl.__version__}
        self.recording.start(pl_module, writes=trainer.is_global_zero, optimizer=optimizer, autocast=autocast,
                             extra_config=extra)
        self._global_step = trainer.global_step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step > self._global_step:  # an optimizer step happened in this batch
            self._global_step = trainer.global_step
            self.recording.optimizer_step()
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else outputs
        if isinstance(loss, torch.Tensor):
            # Lightning hands back the loss divided by accumulate_grad_batches
            self.recording.observe(loss.detach() * trainer.accumulate_grad_batches)
        if self.recording.train_labels is not None and outputs is not None:
            missing = [k for k in ("logits", "index") if not isinstance(outputs, Mapping) or k not in outputs]
            if missing:
                raise ValueError(f"RecordEMA(train_labels=...): training_step must return {{'loss': loss, "
                                 f"'logits': logits, 'index': index}} (index: the batch's positions in the "
                                 f"training set); its output has no {' or '.join(map(repr, missing))}")
            self.recording.present(outputs["logits"], outputs["index"])

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        self.recording.end_epoch(trainer.current_epoch + 1)

    def on_train_end(self, trainer, pl_module):
        self.recording.finish()

    def on_exception(self, trainer, pl_module, exception):
        self.recording.close()

    # ----------------------------------------------------- checkpointing
    def state_dict(self):
        return {**self.recording.state(), "global_step": self._global_step}

    def load_state_dict(self, state_dict):
        self.recording.load_state(state_dict)


__all__ = ["RecordEMA"]
