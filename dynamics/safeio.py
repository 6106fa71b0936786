"""Writing files that survive a full disk and a kill at every moment: the one place for it.

Every writer of dyn (run files, imports, figures, tables, reports; and new ones) uses these:

- `Staged(path)`: a temporary beside `path`, renamed into place only when complete (`commit`),
  removed on any failure (`discard`); `staged` and `staged_dir` are its with-block forms. The
  temporary is flock-held while it is written, so a later writer to the same `path` that can
  take the lock knows its writer is dead and removes it (`sweep`): a SIGKILL leaves nothing
  behind for longer than the next attempt.
- `GuardedFile` / `open_hdf5`: the file object HDF5 writes through (h5py's "fileobj" driver).
  Why: when a write of libhdf5's own file driver fails (ENOSPC, EFBIG), HDF5 half-destroys the
  objects it was flushing or closing but leaves their ids registered; closing them again, which
  h5py's deallocation and HDF5's atexit handler (H5_term_library) both do, reads freed memory:
  the segmentation fault after "No space left on device". Through a GuardedFile HDF5 never sees
  a failed write: the first failure is recorded, it and every later write are held in memory
  instead of reaching the disk (so what is on disk is what a SIGKILL at that moment would
  leave), and `check()` raises it as one line. HDF5's state stays whole and closes normally.
- `write_error(...)`: the one-line message for a failed write: what, why, room, what to do.
"""

from __future__ import annotations

import errno
try:
    import fcntl
except ImportError:  # Windows: no locks, so no temporary is ever proved abandoned (see lock.py)
    fcntl = None
import io
import os
import re
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path

from .errors import DiskFull, DynError, WriteFailed
from .faults import test_point as _test_point
from .fs import fsync

NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
TMP_TAG = ".dyn-tmp-"  # temporaries are named .NAME.dyn-tmp-PID-HEX[SUFFIX]
_HELD_MAX = 64 << 20  # bytes of writes held in memory after a failure (HDF5's closing flush)


# ------------------------------------------------------------------------------ messages
def write_error(path, error: OSError, what: str = "writing", need: int | None = None,
                kept: str = "", label: str | None = None) -> DynError:
    """One line for a failed write: DiskFull for no room (ENOSPC, EDQUOT, EFBIG), else WriteFailed."""
    path = Path(path)
    if error.errno in NO_ROOM:
        limit = error.errno == errno.EFBIG
        folder = path.absolute().parent
        while TMP_TAG in folder.name:  # say where the user's file goes, not our temporary folder
            folder = folder.parent
        why = "the file size limit (ulimit -f) is reached" if limit else f"the disk of {folder} is full"
        room = f" (it needed about {_mb(need)} more)" if need else ""
        todo = "raise the limit (ulimit -f)" if limit else "free some room"
        e = DiskFull(f"{label or path}: {what} failed: {why}{room}; {kept + '; ' if kept else ''}"
                     f"{todo} and run the same command again")
        e.why = why + room
        return e
    return WriteFailed(f"{label or path}: {what} failed: {error.strerror or error}"
                    f"{'; ' + kept if kept else ''}")


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB" if n >= 1 << 20 else f"{max(n, 1) / 1024:.0f} KB"


# ---------------------------------------------------------------------------- temporaries
def tmp_name(path: Path, suffix: str = "") -> Path:
    return path.with_name(f".{path.name}{TMP_TAG}{os.getpid()}-{secrets.token_hex(3)}{suffix}")


def is_tmp_of(candidate: str, path: Path) -> bool:
    """A temporary of `path`, or one made beside such a temporary (its lock sidecar...)."""
    return candidate.startswith(".") and candidate.lstrip(".").startswith(f"{path.name}{TMP_TAG}")


def hold(fd: int) -> None:
    """Mark a temporary as being written by this process (the kernel drops it when we die)."""
    import time

    if fcntl is None:
        return

    for _ in range(50):  # a sweeper's brief test of the lock (`abandoned`) may hold it a moment
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(0.01)
    fcntl.flock(fd, fcntl.LOCK_EX)


