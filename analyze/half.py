"""Per-example sums over epochs of float16 records (prob, margin) with NaN skipped: in C where
analyze/_half.c was built (one pass, ~1 ns a value), else numpy (~3.5 ns a value for the
float16 conversion alone). The numpy path is the fallback and the tests' second implementation;
DYN_KERNELS=numpy forces it."""

from __future__ import annotations

import ctypes
import functools

import numpy as np

from dyn.analyze.kernels import built

VERSION = 1


@functools.cache
def _lib():
    path = built("_half")
    if path is None:
        return None
    p, i = ctypes.c_void_p, ctypes.c_int64
    try:  # a build from another dyn (other version, a kernel missing): numpy instead
        lib = ctypes.CDLL(str(path))
        if lib.dyn_half_version() != VERSION:
            return None
        lib.dyn_half_accumulate.argtypes = [p, i, i, i, p, p, p, p, i, p]
        lib.dyn_half_accumulate.restype = None
        lib.dyn_forgetting_rows.argtypes = [p, i, i, p, i, i, p, p, p, p, p]
        lib.dyn_forgetting_rows.restype = None
    except (OSError, AttributeError):
        return None
    return lib


def backend() -> str:
    return "numpy" if _lib() is None else "C"


def accumulate(values, total, count, squares=None, packed=None, correct=None) -> None:
    """Add rows (t, n) of values (float16 as stored, or any float; NaN: skipped) into float64
    `total` (and `squares`), int32 `count`; with `packed` correctness rows (t, ceil(n/8)) also
    int32 `correct` (a bit counts only where the value is not NaN)."""
    values = np.asarray(values)
    t, n = values.shape
    lib = _lib()
    if lib is not None and values.dtype == np.float16:
        x = np.ascontiguousarray(values)
        if packed is not None:
            packed = np.ascontiguousarray(packed, dtype=np.uint8)
        ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
        for a, dt in ((total, np.float64), (count, np.int32), (squares, np.float64), (correct, np.int32)):
            if a is not None and (a.dtype != dt or not a.flags.c_contiguous or a.shape != (n,)):
                raise ValueError(f"accumulator must be a contiguous ({n},) {np.dtype(dt).name} array")
        lib.dyn_half_accumulate(x.ctypes.data, t, n, n, total.ctypes.data, ptr(squares), count.ctypes.data,
                                ptr(packed), 0 if packed is None else packed.shape[1], ptr(correct))
        return
    v = values.astype(np.float32)
    bad = np.isnan(v)
    if bad.any():
        v = np.where(bad, np.float32(0), v)
    total += v.sum(axis=0, dtype=np.float64)
    if squares is not None:
        squares += np.square(v.astype(np.float64)).sum(axis=0)
    count += t - bad.sum(axis=0, dtype=np.int32)
    if packed is not None:
        c = np.unpackbits(np.asarray(packed, np.uint8), axis=1, count=n).astype(bool)
        correct += (c & ~bad).sum(axis=0, dtype=np.int32)


def forgetting_rows(packed, presence, n: int, last, ever, events, before, presentations) -> bool:
    """Advance forgetting state (see ForgettingAccumulator) over packed correctness rows (t,
    ceil(n/8)) and float16 presence rows (NaN: not presented; None: all presented), in C.
    Returns False (nothing done) where the C kernel is not built or the inputs do not fit it."""
    lib = _lib()
    if lib is None or (presence is not None and np.asarray(presence).dtype != np.float16):
        return False
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    if presence is not None:
        presence = np.ascontiguousarray(presence)
        if presence.shape != (len(packed), n):
            raise ValueError(f"presence rows {presence.shape}, correctness rows {packed.shape}")
    for a, dt in ((last, np.bool_), (ever, np.bool_), (events, np.int32), (before, np.int32), (presentations, np.int32)):
        if a.dtype != dt or not a.flags.c_contiguous or a.shape != (n,):
            raise ValueError(f"state must be a contiguous ({n},) {np.dtype(dt).name} array")
    lib.dyn_forgetting_rows(packed.ctypes.data, len(packed), packed.shape[1],
                            None if presence is None else presence.ctypes.data, n, n, last.ctypes.data,
                            ever.ctypes.data, events.ctypes.data, before.ctypes.data, presentations.ctypes.data)
    return True
