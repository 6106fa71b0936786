"""Writing an imported run all or nothing: a temporary folder beside the target, the run
renamed out of it at the end (dyn.safeio.staged_dir).

An import that fails half way (a bad file among many, a NaN under --strict, a full disk,
Ctrl-C) leaves no run file and no temporary behind; one killed leaves a temporary that the
next import to the same target removes. Without --overwrite an existing target is never
replaced, not even one created while the import ran: the finished file is hard-linked into
place, which fails if the name exists (and falls back to check-then-rename where the file
system has no hard links).
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

from ..errors import DiskFull, DynError, UsageError
from ..fs import check_writable
from ..lock import writer_alive
from ..safeio import staged_dir


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
    """Yield a temporary path for the run; move it onto `out` if the block succeeds, else
    remove it."""
    try:
        with staged_dir(out, replace=overwrite, what="writing the imported run") as folder:
            yield folder / out.name
            if overwrite and writer_alive(out):
                raise DynError(f"{out}: a live process started writing this run; not replacing it")
    except DiskFull as e:  # said of the temporary run: say it of the import
        why = getattr(e, "why", None) or str(e)
        raise DiskFull(f"{out}: not enough room to import it ({why}); nothing was written, "
                       f"{'the earlier file is unchanged' if out.exists() else 'no temporary is left'}; "
                       "free some room (or raise ulimit -f) and run the same command again") from None