def abandoned(p: Path) -> bool:
    """True when no live process holds this temporary (file or folder) open for writing."""
    if fcntl is None:  # nothing proves its writer dead: keep it (inspect still lists it)
        return False
    try:
        fd = os.open(p, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


# Temporaries as dyn named them before this module (none flock-held; the pid names the writer):
# `.NAME.tmp-PID` (run files, post-hoc copies), `.NAME.PID.HEX.tmp` (figures, tables),
# `.NAME.import-PID` (imports).
_OLD_TMP_TAILS = (r"\.tmp-(\d+)", r"\.(\d+)\.[0-9a-f]{8}\.tmp", r"\.import-(\d+)")


def old_tmp_abandoned(candidate: str, path: Path) -> bool:
    """An old-named temporary of `path` whose writer (the pid in its name) is no longer running."""
    if fcntl is None:  # Windows: os.kill(pid, 0) would terminate the process, not test it
        return False
    for tail in _OLD_TMP_TAILS:
        m = re.fullmatch(re.escape(f".{path.name}") + tail, candidate)
        if m:
            try:
                os.kill(int(m.group(1)), 0)
            except ProcessLookupError:
                return True
            except (OSError, OverflowError):  # alive under another user, or no such pid at all
                return False
            return False
    return False


def stale(path) -> list[Path]:
    """Temporaries of `path` left by writers that are gone (killed): their lock can be taken."""
    path = Path(path)
    try:
        names = os.listdir(path.parent)
    except OSError:
        return []
    return [path.parent / n for n in sorted(names)
            if (is_tmp_of(n, path) and abandoned(path.parent / n)) or old_tmp_abandoned(n, path)]


def sweep(path) -> list[Path]:
    """Remove what killed writers of `path` left; returns what was removed."""
    gone = []
    for p in stale(path):
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


class Staged:
    """A temporary beside `path` (a file; with folder=True a folder, for a writer that makes
    several files), flock-held while this process lives so that `sweep` leaves it alone.
    `commit()` renames it (a folder: the file `folder / path.name` it holds) onto `path`;
    `discard()` removes whatever is left, and always follows. OSError becomes `write_error`'s
    one line. `staged` and `staged_dir` are the with-block forms."""

    def __init__(self, path, *, folder: bool = False, suffix: str = "", what: str = "writing",
                 label: str | None = None):
        self.path, self.folder, self.what, self.label = Path(path), folder, what, label
        sweep(self.path)
        self.tmp = tmp_name(self.path, suffix)
        self.fd = -1
        try:
            if folder:
                self.path.parent.mkdir(parents=True, exist_ok=True)  # missing folders are made, as for a run
                os.mkdir(self.tmp)
                self.fd = os.open(self.tmp, os.O_RDONLY)
            else:
                self.fd = os.open(self.tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            hold(self.fd)
        except OSError as e:
            self.discard()
            raise self.error(e) from None
        except BaseException:
            self.discard()
            raise

    def error(self, e: OSError, kept: str = "") -> DynError:
        return write_error(self.path, e, self.what, kept=kept, label=self.label)

    def commit(self, replace: bool = True, durable: bool = False) -> None:
        """Rename the finished temporary onto `path` (replace=False: never over an existing
        file, even one created meanwhile: DynError); durable: fsync it and the folder too."""
        done = self.tmp / self.path.name if self.folder else self.tmp
        try:
            if durable:
                fsync(done)
            place(done, self.path, replace)
            if durable:
                fsync(self.path.parent)
        except OSError as e:
            raise self.error(e) from None

    def discard(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.folder:
            shutil.rmtree(self.tmp, ignore_errors=True)
        else:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


def place(tmp: Path, path: Path, replace: bool = True) -> None:
    """Rename a finished file onto `path` (see Staged.commit)."""
    if replace:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if `path` exists: no clobbering, even in a race
    except FileExistsError:
        raise DynError(f"{path}: was created while writing it; not replacing it (pass --overwrite)") from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        if path.exists():
            raise DynError(f"{path}: was created while writing it; not replacing it (pass --overwrite)") from None
        os.replace(tmp, path)


@contextmanager
def staged(path, *, replace: bool = True, suffix: str = "", what: str = "writing", label: str | None = None):
    """Yield (temporary path, fd holding its lock) beside `path`; the temporary is renamed onto
    `path` when the block succeeds, else removed (see Staged)."""
    s = Staged(path, suffix=suffix, what=what, label=label)
    try:
        try:
            yield s.tmp, s.fd
        except OSError as e:
            raise s.error(e) from None
        s.commit(replace)
    finally:
        s.discard()


@contextmanager
def staged_dir(path, *, replace: bool = True, what: str = "writing"):
    """Yield a temporary folder beside `path`; `folder / path.name`, if the block made it, is
    then renamed onto `path`. The folder and anything left in it are removed in every case."""
    s = Staged(path, folder=True, what=what)
    try:
        try:
            yield s.tmp
        except OSError as e:
            raise s.error(e) from None
        if (s.tmp / s.path.name).exists():
            _test_point(f"staged: placing {s.path.name}")
            s.commit(replace)
    finally:
        s.discard()


def write_bytes(path, data: bytes, *, what: str = "writing", label: str | None = None) -> Path:
    """`data` at `path`, atomically (staged); `label`: how messages name it (`--csv out.csv`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with staged(path, what=what, label=label) as (tmp, fd):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    return Path(path)


# ------------------------------------------------------------------------------ HDF5 I/O
class GuardedFile(io.RawIOBase):
    """A file for h5py's "fileobj" driver that never reports a failed write to HDF5.

    The first failed write (or truncate) is kept in `error`; from then on nothing reaches
    the disk: writes are held in memory (so HDF5 reads back what it wrote) and succeed.
    Callers `check()` after each step and before anything that must not follow a failure
    (a commit counter)."""

    def __init__(self, path, mode: str = "r+", name=None):
        super().__init__()
        self.path = Path(path)
        self.name = Path(name or path)  # what messages call it (the target of a temporary)
        flags = {"r+": os.O_RDWR, "w": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
                 "x": os.O_RDWR | os.O_CREAT | os.O_EXCL}[mode]
        self.fd = os.open(self.path, flags, 0o644)
        self.pos = 0
        self.end = os.fstat(self.fd).st_size
        self.error: OSError | None = None
        self.held: list[tuple[int, bytes]] = []
        self._held_bytes = 0

    def fileno(self) -> int:
        return self.fd

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.end}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        got = os.preadv(self.fd, [view], self.pos) if n else 0
        if got < n and self.pos + n <= self.end:  # a hole or held bytes past the real end
            view[got:] = b"\0" * (n - got)
            got = n
        for at, data in self.held:  # what HDF5 wrote after the failure, as it expects to read it
            lo, hi = max(at, self.pos), min(at + len(data), self.pos + got)
            if lo < hi:
                view[lo - self.pos:hi - self.pos] = data[lo - at:hi - at]
        self.pos += got
        return got

    def write(self, b) -> int:
        view = memoryview(b).cast("B")
        n = len(view)
        if self.error is None:
            done = 0
            try:
                while done < n:
                    done += os.pwrite(self.fd, view[done:], self.pos + done)
            except OSError as e:
                self.error = e
                view = view[done:]
                self._hold(self.pos + done, view)
        else:
            self._hold(self.pos, view)
        self.pos += n
        self.end = max(self.end, self.pos)
        return n

    def _hold(self, at: int, view) -> None:
        if self._held_bytes < _HELD_MAX:
            self.held.append((at, bytes(view)))
            self._held_bytes += len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as e:
                self.error = e
        self.end = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()

    def check(self, what: str = "writing", need: int | None = None, kept: str = "") -> None:
        """Raise the first failed write as one line (see `write_error`)."""
        if self.error is not None:
            raise write_error(self.name, self.error, what, need, kept)


def open_hdf5(path, mode: str = "r+", name=None, **kw):
    """An h5py.File written through a GuardedFile (`f.guard`); close with `close_hdf5`."""
    import h5py

    guard = GuardedFile(path, mode, name)
    try:
        f = h5py.File(guard, "r+" if mode == "r+" else "w", locking=False, **kw)
    except BaseException:
        guard.close()
        raise
    f.guard = guard
    return f


def close_hdf5(f) -> None:
    """Close the h5py file, then its GuardedFile (HDF5's closing writes go through it)."""
    guard = getattr(f, "guard", None)
    try:
        if f.id.valid:
            f.close()
    finally:
        if guard is not None:
            guard.close()
