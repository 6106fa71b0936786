"""Opening the run files an analysis reads, and checking each holds what the analysis needs:
one line naming the run and what it lacks (imported runs may hold only predictions, or
only weights)."""

from __future__ import annotations

import contextlib

from dyn.errors import RunFileError, UsageError


@contextlib.contextmanager
def open_runs(paths):
    """Open every run (all or none: one bad file is one error line); close them after."""
    from dyn.reader import open_run

    with contextlib.ExitStack() as stack:
        runs = [stack.enter_context(open_run(p)) for p in paths]
        for run in runs:
            possibly_live(run)
        yield runs


def possibly_live(run) -> bool:
    """Say so on stderr when a run says *running* and this platform cannot tell whether its
    writer lives (no file locks): its records may still grow, or it may have been killed."""
    if run.state != "running" or run.writer_alive is not None:
        return False
    import sys

    from dyn.lock import UNKNOWN_LIVENESS

    print(f"dyn: note: {run.path} says it is running and may be written as we read: {UNKNOWN_LIVENESS}; "
          f"reading the epochs it has committed", file=sys.stderr)
    return True


def need_correctness(run, split: str, what: str) -> None:
    """DynError unless the run records per-sample correctness on `split`."""
    if not run.splits:
        holds = " (it holds only weights)" if run.has_weights else ""
        raise RunFileError(f"{run.path}: records no per-sample correctness{holds}; {what} needs it")
    if split not in run.splits:
        raise UsageError(f"--split {split}: {run.path} has no split {split!r} (splits: {', '.join(run.splits)})")


def need_weights(run, what: str) -> None:
    if not run.has_weights:
        holds = " (it holds only predictions)" if run.splits else ""
        raise RunFileError(f"{run.path}: records no weights{holds}; {what} needs SGD and EMA weights")
