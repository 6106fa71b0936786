"""Loading one checkpoint file safely, as a tree of lazily read tensors.

Checkpoints from other projects are untrusted: unpickling one in full can run any code it
carries. So torch files are read only with `torch.load(..., weights_only=True)`, whose
unpickler refuses every global outside a short list of tensor rebuilders and containers
before anything is called, and such a refusal becomes one line naming the file and the
global. The one class allowed beyond torch's list is `argparse.Namespace`: timm and the
torchvision references store their command-line args as one, and building it calls no code
of the file (object.__new__, then a __dict__ update).

.safetensors files are read with safetensors' numpy API (a JSON header and raw bytes), so
importing them needs no torch. torch is imported only inside the functions reading torch
files.
"""

from __future__ import annotations

import argparse
import io
import json
import pickletools
import re
import struct
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import DynError

SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pth.tar")
SUFFIXES = TORCH_SUFFIXES + SAFETENSORS_SUFFIXES

# safetensors dtypes numpy lacks, read from the raw bytes instead
_BF16 = "BF16"


@dataclass
class Tensor:
    """A tensor of a checkpoint, read only when `numpy()` is called.

    `dtype` is the tensor's own dtype name (`float32`, `bfloat16`, `int64`); `numpy()` gives
    float32 for the dtypes numpy lacks (bfloat16, float8), which hold exactly in float32.
    """

    shape: tuple[int, ...]
    dtype: str
    read: Callable[[], np.ndarray] = field(repr=False)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def numpy(self) -> np.ndarray:
        return self.read()


@dataclass
class Checkpoint:
    """One loaded file: `tree` is nested dicts whose leaves are Tensors or plain values."""

    path: Path
    tree: dict[str, Any]
    format: str  # "torch" or "safetensors"
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__


def kind_of(path: Path) -> str:
    """'safetensors' or 'torch', from the file name (a checkpoint folder: from its model files)."""
    if path.is_dir():
        from .folders import model_files

        return kind_of(model_files(path)[0][0])
    return "safetensors" if path.name.endswith(SAFETENSORS_SUFFIXES) else "torch"


def load(path, lazy: bool = True) -> Checkpoint:
    """Load `path` safely. DynError with one line naming the file when that is not possible.

    lazy: memory-map torch files (zip format) so that looking at the keys reads no tensor data.
    A folder in the Hugging Face layout (checkpoint-500/, sharded or not) is one checkpoint
    (folders.py).
    """
    path = Path(path)
    if path.is_dir():
        from .folders import is_checkpoint_folder, load_folder

        if is_checkpoint_folder(path):
            return load_folder(path, lazy)
    return load_file(path, lazy)


def load_file(path, lazy: bool = True) -> Checkpoint:
    """Load one checkpoint file (see load)."""
    path = Path(path)
    if not path.is_file():
        raise DynError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    if kind_of(path) == "safetensors":
        return _load_safetensors(path)
    return _load_torch(path, lazy)


# --------------------------------------------------------------------------- safetensors
def _load_safetensors(path: Path) -> Checkpoint:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="numpy") as f:
            meta = dict(f.metadata() or {})
            specs = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise DynError(f"{path}: not a safetensors file ({_first_line(e)})") from None
    tree = {k: Tensor(shape, _st_dtype(dt), _st_reader(path, k, dt)) for k, (dt, shape) in specs.items()}
    return Checkpoint(path, tree, "safetensors", meta)


_ST_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
             "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "U16": "uint16", "U32": "uint32",
             "U64": "uint64", "BOOL": "bool", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _st_dtype(code: str) -> str:
    return _ST_NAMES.get(code, code.lower())


def _st_reader(path: Path, key: str, code: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        if code == _BF16:
            return _bf16_from_bytes(path, key)
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="numpy") as f:
                return f.get_tensor(key)
        except TypeError:  # a dtype numpy lacks (float8): say so rather than guess
            raise DynError(f"{path}: tensor {key!r} has dtype {_st_dtype(code)}, which dyn cannot read "
                           "without torch; convert the file to float32") from None

    return read


def _bf16_from_bytes(path: Path, key: str) -> np.ndarray:
    """bfloat16 is the top half of a float32: shift the raw 16 bits up (exact)."""
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))  # JSON, never evaluated
        spec = header[key]
        a, b = spec["data_offsets"]
        fh.seek(8 + n + a)
        raw = np.frombuffer(fh.read(b - a), dtype="<u2")
    return (raw.astype(np.uint32) << 16).view(np.float32).reshape(spec["shape"])


