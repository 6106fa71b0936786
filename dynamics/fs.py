"""What the file system allows a writer: room to grow, write access, SWMR, durability."""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

from .errors import DynError

# SWMR needs POSIX semantics of a local file system; these are the usual exceptions.
NO_SWMR_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "fuse.sshfs", "virtiofs"}


class NotWritable(DynError):
    """No file can be created at a path: `folder`, the nearest existing one on its way, is not
    a folder (`why` is None) or refuses a new file (`why`: the system's reason)."""

    def __init__(self, path: Path, folder: Path, why: str | None = None):
        super().__init__(f"{path}: folder {folder} is not writable ({why})" if why
                         else f"{path}: {folder} is not a folder")
        self.folder, self.why = folder, why


def check_writable(path) -> None:
    """Refuse, before any work, an output that cannot be created (NotWritable); create nothing.

    The nearest existing folder on the way to `path` must take a new file: tried for real with
    a probe file (permission bits say nothing to root, nor about read-only mounts or /proc).
    Missing folders below it are left for the writer to make.
    """
    path = Path(path)
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise NotWritable(path, folder)
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".dyn-probe-")
    except OSError as e:
        raise NotWritable(path, folder, e.strerror or str(e)) from None
    os.close(fd)
    os.unlink(probe)


def swmr_supported(path: Path) -> bool:
    fs = fs_type(path.absolute().parent)
    if fs in NO_SWMR_FS:
        warnings.warn(f"{path}: on a {fs} file system, where HDF5's SWMR mode is unsafe; "
                      "writing without it (no live analysis while it runs)", stacklevel=3)
        return False
    return True


def fs_type(folder: Path) -> str:
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return ""
    best, fs = "", ""
    real = os.path.realpath(folder)
    for line in mounts:
        parts = line.split()
        if len(parts) > 2 and (real == parts[1] or real.startswith(parts[1].rstrip("/") + "/")):
            if len(parts[1]) > len(best):
                best, fs = parts[1], parts[2]
    return fs


def room(path: Path) -> tuple[int, str]:
    """Bytes the file may still grow by, and what limits it."""
    st = os.statvfs(path.absolute().parent)
    room, where = st.f_bavail * st.f_frsize, f"the disk of {path.absolute().parent}"
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if soft != resource.RLIM_INFINITY and soft - path.stat().st_size < room:
            room, where = soft - path.stat().st_size, "the file size limit (ulimit -f)"
    except (ImportError, OSError, ValueError):
        pass
    return room, where


def megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
