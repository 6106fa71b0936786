"""SOURCES on the command line: files, folders and globs, expanded to a list of files.

A folder contributes the files directly inside it (not below) whose names end in one of
the importer's suffixes; a glob contributes what it matches; a file named outright is taken
whatever its suffix (the user chose it). For checkpoints (folders=True), a Hugging Face
checkpoint folder (checkpoint-500/ with model.safetensors, sharded or not) counts as one file,
and a Trainer's output_dir as its checkpoint folders (importers/folders.py). Files are returned once each, in natural order of
their names ("ckpt-2" before "ckpt-10"), which is the order of last resort.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from ..errors import DynError, UsageError

_DIGITS = re.compile(r"(\d+)")
_EPOCH_IN_NAME = re.compile(r"epoch[=_\-]?(\d+)", re.IGNORECASE)


def expand(sources, suffixes: tuple[str, ...], what: str = "SOURCES", folders: bool = False) -> list[Path]:
    """The files named by `sources`; DynError for a missing path, an empty folder or a glob
    that matches nothing. folders: checkpoint folders (folders.py) count as files."""
    if not sources:
        raise UsageError(f"no {what} given")
    files: list[Path] = []
    for src in map(str, sources):
        p = Path(src)
        if folders and p.is_dir():
            from .folders import checkpoint_folders, is_checkpoint_folder

            # a Hugging Face checkpoint folder is one checkpoint; a Trainer's output_dir, its
            # checkpoint-N/ folders (when it holds no checkpoint files itself)
            inner = [] if is_checkpoint_folder(p) else checkpoint_folders(p)
            if is_checkpoint_folder(p) or (inner and not any(
                    f.is_file() and f.name.endswith(suffixes) for f in p.iterdir())):
                files += inner or [p]
                continue
        if p.is_dir():
            found = [f for f in p.iterdir() if f.is_file() and f.name.endswith(suffixes)
                     and not f.name.startswith(".")]
            if not found:
                raise DynError(f"{p}: folder holds no {'/'.join(suffixes)} files")
        elif p.is_file():
            found = [p]
        elif glob.has_magic(src):
            found = [Path(f) for f in glob.glob(src, recursive=True) if Path(f).is_file()
                     or (folders and _is_checkpoint_folder(Path(f)))]
            if not found:
                raise DynError(f"{src}: matches no files")
        else:
            raise DynError(f"{src}: no such file or folder")
        files += sorted(found, key=natural_key)
    unique, seen = [], set()
    for f in files:
        key = f.resolve()
        if key not in seen:
            seen.add(key)
            unique.append(f)
    return unique


def _is_checkpoint_folder(path: Path) -> bool:
    from .folders import is_checkpoint_folder

    return is_checkpoint_folder(path)


def natural_key(path) -> tuple:
    """Sort key that orders the numbers inside names by value: ckpt-2 < ckpt-10."""
    parts = _DIGITS.split(str(path))
    return tuple((0, int(x), "") if x.isdigit() else (1, 0, x) for x in parts)


def stem(path) -> str:
    """The name without its checkpoint suffix (`.pth.tar` counts as one)."""
    name = Path(path).name
    for suffix in (".pth.tar", ".safetensors", ".ckpt", ".pth", ".bin", ".pt", ".npy", ".npz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def number_in_name(path) -> int | None:
    """The epoch a file name gives: `epoch=N` / `epoch_N` if present, else its last number."""
    s = stem(path)
    m = _EPOCH_IN_NAME.search(s)
    if m:
        return int(m.group(1))
    nums = _DIGITS.findall(s)
    return int(nums[-1]) if nums else None