# --------------------------------------------------------------------------------- torch
def _load_torch(path: Path, lazy: bool) -> Checkpoint:
    try:
        import torch
    except ModuleNotFoundError:
        raise DynError(f"{path}: reading torch checkpoints needs PyTorch, which is not installed "
                       "(pip install torch); .safetensors files import without it", exit_code=2) from None
    import pickle

    def _load(mmap: bool):
        with torch.serialization.safe_globals([argparse.Namespace]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Detected pickle protocol 5": we say what matters
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)

    is_zip = zipfile.is_zipfile(path)
    if not is_zip and not _starts_like_pickle(path):
        raise DynError(f"{path}: not a torch checkpoint (neither torch's zip format nor a pickle)")
    mmap = lazy and is_zip  # the legacy (pre-1.6) format cannot be mapped
    try:
        obj = _load(mmap)
    except pickle.UnpicklingError as e:
        raise DynError(refusal(path, str(e))) from None
    except MemoryError:
        raise DynError(f"{path}: too large to load into memory") from None
    except Exception as e:  # torch raises many kinds for a file that is not its own
        raise DynError(f"{path}: not a torch checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    tree = _to_tree(obj, torch)
    if not isinstance(tree, dict):
        raise DynError(f"{path}: holds a {type(obj).__name__}, not a state_dict or a checkpoint dict")
    return Checkpoint(path, tree, "torch")


def _starts_like_pickle(path: Path) -> bool:
    """Pickles of protocol 2 and later (torch's legacy format too) open with PROTO, 0x80."""
    with open(path, "rb") as fh:
        return fh.read(1) == b"\x80"


def _to_tree(obj, torch):
    """torch objects -> dicts of Tensors (lazy numpy views) and plain values."""
    if isinstance(obj, torch.Tensor):
        return _torch_tensor(obj, torch)
    if isinstance(obj, dict):
        return {str(k): _to_tree(v, torch) for k, v in obj.items()}
    if isinstance(obj, argparse.Namespace):
        return {k: _to_tree(v, torch) for k, v in vars(obj).items()}
    if isinstance(obj, (list, tuple)):
        return [_to_tree(v, torch) for v in obj]
    return obj


def _torch_tensor(t, torch) -> Tensor:
    dtype = str(t.dtype).removeprefix("torch.")

    def read() -> np.ndarray:
        x = t.detach()
        if x.is_quantized or x.layout != torch.strided:
            raise DynError(f"a {dtype} tensor of layout {x.layout} (quantized or sparse) cannot be imported")
        if x.dtype in (torch.bfloat16,) or "float8" in dtype:
            x = x.to(torch.float32)  # numpy has no bfloat16; float32 holds it exactly
        return x.cpu().numpy()

    return Tensor(tuple(t.shape), dtype, read)


# ------------------------------------------------------------------- refusing a pickle
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")


def refusal(path: Path, message: str) -> str:
    """One line: which global made torch's weights_only unpickler refuse `path`."""
    m = _GLOBAL_RE.search(message)
    names = unsafe_globals(path)
    if m and m.group(1) not in names:
        names.insert(0, m.group(1))
    if names:
        more = f" and {len(names) - 4} more" if len(names) > 4 else ""
        return (f"{path}: refused: its pickle references {', '.join(names[:4])}{more}, which loading would call; "
                "dyn loads checkpoints with weights_only=True and never runs code from them "
                "(re-save the weights as a dict of tensors, or as .safetensors)")
    reason = next((ln.strip() for ln in message.splitlines()
                   if ln.strip() and not ln.startswith(("Weights only load failed", "Please file", "Check the"))),
                  "the pickle uses something weights_only=True refuses")
    return f"{path}: refused by torch.load(weights_only=True): {reason[:160]}"


def unsafe_globals(path: Path) -> list[str]:
    """Globals a pickle references beyond torch's weights_only list, found by reading its
    opcodes (pickletools), never by running them. For messages only."""
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                blobs = [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
        else:
            blobs = [Path(path).read_bytes()]
    except (OSError, zipfile.BadZipFile):
        return []
    allowed = _allowed_globals()
    found = []
    for blob in blobs:
        for name in pickle_globals(blob):
            ok = name in allowed if allowed else name.startswith(("torch.", "collections."))
            if not ok and name not in found and name != "argparse.Namespace":
                found.append(name)
    return found


def pickle_globals(blob: bytes) -> list[str]:
    """'module.name' of every GLOBAL / STACK_GLOBAL in the pickles of `blob`, in order."""
    out, stream = [], io.BytesIO(blob)
    while stream.tell() < len(blob):
        strings, memo = [], {}
        try:
            for op, arg, _ in pickletools.genops(stream):
                if op.name == "GLOBAL":
                    out.append(arg.replace(" ", "."))
                elif op.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                                 "SHORT_BINSTRING", "BINSTRING", "STRING"):
                    strings.append(arg)
                elif op.name == "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                elif op.name in ("PUT", "BINPUT", "LONG_BINPUT"):
                    memo[arg] = strings[-1] if strings else None
                elif op.name in ("GET", "BINGET", "LONG_BINGET") and memo.get(arg) is not None:
                    strings.append(memo[arg])
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    out.append(f"{strings[-2]}.{strings[-1]}")
        except Exception:  # raw tensor bytes after the pickles of a legacy file
            break
    return out


def _allowed_globals() -> set[str]:
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # a private helper: without it, name everything outside torch
        return set()


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
