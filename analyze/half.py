"""The training-dynamics passes over epochs of float16 records (prob, margin) and packed
correctness: per-example sums with NaN skipped (data map, AUM) and forgetting events, in C where
analyze/_half.c was built (well under 1 ns a value), else numpy (~3.5 ns a value for the float16
conversion alone). The numpy path is the fallback and the tests' second implementation;
DYN_KERNELS=numpy forces it."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import sys
import threading

import numpy as np

from dyn.analyze.kernels import built

VERSION = 2
KEEP = 4  # scratch buffers a thread keeps for its next pass


class _Scratch(threading.local):
    def __init__(self):
        self.free = []  # uint8 buffers this thread holds but is not using


_scratch = _Scratch()


@contextlib.contextmanager
def scratch(shape, dtype):
    """An uninitialised array that this thread reuses from one network's pass to the next: at
    ImageNet's size every array is ~10 MB of fresh pages otherwise, ~0.1 s per 50 MB on a loaded
    machine. Valid inside the with block; a thread keeps its KEEP largest buffers."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    free = _scratch.free
    fits = [i for i, b in enumerate(free) if b.nbytes >= nbytes]
    buf = free.pop(min(fits, key=lambda i: free[i].nbytes)) if fits else np.empty(max(nbytes, 1), np.uint8)
    try:
        yield buf[:nbytes].view(dtype).reshape(shape)
    finally:
        free.append(buf)
        free.sort(key=lambda b: b.nbytes)
        del free[:-KEEP]


@functools.cache
def _lib():
    path = built("_half")
    if path is None or sys.byteorder != "little":  # the forgetting words are read as little-endian
        return None
    p, i = ctypes.c_void_p, ctypes.c_int64
    try:  # a build from another dyn (other version, a kernel missing): numpy instead
        lib = ctypes.CDLL(str(path))
        if lib.dyn_half_version() != VERSION:
            return None
        lib.dyn_half_accumulate.argtypes = [p, i, i, i, p, p, p, p, i, p]
        lib.dyn_half_accumulate.restype = None
        lib.dyn_forgetting_words.argtypes = [p, i, i, p, i, p, i, i, i, p, p, p, p, i, p]
        lib.dyn_forgetting_words.restype = None
        lib.dyn_half_simd.argtypes = [ctypes.c_int]
        lib.dyn_planes_counts.argtypes = [p, i, i, p]
        lib.dyn_planes_counts.restype = None
        lib.dyn_argsort_f64.argtypes = [p, i, p, p, p, p, p, p]
        lib.dyn_argsort_f64.restype = None
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


def forgetting_words(packed, presence, shown, n: int, row0: int, last, ever, events, presented, first) -> bool:
    """Advance ForgettingAccumulator's state (see analyze/_half.c) over packed correctness rows
    (t, ceil(n/8)), which examples were presented coming from float16 `presence` rows (NaN: not
    presented) or packed `shown` rows (or neither: all presented). In C; False (nothing done)
    where the C kernel is not built."""
    lib = _lib()
    if lib is None:
        return False
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    for rows, what in ((presence, "presence"), (shown, "presented")):
        if rows is not None and len(rows) != len(packed):
            raise ValueError(f"{len(rows)} rows of {what}, {len(packed)} of correctness")
    if presence is not None:
        presence = np.ascontiguousarray(presence, dtype=np.float16)
    if shown is not None:
        shown = np.ascontiguousarray(shown, dtype=np.uint8)
    words, k = events.shape
    for a, dt, shape in ((last, np.uint64, (words,)), (ever, np.uint64, (words,)), (events, np.uint64, (words, k)),
                         (presented, np.uint64, (words, k)), (first, np.int32, (n,))):
        if a.dtype != dt or not a.flags.c_contiguous or a.shape != shape:
            raise ValueError(f"state must be a contiguous {shape} {np.dtype(dt).name} array")
    ptr = lambda a: None if a is None else a.ctypes.data  # noqa: E731
    lib.dyn_forgetting_words(packed.ctypes.data, len(packed), packed.shape[1], ptr(presence), n, ptr(shown),
                             0 if shown is None else shown.shape[1], n, row0, last.ctypes.data, ever.ctypes.data,
                             events.ctypes.data, presented.ctypes.data, k, first.ctypes.data)
    return True


def planes_counts(planes, n: int) -> np.ndarray | None:
    """int32 (n,) counts of forgetting_words' bit-sliced planes (words, k); None without C."""
    lib = _lib()
    if lib is None:
        return None
    planes = np.ascontiguousarray(planes, dtype=np.uint64)
    out = np.empty(n, np.int32)
    lib.dyn_planes_counts(planes.ctypes.data, planes.shape[1], n, out.ctypes.data)
    return out


def stable_order(values) -> np.ndarray:
    """np.argsort(values, kind="stable") of floats (NaN last), by a radix sort in C where
    built (numpy's timsort takes ~4x as long on a million)."""
    return _stable(values, ranks=False)


def stable_ranks(values) -> np.ndarray:
    """1-based ranks in that order: ranks[stable_order(values)] = 1, 2, ..."""
    return _stable(values, ranks=True)


def _stable(values, ranks: bool) -> np.ndarray:
    x = np.ascontiguousarray(values, dtype=np.float64)
    lib = _lib()
    if lib is None or x.ndim != 1 or len(x) >= 1 << 31:
        order = np.argsort(x, kind="stable")
        if not ranks:
            return order
        out = np.empty(len(x), np.int64)
        out[order] = np.arange(1, len(x) + 1)
        return out
    out = np.empty(len(x), np.int64)
    with scratch((2, len(x)), np.uint64) as keys, scratch((2, len(x)), np.int32) as idx:
        lib.dyn_argsort_f64(x.ctypes.data, len(x), None if ranks else out.ctypes.data,
                            out.ctypes.data if ranks else None, keys[0].ctypes.data, keys[1].ctypes.data,
                            idx[0].ctypes.data, idx[1].ctypes.data)
    return out
