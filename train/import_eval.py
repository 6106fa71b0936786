"""`dyn import checkpoints --evaluate`: run every imported network on a data split, so
checkpoints become a full run.

The training stage's part of `dyn import`: the core reads the files and finds this class
through the `dyn.evaluators` entry point (pyproject.toml), so it never imports the stage. The model comes from dyn.train.models.build_model
(`--model`) or from the user's own `package.module:function` (`--model-factory`, called with
no arguments, returning an nn.Module), the data from dyn.train.data.load_dataset, and the
per-sample evaluation (eval mode, no grad, batches, cross-entropy per sample, predicted =
argmax) from dyn.train.evaluate.evaluate, the same code `dyn train` records with. Everything
torch is imported when an Evaluator is built, never when this module is imported.

With a model the parameter table follows the model: its named_buffers are the buffers, and
every file must hold exactly the model's state_dict keys and shapes.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

import numpy as np

from dyn.errors import DynError, UsageError
from dyn.layout import Param, Split
from dyn.writer import Eval

SPLITS = ("val", "test", "train", "train-augmented")


def load_factory(spec: str):
    """The callable named by 'package.module:function' (the current folder is importable)."""
    module, _, attr = spec.partition(":")
    if not module or not attr:
        raise UsageError(f"--model-factory {spec!r}: expected package.module:function")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise UsageError(f"--model-factory {spec!r}: cannot import {e.name!r}") from None
    except Exception as e:  # the user's module raised while being imported: say what, not where
        raise UsageError(f"--model-factory {spec!r}: importing {module!r} raised {_first(e)}") from None
    try:
        fn = getattr(mod, attr)
    except AttributeError:
        raise UsageError(f"--model-factory {spec!r}: module {module!r} has no {attr!r}") from None
    if not callable(fn):
        raise UsageError(f"--model-factory {spec!r}: {attr!r} is not callable")
    return fn


def _first(e: BaseException) -> str:
    """`TypeName: first line of the message`, at most 300 characters."""
    text = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {text[:300]}" if text else type(e).__name__


class Evaluator:
    def __init__(self, *, model: str | None = None, model_factory: str | None = None, dataset: str = "cifar10",
                 data_dir: str = "data", splits=("val",), val_size: int | None = None, batch_size: int = 1000,
                 device: str = "cpu"):
        if (model is None) == (model_factory is None):
            raise UsageError("--evaluate needs exactly one of --model NAME or --model-factory package.module:function")
        for s in splits:
            if s not in SPLITS:
                raise UsageError(f"--split {s!r}: choose from {', '.join(SPLITS)}")
        import torch

        from .data import DataNotFound, load_dataset, normalize
        from .evaluate import evaluate
        from .models import build_model
        self.torch, self._evaluate = torch, evaluate
        self.device = torch.device(device)
        try:
            self.data = load_dataset(dataset, data_dir, val_size, self.device)
        except DataNotFound as e:
            raise DynError(f"--data-dir: {e}", exit_code=2) from None
        except ValueError as e:
            raise UsageError(f"--dataset/--val-size: {e}") from None
        channels = self.data.image_shape[0]
        if model is not None:
            try:
                self.model = build_model(model, self.data.num_classes, in_channels=channels)
            except ValueError as e:
                raise UsageError(f"--model: {e}") from None
        else:
            factory = load_factory(model_factory)
            try:
                self.model = factory()
            except Exception as e:  # the user's code: one line, not their traceback
                raise UsageError(f"--model-factory {model_factory!r}: calling it raised {_first(e)}") from None
            if not isinstance(self.model, torch.nn.Module):
                raise UsageError(f"--model-factory {model_factory!r} returned a {type(self.model).__name__}, "
                                 "not a torch.nn.Module")
        self.names = {"model": model or model_factory, "dataset": dataset, "splits": list(splits),
                      "data_dir": str(Path(data_dir).resolve()) if dataset == "cifar10" else None}
        mean = torch.tensor(self.data.mean, device=self.device)
        std = torch.tensor(self.data.std, device=self.device)
        self.transform = lambda x: normalize(x, mean, std)
        self.split_names, self.batch_size = list(splits), batch_size
        with self._guard("cannot be prepared"):
            self.model.to(self.device).eval()
            self.state = self.model.state_dict()
        self._probe()

    def _what(self) -> str:
        d = self.data
        c, *hw = d.image_shape
        return (f"model {self.names['model']} on {self.names['dataset']} ({c}-channel "
                f"{'x'.join(map(str, hw))} images, {d.num_classes} classes, {self.device})")

    def _guard(self, doing: str):
        """Any error from the user's model (shape, dtype, classes, device) as one line naming
        the model, the data set and the error, instead of a traceback into dyn."""
        import contextlib

        @contextlib.contextmanager
        def guard():
            try:
                yield
            except DynError:
                raise
            except Exception as e:
                raise DynError(f"--evaluate: {self._what()} {doing}: {_first(e)}", exit_code=2) from None
        return guard()

    def _probe(self) -> None:
        """Run the model on two samples of the first split before anything is read or written,
        and check it gives one score per class of the data set."""
        images, labels = self.data.split(self.split_names[0])
        with self._guard("cannot run on them"):
            with self.torch.no_grad():
                logits = self.model(self.transform(images[:2]))
        shape = tuple(getattr(logits, "shape", ()))
        if len(shape) != 2 or shape[1] != self.data.num_classes:
            raise DynError(f"--evaluate: {self._what()}: the model's output has shape {list(shape)}, expected "
                           f"[batch, {self.data.num_classes}] (one score per class)", exit_code=2)

    # ------------------------------------------------------------------- layout
    def splits(self) -> dict[str, Split]:
        out = {}
        for s in self.split_names:
            _, labels = self.data.split(s)
            out[s] = Split(labels=labels.cpu().numpy(), index=self.data.split_indices(s),
                           num_classes=self.data.num_classes)
        return out

    def buffer_names(self) -> set[str]:
        from .ema import param_table

        return {p.name for p in param_table(self.model) if p.kind == "buffer"}

    def check(self, params: list[Param], first) -> None:
        """Every file holds exactly the model's keys and shapes (checked on the first; the import
        has already checked that the others match it)."""
        have = {p.name: tuple(p.shape) for p in params}
        for k, t in self.state.items():
            if k not in have:
                raise DynError(f"{first}: lacks {k!r}, which the model ({self.names['model']}) has")
            if have[k] != tuple(t.shape):
                raise DynError(f"{first}: tensor {k!r} has shape {list(have[k])}, the model's is {list(t.shape)}")
        extra = sorted(set(have) - set(self.state))
        if extra:
            raise DynError(f"{first}: has {extra[0]!r}, which the model ({self.names['model']}) lacks")

    def config(self) -> dict:
        return {"model": self.names["model"], "dataset": self.names["dataset"],
                "evaluate": {**self.names, "batch_size": self.batch_size, "device": str(self.device)}}

    # ----------------------------------------------------------------- evaluate
    def evaluate(self, networks: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, tuple]]:
        """{net: {split: (Eval, accuracy, mean loss)}} of every network of one epoch."""
        torch = self.torch
        with self._guard("cannot take the imported weights"):
            states = {net: {k: torch.as_tensor(np.ascontiguousarray(a)).to(self.device, self.state[k].dtype)
                            for k, a in arrays.items()} for net, arrays in networks.items()}
        out = {net: {} for net in networks}
        for s in self.split_names:
            images, labels = self.data.split(s)
            with self._guard(f"failed on split {s}"):
                res = self._evaluate(self.model, states, images, labels, batch_size=self.batch_size,
                                     transform=self.transform)
            for net, r in res.items():
                # no prob and margin for imported and derived networks (NaN where a split keeps them)
                out[net][s] = (Eval(correct=r.correct, predicted=r.predicted, loss=r.loss), r.accuracy, r.mean_loss)
        return out
