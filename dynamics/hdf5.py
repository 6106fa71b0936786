"""Opening HDF5 files for reading with the knobs h5py does not expose.

In SWMR read mode HDF5 retries a metadata read whose checksum fails (it may be a torn read of a
live write) up to 100 times with growing sleeps: on a damaged file that is minutes per read.
`H5Pset_metadata_read_attempts` caps it; h5py has no binding, so we call it through ctypes on
the libhdf5 that h5py already loaded (and fall back to HDF5's default if it cannot be found).
"""

from __future__ import annotations

import ctypes
import functools
import io
import os
import time
from pathlib import Path

import h5py

from .errors import RunFileError, short_error
from .lock import writer_alive
from .superblock import read_superblock

SWMR_READ_ATTEMPTS = 10  # a live writer's torn read clears within a few tries


def _loaded_libhdf5() -> list[str]:
    """Paths of the libhdf5 h5py loaded: from /proc/self/maps (Linux), else the copies h5py's
    wheels ship beside it (h5py.libs/ on Linux, h5py/.dylibs/ on macOS, h5py/ on Windows);
    loading one that is already loaded returns the loaded library."""
    try:
        with open("/proc/self/maps") as maps:
            return sorted({line.split()[-1] for line in maps if "libhdf5" in line and "_hl" not in line
                           and ".so" in line})
    except OSError:
        pass
    here = Path(h5py.__file__).resolve().parent
    found = []
    for folder in (here, here / ".dylibs", here.parent / "h5py.libs"):
        if folder.is_dir():
            found += [str(p) for p in folder.iterdir() if "hdf5" in p.name and "_hl" not in p.name
                      and (".so" in p.name or p.suffix in (".dylib", ".dll"))]
    return sorted(found)


@functools.lru_cache(maxsize=1)
def _libhdf5():
    for path in _loaded_libhdf5():
        try:
            lib = ctypes.CDLL(path)
            fn = lib.H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        fn.argtypes = [ctypes.c_int64, ctypes.c_uint]
        fn.restype = ctypes.c_int
        return fn
    return None


def open_read(path: str | os.PathLike, swmr: bool, cache_bytes: int = 4 << 20) -> h5py.File:
    """Open read-only without file locks; in SWMR mode with few metadata retries."""
    if not swmr:
        return h5py.File(path, "r", locking=False, rdcc_nbytes=cache_bytes)
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)
    fapl.set_file_locking(False, True)
    nslots, _, nbytes, w0 = fapl.get_cache()
    fapl.set_cache(nslots, _, cache_bytes, w0)
    fapl.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    setter = _libhdf5()
    if setter is not None:
        setter(fapl.id, SWMR_READ_ATTEMPTS)
    fid = h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=fapl)
    return h5py.File(fid)


class _Cleared(io.RawIOBase):
    """The file as HDF5 should see it after `h5clear`: reads return its bytes with the
    superblock cleared (Superblock.cleared), and nothing is ever written to it."""

    def __init__(self, path: Path, sb):
        self._f = open(path, "rb", buffering=0)
        self._at = sb.offset
        self._sb = sb.cleared(os.fstat(self._f.fileno()).st_size)

    def readinto(self, b) -> int:
        pos = self._f.tell()
        n = self._f.readinto(b)
        lo, hi = max(pos, self._at), min(pos + n, self._at + len(self._sb))
        if lo < hi:
            memoryview(b)[lo - pos:hi - pos] = self._sb[lo - self._at:hi - self._at]
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self._f.close()
        super().close()


def open_cleared(path: Path, sb) -> h5py.File:
    """Open a file whose writer died between opening it for writing and switching to SWMR (a
    resume does so while it drops uncommitted rows): its superblock says "open for write"
    without "SWMR", which no read mode of HDF5 accepts. The writer's next resume clears the
    flags in the file; a reader cannot write, so it clears them in what it reads."""
    raw = _Cleared(path, sb)
    try:
        f = h5py.File(raw, "r", locking=False)
    except Exception:
        raw.close()
        raise
    f._dyn_cleared = raw  # h5py reads through it until the file is closed
    return f


def open_run_file(path: Path) -> h5py.File:
    """Open a run file read-only, in SWMR mode where a writer has it; one-line errors."""
    if not path.exists():
        raise RunFileError(f"{path}: no such file")
    if path.is_dir():
        raise RunFileError(f"{path}: is a directory, not a run file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as e:
        raise RunFileError(f"{path}: cannot be read ({e.strerror})") from None
    if head != b"\x89HDF\r\n\x1a\n" and not h5py.is_hdf5(path):
        raise RunFileError(f"{path}: not an HDF5 file")
    sb = read_superblock(path)
    live = writer_alive(path) is not False  # possibly live (no file locks here) counts as live
    if sb is not None and not live and path.stat().st_size < sb.offset + sb.eof:
        raise RunFileError(f"{path}: truncated: {path.stat().st_size:,} bytes of the "
                           f"{sb.offset + sb.eof:,} its header records")
    # SWMR read only where a writer has the file (live, or killed and not yet repaired): it is
    # what lets us follow a live run, and HDF5 refuses a plain read of such a file.
    swmr = live or (sb is not None and sb.flags != 0)
    last = None
    for attempt in range(5):  # a writer resuming repairs the superblock: retry briefly
        for mode in (swmr, not swmr):
            try:
                return open_read(path, swmr=mode)
            except OSError as e:
                last = e
        if not writer_alive(path):
            break
        time.sleep(0.1)
    if sb is not None and sb.flags and sb.checksum_ok() and writer_alive(path) is not True:
        try:
            return open_cleared(path, sb)
        except OSError as e:
            last = e
    raise RunFileError(f"{path}: cannot be opened as HDF5, truncated or damaged ({short_error(last)})")
