"""The two counts every correctness analysis is made of, in C where it was built, else numpy.

- RowCounts: per row (epoch), the set bits of a row, and of a row XOR another
  (stability, agreement).
- SampleCounts: per sample, in how many of the rows added its bit was set, of rows or of rows
  XOR others (misclassification ratio, flips, mismatch).

(and gather(), the bytes at scattered file offsets, for barcodes.)

Both take packed uint8 rows (T, ceil(n/8)) as the run file stores them. The C kernels
(analyze/_bits.c, built by setup.py when a C compiler is there) do each in one pass over
a chunk; ctypes lets go of the GIL during a call, so networks are counted in parallel
threads. The numpy implementation in analyze/bits.py gives the same results, slower
(benchmarks/README.md, "The numpy fallback"); it is the fallback, and the tests' second
implementation. DYN_KERNELS=numpy forces it.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.machinery
import os
import sys
from pathlib import Path

import numpy as np

from dyn.analyze import bits

VERSION = 1  # dyn_bits_version() of the analyze/_bits.c this file calls


def built(stem: str) -> Path | None:
    """The built C library `stem` (_bits, _half) beside this file; None where it is not built
    or DYN_KERNELS=numpy asks for numpy."""
    if os.environ.get("DYN_KERNELS", "").strip().lower() == "numpy":
        return None
    here = Path(__file__).resolve().parent
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        if (here / f"{stem}{suffix}").is_file():
            return here / f"{stem}{suffix}"
    return None


@functools.cache
def _lib():
    """The C kernels, or None (not built, built from another version, or DYN_KERNELS=numpy)."""
    path = built("_bits")
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(str(path))
        version = lib.dyn_bits_version()
    except (OSError, AttributeError):
        return None
    if version != VERSION:
        print(f"dyn: {path.name} was built from another dyn (kernels version {version}, not "
              f"{VERSION}); counting with numpy. `pip install -e .` rebuilds it.", file=sys.stderr)
        return None
    p, i, flag = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    lib.dyn_row_counts.argtypes = [p, i, p, i, flag, i, i, p, p]
    lib.dyn_row_counts.restype = None
    lib.dyn_vertical_add.argtypes = [p, i, i, p, i, p, i, flag, i, i]
    lib.dyn_vertical_add.restype = i
    lib.dyn_planes_to_counts.argtypes = [p, i, i, i, p]
    lib.dyn_planes_to_counts.restype = None
    if hasattr(lib, "dyn_gather"):
        lib.dyn_gather.argtypes = [flag, p, i, p]
        lib.dyn_gather.restype = i
    return lib


def backend() -> str:
    """'C' or 'numpy': what counts the bits in this process."""
    return "numpy" if _lib() is None else "C"


def gather(fd: int, offsets) -> bytes:
    """The bytes at the given file offsets (int64), one pread each; only those before the
    first offset past the end of the file."""
    offsets = np.ascontiguousarray(offsets, dtype=np.int64).ravel()
    lib = _lib()
    if lib is None or not hasattr(lib, "dyn_gather"):
        from dyn.analyze.fileio import read_at

        got = [read_at(fd, 1, o) for o in offsets.tolist()]
        return b"".join(got[:next((i for i, b in enumerate(got) if len(b) != 1), len(got))])
    out = np.empty(len(offsets), np.uint8)
    got = lib.dyn_gather(fd, offsets.ctypes.data, len(offsets), out.ctypes.data)
    return out[:got].tobytes()


def _rows(x: np.ndarray) -> np.ndarray:
    """x with contiguous bytes within a row (the row stride may be anything), as C reads it."""
    return x if x.strides[1] == 1 or x.shape[1] <= 1 else np.ascontiguousarray(x)


def _ptr(x: np.ndarray | None):
    return None if x is None else x.ctypes.data


def _check(a, b, n, successive):
    a = bits.check_rows(a, n)
    if b is not None:
        b = bits.check_rows(np.atleast_2d(b), n)
        want = (1, a.shape[1]) if successive else a.shape
        if b.shape != want:
            raise ValueError(f"rows to XOR with must be {want}; got {b.shape}")
    return a, b


def _pairs(a, b, successive):
    """The numpy path's (rows, rows to XOR with) pairs of equal length."""
    if not successive:
        return [(a, b)]
    return [(a[:1], b)] + ([(a[1:], a[:-1])] if len(a) > 1 else [])


class _XorWords:
    """numpy's path: uint64 words of a XOR b, block by block, in buffers reused from call to
    call (each block valid until the next)."""

    def __init__(self):
        self._wa, self._wb, self._x = bits.WordView(), bits.WordView(), None

    def blocks(self, a, b):
        i = 0
        for xa in bits.blocks(a):
            wa, wb = self._wa(xa), self._wb(b[i:i + len(xa)])
            if self._x is None or self._x.shape[0] < len(wa) or self._x.shape[1] != wa.shape[1]:
                self._x = np.empty_like(wa)
            yield np.bitwise_xor(wa, wb, out=self._x[:len(wa)])
            i += len(xa)


