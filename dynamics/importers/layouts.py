"""Where a checkpoint keeps its SGD (live) and EMA weights: detection from key names alone.

A pure function of the loaded tree (nested dicts whose leaves are tensors or plain values)
and the file's name; nothing here reads tensor data. The layouts, tried in this order:

| layout          | SGD weights                         | EMA weights                                      |
|-----------------|-------------------------------------|--------------------------------------------------|
| lightning-ema   | `current_model_state`               | `state_dict` (Lightning's EMAWeightAveraging)    |
| timm            | `state_dict`                        | `state_dict_ema` (older timm: `model_ema`)        |
| torchvision     | `model`                             | `model_ema` (an AveragedModel: `module.`, `n_averaged`) |
| paper-averaged  | (its partner file)                  | `model` of a `*_averaged_model.pt` (`decay` kept)  |
| nemo-ema        | (its partner file)                  | `state_dict` of a `*-EMA.ckpt`                    |
| ema-pytorch     | `online_model.*` keys (if saved)     | `ema_model.*` keys, beside `step` and `initted`   |
| averaged-model  | -                                   | a bare AveragedModel state_dict                   |
| paper, lightning, timm, model | `model` / `state_dict`    | -                                                |
| state_dict      | the file itself (a plain state_dict) | -                                               |

An entry named like an EMA (`ema`, `average`, `swa` in its name) is taken as the EMA and a
single other state_dict as SGD when nothing above matches; anything still ambiguous is an
error asking for `--sgd-key` / `--ema-key`. Selected state_dicts lose DDP's `module.` and
torch.compile's `_orig_mod.` prefixes and AveragedModel's `n_averaged` counter.
"""

from __future__ import annotations

import re
from pathlib import Path
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .load import Tensor

WRAPPER_PREFIXES = ("module.", "_orig_mod.")
AVERAGED_COUNTER = "n_averaged"  # torch.optim.swa_utils.AveragedModel's update count
PARTNER_SUFFIXES = {"_averaged_model": "paper-averaged", "-EMA": "nemo-ema"}
_EMA_NAME = re.compile(r"ema|averag|swa", re.IGNORECASE)
_SGD_NAMES = ("model", "state_dict", "net", "network", "module", "weights", "params", "online_model")


class LayoutError(ValueError):
    """The file's layout cannot be told, or a named key is not there (caller adds the path)."""


@dataclass(frozen=True)
class Ref:
    """Where one network's weights sit: a path of dict keys from the top, and optionally a
    prefix selecting (and stripped from) the keys of the state_dict found there."""

    path: tuple[str, ...] = ()
    prefix: str = ""

    @classmethod
    def parse(cls, text: str) -> "Ref":
        """`a/b` is entry b of entry a; a last part ending in '.' is a key prefix
        (`ema_model.`, `ema/ema_model.`); '' or '/' is the top level."""
        parts = [p for p in text.strip().split("/") if p]
        prefix = parts.pop() if parts and parts[-1].endswith(".") else ""
        return cls(tuple(parts), prefix)

    def __str__(self) -> str:
        s = "/".join(self.path)
        if self.prefix:
            s = f"{s}/{self.prefix}" if s else self.prefix
        return s or "/"


@dataclass
class Detection:
    layout: str
    sgd: Ref | None
    ema: Ref | None
    epoch: int | None = None  # completed epochs, in dyn's convention (epoch 0 = initial weights)
    epoch_from: str = ""
    step: int | None = None
    step_from: str = ""
    decay: float | None = None
    decay_from: str = ""
    notes: list[str] = field(default_factory=list)


def is_tensor(x) -> bool:
    return isinstance(x, (Tensor, np.ndarray))


def is_state_dict(node) -> bool:
    """A dict of tensors (torch's `_extra_state` entries aside), with at least one."""
    if not isinstance(node, dict) or not node:
        return False
    vals = [v for k, v in node.items() if not k.endswith("_extra_state")]
    return bool(vals) and all(is_tensor(v) for v in vals)


def partner_kind(name: str) -> tuple[str, str] | None:
    """(stem of the partner file, layout) for `x_averaged_model` / `x-EMA` file stems."""
    for suffix, layout in PARTNER_SUFFIXES.items():
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], layout
    return None


# ------------------------------------------------------------------------------ detect
def detect(tree: dict, name: str = "", sgd_key: str | None = None, ema_key: str | None = None) -> Detection:
    """Where SGD and EMA weights are in `tree` (the file's stem is `name`); LayoutError if unsure."""
    if not isinstance(tree, dict):
        raise LayoutError("holds no dict of tensors")
    if sgd_key is not None or ema_key is not None:
        det = Detection("given", _given(tree, sgd_key), _given(tree, ema_key))
        if det.sgd is None and det.ema is None:
            raise LayoutError("--sgd-key and --ema-key select nothing")
    else:
        det = _guess(tree, name)
    _metadata(tree, det)
    return det


