"""Record a Hugging Face `Trainer` (or `Seq2SeqTrainer`) run: SGD and its EMA networks, every epoch.

    from dyn.train.hf import RecordEMACallback

    cb = RecordEMACallback("runs/bert.h5", decays=[0.99, 0.999],
                           val=(features, labels))     # features: {"input_ids": (N, L), ...} tensors
    Trainer(model, args, train_dataset=..., callbacks=[cb]).train()

Per-sample training dynamics (split `train-presented`, as `dyn train --record-train`): a
TrainerCallback never sees the logits, so give the callback `train_labels=` (the training set's
labels in its order) and train with `RecordingTrainer` (or put `RecordingTrainerMixin` first in
your own Trainer subclass's bases), which hands each training batch's logits and positions over:

    cb = RecordEMACallback("runs/bert.h5", val=..., train_labels=train_labels)
    RecordingTrainer(model, args, train_dataset=..., callbacks=[cb]).train()

Needs `pip install dyn-ema[train,hf]`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call
from transformers import Trainer, TrainerCallback

from dyn.writer import Eval
from .record_ema import RecordingState, _splits

STATE_FILE = "dyn_record_ema.pt"  # beside the Trainer's own files in each checkpoint-N/ folder
INDEX = "dyn_index"  # the key RecordingTrainer adds to each training example: its position


def _logits(out):
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, Mapping):  # a plain dict
        return out["logits"]
    return out[0]


def _slice(x, i, j):
    if isinstance(x, Mapping):
        return {k: v[i:j] for k, v in x.items()}
    return x[i:j]


def make_evaluate(compute_correct: Callable | None):
    """An evaluate function for the Recorder: inputs a dict of tensors (the model's keyword
    arguments: input_ids, attention_mask, ...) or one tensor; the model returns logits or a
    ModelOutput with `.logits`."""

    @torch.no_grad()
    def evaluate(model, states, inputs, labels, *, batch_size=1000, transform=None, autocast=None):
        was_training = model.training
        model.eval()
        out = {name: ([], [], []) for name in states}
        try:
            for i in range(0, len(labels), batch_size):
                x, y = _slice(inputs, i, i + batch_size), labels[i:i + batch_size]
                if transform is not None:
                    x = transform(x)
                args, kwargs = ((), dict(x)) if isinstance(x, Mapping) else ((x,), {})
                with autocast if autocast is not None else _Nothing():
                    for name, state in states.items():
                        res = model(*args, **kwargs) if state is None else functional_call(model, dict(state), args, kwargs)
                        logits = _logits(res).float()
                        c, p, l = out[name]
                        if compute_correct is not None:
                            c.append(torch.as_tensor(compute_correct(logits, y)).reshape(len(y)).bool())
                        else:
                            c.append(logits.argmax(-1) == y)
                        if logits.dim() == 2 and not y.is_floating_point():
                            p.append(logits.argmax(-1))
                            l.append(F.cross_entropy(logits, y, reduction="none"))
        finally:
            model.train(was_training)
        result = {}
        for name, (c, p, l) in out.items():
            n = sum(len(t) for t in c)
            result[name] = Eval(correct=torch.cat(c).cpu().numpy() if c else np.zeros(0, bool),
                                predicted=torch.cat(p).cpu().numpy() if p else np.full(n, -1, np.int64),
                                loss=torch.cat(l).cpu().numpy() if l else np.full(n, np.nan, np.float32))
        return result

    return evaluate


class _Nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class RecordEMACallback(TrainerCallback):
    """dyn's recording for `transformers.Trainer`: EMA networks for every decay, per-sample records.

    After every optimizer step (`on_step_end`: once per `gradient_accumulation_steps` batches)
    every EMA network takes dyn's fused update over the model's whole state_dict (kept in the
    dtype of the model's weights: float32 under `bf16=True` mixed precision). At the start of
    training (epoch 0) and at each epoch end the SGD network and every EMA network are evaluated
    on each split given (`val=`, `test=`, `splits=`: (inputs, labels), inputs a dict of the
    model's keyword tensors or one tensor), in eval mode, and their per-sample correctness,
    predictions and losses, accuracies and weights are committed to `out`.

    Correctness: for classification heads, argmax of the logits against the labels (and the
    loss is the per-sample cross entropy). For other heads pass `compute_correct(logits, labels)
    -> bool (N,)`; predictions and losses are then recorded only where the logits are (N, C)
    and the labels integers (else -1 and NaN).

    Resuming: at each save the EMA state goes into the Trainer's checkpoint folder
    (`checkpoint-N/dyn_record_ema.pt`, and each EMA network as `ema-<decay>.safetensors`, which
    `dyn import checkpoints` reads beside model.safetensors); `trainer.train(resume_from_checkpoint=...)` continues
    the EMA from it and the run file from its committed epochs. Only the main process writes.

    Training dynamics: with `train_labels=` (integer labels of the whole training set, in its
    order) and a `RecordingTrainer`, every training batch's forward pass (train mode, before the
    optimizer step; with gradient accumulation, every batch) gives its examples' correctness,
    true-class probability and margin, kept on the device and committed with the epoch as split
    `train-presented` (network sgd; not presented in an epoch: correct 0, prob and margin NaN).
    The model's outputs must carry (batch, classes) `logits` (a ModelOutput or dict). A
    checkpoint resumed inside an epoch (save_strategy="steps") records that epoch from the
    batches after it only. Under DDP every rank's examples are summed onto the main process
    (untested here for the Trainer; Lightning's DDP is tested).
    """

    def __init__(self, out, decays=(0.99, 0.999), *, val=None, test=None, splits: Mapping | None = None,
                 compute_correct: Callable | None = None, transform: Callable | None = None,
                 checkpoint_every: int = 1, eval_batch_size: int = 256, overwrite: bool = False,
                 num_classes: int | None = None, config: Mapping | None = None, train_labels=None):
        self.recording = RecordingState(out, decays, _splits(splits, val, test), transform=transform,
                                        checkpoint_every=checkpoint_every, eval_batch_size=eval_batch_size,
                                        overwrite=overwrite, num_classes=num_classes, config=config,
                                        evaluate_fn=make_evaluate(compute_correct), train_labels=train_labels)

    @property
    def ema(self):
        return self.recording.ema

    def on_train_begin(self, args, state, control, model=None, optimizer=None, train_dataloader=None, **kwargs):
        labels = self.recording.train_labels
        if labels is not None:  # checked before the run file is touched
            data = getattr(train_dataloader, "dataset", None)
            if not isinstance(data, _WithIndex):
                raise ValueError("RecordEMACallback(train_labels=...): a Trainer's callbacks never see the training "
                                 "logits; train with dyn.train.hf.RecordingTrainer (or RecordingTrainerMixin first "
                                 "in your Trainer subclass's bases)")
            if len(data) != len(labels):
                raise ValueError(f"RecordEMACallback(train_labels=...): {len(labels)} labels, but the training set "
                                 f"has {len(data)} examples")
        if state.global_step > 0:  # resumed: the Trainer loaded checkpoint-<global_step>
            ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
            if not ckpt.is_file():
                raise FileNotFoundError(f"{ckpt}: no dyn EMA state in the checkpoint being resumed")
            self.recording.load_state(torch.load(ckpt, map_location="cpu", weights_only=True))
        autocast = None
        if args.bf16 or args.fp16:
            autocast = torch.autocast(next(model.parameters()).device.type,
                                      dtype=torch.bfloat16 if args.bf16 else torch.float16)
        import transformers

        extra = {"source": "dyn.train.hf.RecordEMACallback", "gradient_accumulation_steps":
                 args.gradient_accumulation_steps, "num_train_epochs": args.num_train_epochs,
                 "bf16": bool(args.bf16), "fp16": bool(args.fp16), "transformers": transformers.__version__,
                 "model": type(model).__name__}
        self.recording.start(model, writes=state.is_world_process_zero, optimizer=optimizer, autocast=autocast,
                             extra_config=extra)

    def on_step_end(self, args, state, control, **kwargs):
        self.recording.optimizer_step()

    def on_epoch_end(self, args, state, control, **kwargs):
        self.recording.end_epoch(int(round(state.epoch)))

    def on_save(self, args, state, control, **kwargs):
        if state.is_world_process_zero:
            folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if folder.is_dir():
                tmp = folder / (STATE_FILE + ".tmp")
                torch.save(self.recording.state(), tmp)
                tmp.replace(folder / STATE_FILE)
                self._save_emas(folder, state)

    def _save_emas(self, folder: Path, state):
        """Every EMA network as ema-<decay>.safetensors beside model.safetensors, so that
        `dyn import checkpoints` reads the Trainer's folders with their EMA weights."""
        from safetensors.torch import save_file

        ema = self.recording.ema
        for k, (d, name) in enumerate(zip(ema.decays, ema.names)):
            sd = {n: t.detach().cpu().contiguous().clone() for n, t in ema.state_dict_for(k).items()}
            meta = {"decay": repr(d), "global_step": str(state.global_step), "format": "pt"}
            tmp = folder / f"{name}.safetensors.tmp"
            save_file(sd, str(tmp), metadata=meta)
            tmp.replace(folder / f"{name}.safetensors")

    def on_train_end(self, args, state, control, **kwargs):
        self.recording.finish()


class _WithIndex(torch.utils.data.Dataset):
    """A map-style training set whose examples (dicts) also carry their position, as INDEX."""

    def __init__(self, data):
        self.data = data

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        item = self.data[i]
        if not isinstance(item, Mapping):
            raise ValueError(f"RecordingTrainer: training examples must be dicts of the model's keyword arguments "
                             f"to carry {INDEX!r}; example {i} is a {type(item).__name__}")
        return {**item, INDEX: i}


class RecordingTrainerMixin:
    """Hands each training batch's logits and positions to the RecordEMACallbacks given
    `train_labels=`. Goes first in the bases (`class T(RecordingTrainerMixin, Seq2SeqTrainer)`).

    How: the training set is wrapped so that each example (a dict) also holds INDEX
    ("dyn_index"), its position; INDEX is kept through `remove_unused_columns` (it joins the
    Trainer's `_signature_columns`, private API of transformers 4.x-5.x) and popped from the
    batch before the forward pass, in `compute_loss`, which asks the Trainer's own compute_loss
    for the outputs. Pitfalls: the training set must be map-style (not an IterableDataset) with
    dict examples; a custom `data_collator` must keep an extra integer key (default_data_collator
    does; one that drops it fails at the first batch); a `compute_loss` of your own below this
    mixin must honour `return_outputs=True`.
    """

    def _presenting(self) -> list:
        return [cb for cb in self.callback_handler.callbacks
                if isinstance(cb, RecordEMACallback) and cb.recording.train_labels is not None]

    def get_train_dataloader(self):
        data = self.train_dataset
        if data is None or not self._presenting():
            return super().get_train_dataloader()
        if isinstance(data, torch.utils.data.IterableDataset) or not hasattr(data, "__len__"):
            raise ValueError("RecordEMACallback(train_labels=...): the training set is iterable; its examples have no "
                             "positions to record train-presented by: give a map-style Dataset")
        self.train_dataset = _WithIndex(data)  # for the dataloader only: the Trainer keeps the user's
        try:
            return super().get_train_dataloader()
        finally:
            self.train_dataset = data

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if INDEX not in self._signature_columns:
            self._signature_columns.append(INDEX)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        index = inputs.pop(INDEX, None)
        callbacks = self._presenting() if model.training else []
        if not callbacks:
            return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                        num_items_in_batch=num_items_in_batch)
        if index is None:
            raise ValueError(f"RecordingTrainer: the training batch has no {INDEX!r} (each example's position): the "
                             f"data_collator dropped it; use one that keeps extra integer keys (default_data_collator)")
        loss, outputs = super().compute_loss(model, inputs, return_outputs=True, num_items_in_batch=num_items_in_batch)
        logits = outputs.get("logits") if isinstance(outputs, Mapping) else getattr(outputs, "logits", None)
        if logits is None:
            raise ValueError(f"RecordingTrainer: the model's outputs ({type(outputs).__name__}) have no 'logits'")
        for cb in callbacks:
            cb.recording.present(logits, index)
        return (loss, outputs) if return_outputs else loss


class RecordingTrainer(RecordingTrainerMixin, Trainer):
    """transformers.Trainer that records train-presented through RecordEMACallback(train_labels=)."""


__all__ = ["RecordEMACallback", "RecordingTrainer", "RecordingTrainerMixin", "make_evaluate"]
