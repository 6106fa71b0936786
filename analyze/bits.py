"""Packed-bit primitives for correctness matrices.

A run file stores, per network and split, one row of N bits per recorded epoch:
np.packbits(correct, axis=1) with numpy's default bit order 'big', so sample i is
bit (7 - i % 8) of byte i // 8, and the padding bits at the end of a row are 0.
Everything here works on such rows without unpacking them (1,000,000 samples
are 125 kB packed, 1 MB as booleans), and on uint64 views of them so that every
numpy call handles 64 samples per element.
"""

import numpy as np

from dyn.format import packed_width

# Reader chunks are split into blocks of at most this many bytes before any
# temporary is made: temporaries stay bounded and a block stays in cache.
BLOCK_BYTES = 4 << 20


def pack(correct) -> np.ndarray:
    """(..., N) booleans -> (..., ceil(N/8)) uint8, the run file's layout."""
    return np.packbits(np.asarray(correct, dtype=bool), axis=-1)


def unpack(packed, n: int) -> np.ndarray:
    """(..., ceil(n/8)) uint8 -> (..., n) bool; padding bits are dropped."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.shape[-1:] != (packed_width(n),):
        raise ValueError(f"expected uint8 rows of {packed_width(n)} bytes for {n} samples, "
                         f"got {packed.dtype} {packed.shape}")
    return np.unpackbits(packed, axis=-1, count=n).view(bool)


def check_rows(rows, n: int) -> np.ndarray:
    """The 2-D uint8 (T, ceil(n/8)) array every analysis takes, or ValueError."""
    rows = np.asarray(rows)
    if rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != packed_width(n):
        raise ValueError(f"expected packed rows uint8 (T, {packed_width(n)}) for {n} samples, "
                         f"got {rows.dtype} {rows.shape}")
    return rows


class WordView:
    """uint8 (T, packed_width) -> uint64 (T, ceil(packed_width/8)), reusing one buffer.

    A view when the row length is a multiple of 8 bytes and the rows are
    contiguous. Otherwise (5,000, 10,000 or 45,000 samples: most real splits)
    a zero-padded copy, so that all later work runs on 64 samples per element,
    which is cheaper than a uint8 path (bitwise_count per byte is several times
    slower per bit). The copy goes into a buffer kept for the next call: a
    fresh multi-MB array per chunk costs more in page faults than the copy
    itself; so a result is valid only until the next call. The extra padding
    bits are 0, and popcount() and counts ignore padding anyway.
    """

    def __init__(self):
        self._buf = None

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        t, nb = rows.shape
        if nb % 8 == 0 and rows.flags.c_contiguous:
            return rows.view(np.uint64)
        width = -(-nb // 8)
        if self._buf is None or self._buf.shape[0] < t or self._buf.shape[1] != width:
            self._buf = np.zeros((max(t, 1), width), np.uint64)
        out = self._buf[:t]
        out.view(np.uint8)[:, :nb] = rows  # bytes past nb stay 0 from allocation
        return out


def words(rows: np.ndarray) -> np.ndarray:
    """WordView()(rows) with a buffer of its own: see WordView."""
    return WordView()(rows)


def blocks(rows: np.ndarray, max_bytes: int = BLOCK_BYTES):
    """Consecutive row slices of `rows`, each at most max_bytes (at least one row)."""
    step = max(1, max_bytes // max(1, rows.shape[1] * rows.itemsize))
    for a in range(0, rows.shape[0], step):
        yield rows[a:a + step]


def popcount(rows: np.ndarray, n: int) -> np.ndarray:
    """Set bits among the first n samples of each row: int64 (T,).

    rows: packed uint8 (T, packed_width) or their uint64 words(). Padding bits are
    not trusted to be 0: the ones that are set are subtracted.
    """
    rows = np.asarray(rows)
    # uint32 sums are markedly faster than int64 and cannot overflow below 2**32 bits.
    acc = np.uint32 if rows.shape[1] * rows.itemsize * 8 < 2**32 else np.int64
    count = np.bitwise_count(rows).sum(axis=1, dtype=acc).astype(np.int64)
    b = rows.view(np.uint8)
    nb, pad = packed_width(n), 8 * packed_width(n) - n
    if pad and len(b):  # the low `pad` bits of the last real byte are padding
        count -= np.bitwise_count(b[:, nb - 1] & np.uint8((1 << pad) - 1)).astype(np.int64)
    if b.shape[1] > nb:  # whole padding bytes of a words() copy
        count -= np.bitwise_count(b[:, nb:]).sum(axis=1, dtype=np.int64)
    return count


def planes_to_counts(planes, n: int, rows: int) -> np.ndarray:
    """int64 (n,) counts from bit-sliced planes: plane k (uint64 words in the rows' byte
    layout) holds bit k of every sample's count; rows bounds the counts."""
    # The narrowest integer that holds the row count: int64 arithmetic on
    # 10**6 samples per plane would cost more than all the adding did.
    dt = next(d for d in (np.uint16, np.uint32, np.uint64) if rows < np.iinfo(d).max)
    out, tmp = np.zeros(n, dt), np.empty(n, dt)
    for k, plane in enumerate(planes):
        bits = np.unpackbits(np.ascontiguousarray(plane).view(np.uint8), count=n)
        np.left_shift(bits, k, out=tmp, dtype=dt)
        out += tmp
    return out.astype(np.int64)


