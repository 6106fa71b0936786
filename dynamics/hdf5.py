"""Opening HDF5 files for reading with the knobs h5py does not expose.

In SWMR read mode HDF5 retries a metadata read whose checksum fails (it may be a torn read of a
live write) up to 100 times with growing sleeps: on a damaged file that is minutes per read.
`H5Pset_metadata_read_attempts` caps it; h5py has no binding, so we call it through ctypes on
the libhdf5 that h5py already loaded (and fall back to HDF5's default if it cannot be found).
"""

from __future__ import annotations

import ctypes
import functools
import os

import h5py

SWMR_READ_ATTEMPTS = 10  # a live writer's torn read clears within a few tries


@functools.lru_cache(maxsize=1)
def _libhdf5():
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libhdf5" in line and "_hl" not in line
                     and ".so" in line}
    except OSError:
        return None
    for path in sorted(paths):
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