class RowCounts:
    """Per-row set bits among the first n samples: of rows a (ones), and of a XOR b (differ)
    where b holds rows of another network, or of each row XOR the row before it (successive)."""

    def __init__(self, n: int):
        self.n = int(n)
        self._words, self._xor = bits.WordView(), _XorWords()  # numpy's reused buffers

    def ones(self, a) -> np.ndarray:
        return self._count(a, None, False, True, False)[0]

    def differ(self, a, b) -> np.ndarray:
        """Per row t: set bits of a[t] XOR b[t]."""
        return self._count(a, b, False, False, True)[1]

    def successive(self, rows, before) -> tuple[np.ndarray, np.ndarray]:
        """(ones, differ) of rows, differ[t] counting rows[t] XOR rows[t - 1]; rows[-1] is `before`."""
        return self._count(rows, before, True, True, True)

    def _count(self, a, b, successive, want_ones, want_differ):
        a, b = _check(a, b, self.n, successive)
        t = len(a)
        ones = np.zeros(t, np.int64) if want_ones else None
        differ = np.zeros(t, np.int64) if want_differ else None
        if not t or not self.n:
            return ones, differ
        lib = _lib()
        if lib is not None:
            a = _rows(a)
            b = None if b is None else _rows(b)
            lib.dyn_row_counts(a.ctypes.data, a.strides[0], _ptr(b), 0 if b is None else b.strides[0],
                               int(successive), t, self.n, _ptr(ones), _ptr(differ))
            return ones, differ
        if want_ones:
            ones[:] = np.concatenate([bits.popcount(self._words(x), self.n) for x in bits.blocks(a)])
        if want_differ:
            i = 0
            for pa, pb in _pairs(a, b, successive):
                for x in self._xor.blocks(pa, pb):
                    differ[i:i + len(x)] = bits.popcount(x, self.n)
                    i += len(x)
        return ones, differ


class SampleCounts:
    """Per-sample count of set bits over every row added: of rows (add), of rows XOR another
    network's (add(a, b)), or of each row XOR the row before it (add_successive). Memory: a
    plane of n bits per bit of the largest count, whatever the number of rows."""

    def __init__(self, n: int):
        self.n = int(n)
        self.rows = 0
        self._planes = None  # C: (K, words) bit-sliced counts
        self._numpy = None   # numpy: bits.VerticalCounter and its XOR buffers

    def add(self, a, b=None) -> None:
        self._add(a, b, False)

    def add_successive(self, rows, before) -> None:
        """Adds rows[t] XOR rows[t - 1] for every t; rows[-1] is `before`."""
        self._add(rows, before, True)

    def counts(self) -> np.ndarray:
        """int64 (n,): for each sample, in how many added rows its bit was set."""
        if self._numpy is not None:
            return self._numpy[0].counts()
        if self._planes is None:
            return np.zeros(self.n, np.int64)
        planes = self._planes[:max(self.rows.bit_length(), 1)]
        if len(planes) > 16:  # counts past 16 bits: numpy's unpacking
            return bits.planes_to_counts(planes, self.n, self.rows)
        out = np.empty(self.n, np.int64)
        _lib().dyn_planes_to_counts(planes.ctypes.data, len(planes), planes.shape[1], self.n, out.ctypes.data)
        return out

    def _add(self, a, b, successive) -> None:
        a, b = _check(a, b, self.n, successive)
        if not len(a):
            return
        lib = _lib()
        if lib is None:
            if self._numpy is None:
                self._numpy = (bits.VerticalCounter(self.n), _XorWords())
            counter, xor = self._numpy
            if b is None:
                counter.add(a)
            for pa, pb in [] if b is None else _pairs(a, b, successive):
                for x in xor.blocks(pa, pb):
                    counter.add_words(x)
        else:
            self._add_c(lib, _rows(a), None if b is None else _rows(b), successive)
        self.rows += len(a)

    def _add_c(self, lib, a, b, successive) -> None:
        need = max(5, (self.rows + len(a)).bit_length() + 1)  # the kernel's own bound
        width = -(-bits.packed_width(self.n) // 8)
        if self._planes is None or len(self._planes) < need:
            grown = np.zeros((max(need, 2 * (0 if self._planes is None else len(self._planes))), width), np.uint64)
            if self._planes is not None:
                grown[:len(self._planes)] = self._planes
            self._planes = grown
        status = lib.dyn_vertical_add(self._planes.ctypes.data, len(self._planes), width, a.ctypes.data,
                                      a.strides[0], _ptr(b), 0 if b is None else b.strides[0], int(successive),
                                      len(a), a.shape[1])
        if status:  # cannot happen with `need` planes; never leave a wrong count unnoticed
            raise RuntimeError("dyn_vertical_add: too few planes")


class PreviousRow:
    """Rows fed chunk by chunk, each to be paired with the row before it.

    split(chunk) -> (head, rows, before): head is the very first row ever fed, which has no
    row before it (an empty slice afterwards); rows are the chunk's other rows and before
    (1, width) the row just before rows[0]. Valid until the next call; only a copy of the
    last row is kept between chunks.
    """

    def __init__(self):
        self.prev = None    # (1, width) copy of the last row fed
        self._spare = None  # the other buffer: `before` handed out may still be prev

    def split(self, chunk: np.ndarray):
        if not len(chunk):
            return chunk[:0], chunk, self.prev
        if self.prev is None:
            head, rows, before = chunk[:1], chunk[1:], chunk[:1]
        else:
            head, rows, before = chunk[:0], chunk, self.prev
        if self._spare is None or self._spare.shape[1] != chunk.shape[1]:
            self._spare = np.empty((1, chunk.shape[1]), np.uint8)
        self._spare[0] = chunk[-1]  # a copy: the caller may reuse the chunk's buffer
        self.prev, self._spare = self._spare, self.prev
        return head, rows, before