class VerticalCounter:
    """Per-sample number of set bits over any number of packed rows.

    The count is kept bit-sliced, in carry-save form: at each weight 2**k a
    plane (one bit per sample, as uint64 words) plus at most one pending plane.
    Two rows entering at weight k go through one full adder with that weight's
    plane (5 word operations: sum stays, carry moves to weight k+1), as in
    Harley-Seal popcount. That is about 5 word operations per input row in all,
    on whole rows, and one plane more per doubling of the row count, so memory
    does not grow with the number of epochs. counts() unpacks only the planes.
    """

    def __init__(self, n: int):
        self.n = int(n)
        self.width = -(-packed_width(n) // 8)
        self.rows = 0
        self._acc = []       # _acc[k]: accumulated plane of weight 2**k
        self._pending = []   # _pending[k]: a plane of weight 2**k waiting for a partner
        self._free = []      # spare planes: allocating 125 kB arrays per row is slow
        self._tmp = np.empty(self.width, np.uint64)
        self._words = WordView()

    def add(self, rows) -> None:
        """Add packed uint8 rows (T, ceil(n/8)): each set bit counts one."""
        rows = check_rows(rows, self.n)
        for b in blocks(rows):
            self.add_words(self._words(b))

    def add_words(self, w: np.ndarray) -> None:
        """Add uint64 rows (T, width) as made by words(). Padding bits are ignored later."""
        if w.ndim != 2 or w.shape[1] != self.width or w.dtype != np.uint64:
            raise ValueError(f"expected uint64 (T, {self.width}), got {w.dtype} {w.shape}")
        t, i = len(w), 0
        self._level(0)
        if t and self._pending[0] is not None:
            p, self._pending[0] = self._pending[0], None
            self._adder(0, p, w[0], owned=(p,))
            i = 1
        while i + 1 < t:
            self._adder(0, w[i], w[i + 1], owned=())
            i += 2
        if i < t:
            p = self._take()
            p[...] = w[i]  # a copy: w may be the caller's reusable buffer
            self._pending[0] = p
        self.rows += t

    def counts(self) -> np.ndarray:
        """int64 (n,): for each sample, how many added rows had its bit set."""
        return planes_to_counts(self._binary(), self.n, self.rows)

    def _binary(self) -> list:
        # Ripple the pending planes into a copy of the accumulated ones: a few
        # word operations per plane, and then one unpack per bit of the count.
        planes = [a.copy() for a in self._acc]
        for k, p in enumerate(self._pending):
            if p is None:
                continue
            carry = p.copy()
            while carry.any():
                if k == len(planes):
                    planes.append(np.zeros(self.width, np.uint64))
                nxt = planes[k] & carry
                planes[k] ^= carry
                carry, k = nxt, k + 1
        return planes

    def _level(self, k: int) -> None:
        while len(self._acc) <= k:
            self._acc.append(np.zeros(self.width, np.uint64))
            self._pending.append(None)

    def _take(self) -> np.ndarray:
        return self._free.pop() if self._free else np.empty(self.width, np.uint64)

    def _adder(self, k: int, x, y, owned) -> None:
        # acc[k] + x + y  ->  acc[k] (sum) and a carry plane of weight k+1.
        while True:
            self._level(k + 1)
            a, t, c = self._acc[k], self._tmp, self._take()
            np.bitwise_xor(a, x, out=t)
            np.bitwise_and(a, x, out=c)
            np.bitwise_xor(t, y, out=a)
            np.bitwise_and(t, y, out=t)
            np.bitwise_or(c, t, out=c)
            self._free.extend(owned)
            p = self._pending[k + 1]
            if p is None:
                self._pending[k + 1] = c
                return
            self._pending[k + 1] = None
            k, x, y, owned = k + 1, p, c, (p, c)
