"""Writing an imported run all or nothing: a temporary file beside the target, renamed at the end.

An import that fails half way (a bad file among many, a NaN under --strict, Ctrl-C) leaves
no run file and no temporary behind. Without --overwrite an existing target is never
replaced, not even one created while the import ran: the finished file is hard-linked into
place, which fails if the name exists (and falls back to check-then-rename where the file
system has no hard links).
"""

from __future__ import annotations

import errno
import os
from contextlib import contextmanager
from pathlib import Path

from ..errors import DynError, UsageError
from ..lock import writer_alive
from ..fs import check_writable


def check_target(out, overwrite: bool) -> Path:
    """Refuse, before any work, a target we may not (over)write: exit 2, a bad --out, as
    `dyn train` and `dyn analyze` refuse theirs."""
    if out is None:
        raise UsageError("--out RUN.h5 is required (or --dry-run to only show what would be imported)")
    out = Path(out)
    try:
        check_writable(out)
    except DynError as e:
        raise UsageError(f"--out {e}") from None
    if out.is_dir():
        raise UsageError(f"--out {out}: is a folder; --out names the run file to create")
    if out.exists() and not overwrite:
        raise UsageError(f"--out {out}: already exists; pass --overwrite to replace it")
    if writer_alive(out):
        raise DynError(f"{out}: a live process is writing this run; refusing to replace it")
    return out


@contextmanager
def staged(out: Path, overwrite: bool):
    """Yield a temporary path beside `out`; move it into place if the block succeeds, else
    remove it."""
    tmp = out.with_name(f".{out.name}.import-{os.getpid()}")
    try:
        yield tmp
        _place(tmp, out, overwrite)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass


def _place(tmp: Path, out: Path, overwrite: bool) -> None:
    if overwrite:
        if writer_alive(out):
            raise DynError(f"{out}: a live process started writing this run; not replacing it")
        os.replace(tmp, out)
        return
    try:
        os.link(tmp, out)  # fails if `out` exists: no clobbering, even in a race
    except FileExistsError:
        raise DynError(f"{out}: was created while importing; not replacing it (pass --overwrite)") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if out.exists():
            raise DynError(f"{out}: was created while importing; not replacing it (pass --overwrite)") from None
        os.replace(tmp, out)
