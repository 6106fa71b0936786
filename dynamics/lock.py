"""One writer per run: an exclusive flock on a sidecar file beside the run.

The kernel drops a flock when its process dies, so a held lock proves a live writer and a
free one proves that none is alive (which is what makes repairing a killed run's file safe).
The sidecar (`.NAME.lock`) is separate from the run file because readers and other HDF5
tools take their own locks on the run file itself.

Without fcntl (Windows) there is no such proof. The writer then claims the sidecar by creating
it exclusively (a killed writer leaves it behind, and the next writer is refused until it is
deleted), and a reader can only tell that no writer is there (no sidecar); with a sidecar the
writer is possibly live, and writer_alive says None: unknown.
"""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

from .errors import DynError, WriterBusy

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

UNKNOWN_LIVENESS = ("this platform has no file locks (fcntl), so dyn cannot tell a live writer "
                    "from a killed one")


def lock_path(run_path: str | os.PathLike) -> Path:
    p = Path(run_path)
    return p.with_name(f".{p.name}.lock")


class WriterLock:
    def __init__(self, run_path: str | os.PathLike):
        self.run_path = Path(run_path)
        self.path = lock_path(run_path)
        self.fd: int | None = None

    def acquire(self, patience: float = 0.5) -> "WriterLock":
        if fcntl is None:
            return self._acquire_exclusive_create()
        deadline = time.monotonic() + patience
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise DynError(f"{self.run_path}: cannot create its lock file {self.path} ({e.strerror})") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                os.close(fd)
                if e.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() < deadline:  # a reader's brief check (writer_alive) holds it
                    time.sleep(0.02)
                    continue
                pid = _read_pid(self.path)
                who = f" (pid {pid})" if pid else ""
                raise WriterBusy(f"{self.run_path}: another process{who} is writing this run") from None
            # A releasing writer may have unlinked the sidecar between our open and flock.
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError:  # a full disk: the pid only names the holder in messages; the flock is the lock
            pass
        self.fd = fd
        return self

    def _acquire_exclusive_create(self) -> "WriterLock":
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pid = _read_pid(self.path)
            who = f" (pid {pid})" if pid else ""
            raise WriterBusy(f"{self.run_path}: its lock file {self.path} exists: another process{who} is writing "
                             f"this run, or one was killed; {UNKNOWN_LIVENESS}. If none writes it, delete "
                             f"{self.path}") from None
        except OSError as e:
            raise DynError(f"{self.run_path}: cannot create its lock file {self.path} ({e.strerror})") from None
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            if fcntl is None:  # Windows cannot unlink an open file
                os.close(self.fd)
                self.fd = None
            os.unlink(self.path)  # while still held, so no one else locks a stale inode
        except FileNotFoundError:
            pass
        if self.fd is None:
            return
        os.close(self.fd)
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()


def writer_alive(run_path: str | os.PathLike) -> bool | None:
    """True while some process holds the writer lock of this run (read-only check). Without
    fcntl: False where no writer's sidecar exists, else None (possibly live)."""
    path = lock_path(run_path)
    if fcntl is None:
        return None if path.exists() else False
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _read_pid(path: Path) -> str:
    try:
        return path.read_text().strip()[:16]
    except OSError:
        return ""
