"""Errors that reach the user as one line and an exit code, never a traceback."""


class DynError(Exception):
    """A problem the user can fix: a bad file, a bad flag, a run in the wrong state.

    The CLI prints ``dyn: error: <message>`` and exits with ``exit_code``.
    """

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class RunFileError(DynError):
    """A run file that is missing, of another kind, too new, or damaged."""


class UsageError(DynError):
    """Flags or values that make no sense together (exit 2, as click's own usage errors)."""

    exit_code = 2


class WriterBusy(DynError):
    """Another live process is writing this run."""


class DiskFull(DynError):
    """Not enough room (free disk space or the file size limit) for the next epoch's records.

    Raised before anything is written: the run keeps its committed epochs and is resumable.
    """


class WriteFailed(DynError):
    """An output could not be written (for a reason other than room: see DiskFull)."""


class Diverged(DynError):
    """Training hit a non-finite loss; the run file records where."""

    exit_code = 3


def short_error(e: BaseException | None) -> str:
    """The first line of an exception's message (HDF5's run over many), at most 200 characters."""
    if e is None:
        return "unknown error"
    text = str(e).strip()
    return (text.splitlines()[0] if text else type(e).__name__)[:200]
