"""Checkpoints that are folders: the Hugging Face `save_pretrained` / `Trainer` layout.

A `Trainer` run leaves `output_dir/checkpoint-500/`, `checkpoint-1000/`, ..., each holding the
model as `model.safetensors` (or `pytorch_model.bin`) beside `trainer_state.json` (its
`global_step` and its `epoch`, a float) and files dyn never reads (optimizer.pt,
training_args.bin, a pickle of arbitrary objects). Large models are sharded:
`model-00001-of-00003.safetensors` ... with `model.safetensors.index.json`, whose `weight_map`
says which shard holds each tensor (the same for `pytorch_model-*.bin`). Such a folder is read
as one checkpoint: its shards merged into one state through the index.

EMA networks saved beside the model as `ema-<decay>.safetensors` (the training stage's
Trainer callback writes them at every save) come with it: the folder then holds entries `model` and `ema-<decay>`.

No torch is needed for safetensors folders; the JSON files are parsed, never evaluated.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..errors import DynError

# (index file, single file) per format, safetensors first: preferred where a folder has both
MODEL_FILES = (("model.safetensors.index.json", "model.safetensors"),
               ("pytorch_model.bin.index.json", "pytorch_model.bin"))
TRAINER_STATE = "trainer_state.json"
EMA_PREFIX = "ema-"  # ema-<decay>.safetensors beside the model: EMA networks


def is_checkpoint_folder(path: Path) -> bool:
    """A folder holding a model in the Hugging Face layout (sharded or not)."""
    return path.is_dir() and any((path / name).is_file() for pair in MODEL_FILES for name in pair)


def checkpoint_folders(path: Path) -> list[Path]:
    """The checkpoint folders directly inside `path` (a Trainer's output_dir), by name."""
    from .sources import natural_key

    return sorted((p for p in path.iterdir() if not p.name.startswith(".") and is_checkpoint_folder(p)),
                  key=natural_key)


def model_files(path: Path) -> tuple[list[Path], dict[str, str] | None, Path | None]:
    """(files to read, the index's weight_map or None, the index file or None)."""
    for index_name, single in MODEL_FILES:
        index = path / index_name
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text())["weight_map"]
                if not isinstance(weight_map, dict) or not weight_map:
                    raise ValueError("an empty weight_map")
            except (ValueError, KeyError, TypeError, UnicodeDecodeError) as e:
                raise DynError(f"{index}: not a checkpoint index ({type(e).__name__}: {e})") from None
            shards = []
            for name, shard in weight_map.items():
                if not isinstance(shard, str) or Path(shard).name != shard or shard in (".", ".."):
                    raise DynError(f"{index}: maps {name!r} to {shard!r}, not a file name in {path}")
                if shard not in shards:
                    shards.append(shard)
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise DynError(f"{index}: shard {missing[0]} is missing from {path}"
                               + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
            return [path / s for s in shards], weight_map, index
        if (path / single).is_file():
            return [path / single], None, None
    raise DynError(f"{path}: folder holds no model.safetensors, pytorch_model.bin or their sharded index")


def trainer_metadata(path: Path) -> dict[str, str]:
    """global_step and (when whole) epoch from the Trainer's trainer_state.json, as strings like
    safetensors metadata; the fractional epoch of a mid-epoch save as `trainer_epoch`."""
    f = path / TRAINER_STATE
    if not f.is_file():
        return {}
    try:
        state = json.loads(f.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise DynError(f"{f}: not JSON ({e})") from None
    meta = {}
    step = state.get("global_step")
    if isinstance(step, int) and not isinstance(step, bool):
        meta["global_step"] = str(step)
    epoch = state.get("epoch")
    if isinstance(epoch, (int, float)) and not isinstance(epoch, bool) and math.isfinite(epoch):
        if abs(epoch - round(epoch)) < 1e-6:
            meta["epoch"] = str(int(round(epoch)))  # the Trainer's epochs done = dyn's epoch
        else:
            meta["trainer_epoch"] = repr(float(epoch))
    return meta


def load_folder(path: Path, lazy: bool = True):
    """One Checkpoint of every tensor in the folder's model files (shards merged by the index)."""
    from .load import Checkpoint, load_file

    files, weight_map, index = model_files(path)
    tree: dict = {}
    fmt = None
    for f in files:
        ck = load_file(f, lazy)
        fmt = ck.format
        state = ck.tree
        if weight_map is None:
            tree.update(state)
            continue
        mine = [k for k, shard in weight_map.items() if shard == f.name]
        for k in mine:
            if k not in state:
                raise DynError(f"{index}: maps {k!r} to {f.name}, which lacks it")
            tree[k] = state[k]
        extra = [k for k in state if k not in weight_map]
        if extra:
            raise DynError(f"{f}: has tensor {extra[0]!r}, which {index.name} does not list")
    meta = trainer_metadata(path)
    emas = sorted(p for p in path.glob(f"{EMA_PREFIX}*.safetensors") if p.is_file())
    if not emas:
        return Checkpoint(path, tree, fmt, meta)
    # EMA networks saved beside the model (the training stage's Trainer callback): entries "model" and
    # "ema-<decay>"; with one of them the layout is found alone, else --sgd-key/--ema-key choose
    out = {"model": tree}
    for f in emas:
        ck = load_file(f, lazy)
        out[f.name[: -len(".safetensors")]] = ck.tree
        if len(emas) == 1 and "decay" in ck.metadata:
            meta["decay"] = ck.metadata["decay"]
    return Checkpoint(path, out, fmt, meta)