def _given(tree, key: str | None) -> Ref | None:
    if key is None:
        return None
    ref = Ref.parse(key)
    node = _node(tree, ref)
    if not isinstance(node, dict) or not _prefixed(node, ref.prefix):
        have = ", ".join(_state_dict_entries(tree)) or "none"
        raise LayoutError(f"key {str(ref)!r} holds no state_dict (state_dicts here: {have})")
    return ref


def _guess(tree: dict, name: str) -> Detection:
    keys = set(tree)
    sd = lambda k: k in tree and is_state_dict(tree[k])  # noqa: E731
    partner = partner_kind(name)

    if is_state_dict(tree):
        return _flat(tree, name)
    if sd("current_model_state") and sd("state_dict"):
        return Detection("lightning-ema", Ref(("current_model_state",)), Ref(("state_dict",)))
    if sd("state_dict") and sd("state_dict_ema"):
        return Detection("timm", Ref(("state_dict",)), Ref(("state_dict_ema",)))
    if sd("state_dict") and sd("model_ema"):
        return Detection("timm", Ref(("state_dict",)), Ref(("model_ema",)))
    if sd("model") and sd("model_ema"):
        return Detection("torchvision", Ref(("model",)), Ref(("model_ema",)))
    if partner and partner[1] == "paper-averaged" and sd("model"):
        return Detection("paper-averaged", None, Ref(("model",)))
    if partner and partner[1] == "nemo-ema" and sd("state_dict"):
        return Detection("nemo-ema", None, Ref(("state_dict",)))
    nested = [k for k in tree if isinstance(tree[k], dict) and _prefixed(tree[k], "ema_model.")]
    if len(nested) == 1:  # an ema-pytorch EMA saved beside the live model
        k = nested[0]
        if _prefixed(tree[k], "online_model."):
            sgd = Ref((k,), "online_model.")
        else:
            others = [o for o in _state_dict_entries(tree) if o != k]
            sgd = Ref((others[0],)) if len(others) == 1 else None
        return Detection("ema-pytorch", sgd, Ref((k,), "ema_model."))
    if sd("model") and "decay" in keys and "optimizer" not in keys:
        return Detection("paper-averaged", None, Ref(("model",)))
    if sd("model") and keys <= {"epoch", "optimizer", "model", "scheduler"}:
        return Detection("paper", Ref(("model",)), None)
    if sd("state_dict") and ("pytorch-lightning_version" in keys or "global_step" in keys):
        return Detection("lightning", Ref(("state_dict",)), None)
    if sd("state_dict") and ("arch" in keys or "version" in keys):
        return Detection("timm", Ref(("state_dict",)), None)

    entries = _state_dict_entries(tree)
    emas = [k for k in entries if _EMA_NAME.search(k)]
    sgds = [k for k in entries if k not in emas]
    if len(emas) <= 1 and len(sgds) <= 1 and entries:
        det = Detection("guessed", Ref((sgds[0],)) if sgds else None, Ref((emas[0],)) if emas else None)
        det.notes.append(f"guessed from entry names ({', '.join(entries)})")
        return det
    if len(emas) <= 1 and entries:
        named = [k for k in sgds if k in _SGD_NAMES]
        if len(named) == 1:
            det = Detection("guessed", Ref((named[0],)), Ref((emas[0],)) if emas else None)
            det.notes.append(f"guessed from entry names ({', '.join(entries)})")
            return det
    if not entries:
        raise LayoutError("holds no state_dict (no dict of tensors at its top level or one level down)")
    raise LayoutError(f"cannot tell which of its state_dicts ({', '.join(entries)}) hold the SGD and EMA "
                      "weights: name them with --sgd-key and --ema-key")


def _flat(tree: dict, name: str) -> Detection:
    """A file that is one dict of tensors."""
    if _prefixed(tree, "ema_model."):
        sgd = Ref((), "online_model.") if _prefixed(tree, "online_model.") else None
        return Detection("ema-pytorch", sgd, Ref((), "ema_model."))
    if AVERAGED_COUNTER in tree and all(k.startswith("module.") for k in tree if k != AVERAGED_COUNTER):
        return Detection("averaged-model", None, Ref())
    partner = partner_kind(name)
    if partner:
        return Detection(partner[1], None, Ref())
    return Detection("state_dict", Ref(), None)


def _state_dict_entries(tree: dict) -> list[str]:
    return [k for k, v in tree.items() if is_state_dict(v)]


def _prefixed(node: dict, prefix: str) -> bool:
    if not prefix:
        return is_state_dict(node)
    return any(k.startswith(prefix) and is_tensor(v) for k, v in node.items())


def _node(tree, ref: Ref):
    node = tree
    for part in ref.path:
        if not isinstance(node, dict) or part not in node:
            have = ", ".join(list(node)[:12]) if isinstance(node, dict) else type(node).__name__
            raise LayoutError(f"has no entry {'/'.join(ref.path)!r} (entries: {have})")
        node = node[part]
    return node


