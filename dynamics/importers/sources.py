"""SOURCES on the command line: files, folders and globs, expanded to a list of files.

A folder contributes the files directly inside it (not below) whose names end in one of
the importer's suffixes; a glob contributes what it matches; a file named outright is taken
whatever its suffix (the user chose it). Files are returned once each, in natural order of
their names ("ckpt-2" before "ckpt-10"), which is the order of last resort.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path

from ..errors import DynError, UsageError

_DIGITS = re.compile(r"(\d+)")
_EPOCH_IN_NAME = re.compile(r"epoch[=_\-]?(\d+)", re.IGNORECASE)


def expand(sources, suffixes: tuple[str, ...], what: str = "SOURCES") -> list[Path]:
    """The files named by `sources`; DynError for a missing path, an empty folder or a glob
    that matches nothing."""
    if not sources:
        raise UsageError(f"no {what} given")
    files: list[Path] = []
    for src in map(str, sources):
        p = Path(src)
        if p.is_dir():
            found = [f for f in p.iterdir() if f.is_file() and f.name.endswith(suffixes)
                     and not f.name.startswith(".")]
            if not found:
                raise DynError(f"{p}: folder holds no {'/'.join(suffixes)} files")
        elif p.is_file():
            found = [p]
        elif glob.has_magic(src):
            found = [Path(f) for f in glob.glob(src, recursive=True) if Path(f).is_file()]
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