# ----------------------------------------------------------------------------- select
def select(tree: dict, ref: Ref) -> tuple[dict[str, Any], list[str]]:
    """({name: tensor}, notes) of the state_dict `ref` points at, in the file's order, with
    wrapper prefixes stripped and AveragedModel's counter dropped."""
    node = _node(tree, ref)
    if not isinstance(node, dict):
        raise LayoutError(f"entry {str(ref)!r} is a {type(node).__name__}, not a state_dict")
    sd = {k[len(ref.prefix):]: v for k, v in node.items() if k.startswith(ref.prefix) and is_tensor(v)}
    notes = []
    if AVERAGED_COUNTER in sd and all(k.startswith("module.") for k in sd if k != AVERAGED_COUNTER):
        sd.pop(AVERAGED_COUNTER)
        notes.append(f"dropped {AVERAGED_COUNTER}")
    while sd:
        p = next((p for p in WRAPPER_PREFIXES if all(k.startswith(p) for k in sd)), None)
        if p is None:
            break
        sd = {k[len(p):]: v for k, v in sd.items()}
        notes.append(f"stripped {p!r}")
    if not sd:
        raise LayoutError(f"entry {str(ref)!r} holds no tensors")
    return sd, notes


# --------------------------------------------------------------------------- metadata
def _metadata(tree: dict, det: Detection) -> None:
    """Epoch, step and decay the file records, in dyn's conventions (see EPOCH_RULES)."""
    epoch = _int(tree.get("epoch"))
    if epoch is not None:
        shift, why = _epoch_shift(det.layout, tree)
        det.epoch, det.epoch_from = epoch + shift, why
    for key in ("global_step", "step", "iteration"):
        step = _int(tree.get(key))
        if step is not None:
            det.step, det.step_from = step, key
            break
    if det.step is None and det.layout == "ema-pytorch" and det.ema is not None:
        node = _node(tree, Ref(det.ema.path))
        step = _int(node.get("step")) if isinstance(node, dict) else None
        if step is not None:
            det.step, det.step_from = step, f"{str(Ref(det.ema.path))}/step (EMA updates)".lstrip("/")
    decay = _float(tree.get("decay"))
    if decay is not None:
        det.decay, det.decay_from = decay, "the file's 'decay'"
    elif det.layout == "timm" and isinstance(tree.get("args"), dict):
        args = tree["args"]
        if _float(args.get("model_ema_decay")) is not None and not args.get("model_ema_warmup"):
            det.decay, det.decay_from = _float(args["model_ema_decay"]), "timm args.model_ema_decay"


# The 'epoch' a file stores -> completed epochs (dyn's epoch: 0 = the initial weights).
EPOCH_RULES = {
    "paper": (0, "'epoch' (the paper's code stores last epoch + 1)"),
    "paper-averaged": (0, "'epoch' (the paper's code stores last epoch + 1)"),
    "torchvision": (1, "'epoch' + 1 (torchvision references store the 0-based epoch just done)"),
    "lightning": (1, "'epoch' + 1 (Lightning stores the 0-based current_epoch)"),
    "lightning-ema": (1, "'epoch' + 1 (Lightning stores the 0-based current_epoch)"),
    "nemo-ema": (1, "'epoch' + 1 (Lightning stores the 0-based current_epoch)"),
}


def _epoch_shift(layout: str, tree: dict) -> tuple[int, str]:
    if layout == "timm":
        if (_int(tree.get("version")) or 1) >= 2:
            return 1, "'epoch' + 1 (timm checkpoint version 2 stores the 0-based epoch just done)"
        return 0, "'epoch' (timm checkpoint version 1 stores it already incremented)"
    return EPOCH_RULES.get(layout, (0, "'epoch'"))


def _scalar(v):
    if isinstance(v, Tensor):
        if v.size != 1:
            return None
        v = v.numpy().reshape(-1)[0]
    if isinstance(v, np.ndarray):
        if v.size != 1:
            return None
        v = v.reshape(-1)[0]
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, float, np.integer, np.floating)):
        return v
    return None


def _int(v) -> int | None:
    v = _scalar(v)
    if v is None or not np.isfinite(v) or float(v) != int(v):
        return None
    return int(v)


def _float(v) -> float | None:
    v = _scalar(v)
    return None if v is None or not np.isfinite(v) else float(v)


@dataclass
class Found:
    """What one file holds: its layout and, per network it provides, where and which tensors."""

    path: Path
    format: str
    det: Detection
    refs: dict[str, Ref]  # "sgd" / "ema" -> where in the file
    tensors: dict[str, dict[str, tuple[tuple[int, ...], str]]]  # net -> {name: (shape, dtype)}
    notes: dict[str, list[str]] = field(default_factory=dict)
