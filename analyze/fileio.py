"""Reading bytes at file offsets on every platform.

os.preadv and os.pread read at an offset without moving the file position, so threads can
share a descriptor; Windows has neither. There, the same bytes come from a seek and a read
under one lock (the position is shared), so the numbers are the same, only slower.
Descriptors are opened with O_BINARY where it exists (Windows would otherwise translate
line ends).
"""

from __future__ import annotations

import os
import threading

_SEEK = threading.Lock()


def open_binary(path) -> int:
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def read_into(fd: int, dest: memoryview, offset: int) -> int:
    """Bytes at `offset` into `dest` (a writable byte memoryview); how many were read (fewer
    only at the end of the file)."""
    preadv = getattr(os, "preadv", None)  # looked up per call: absent on Windows (and in tests)
    if preadv is not None:
        return preadv(fd, [dest], offset)
    pread = getattr(os, "pread", None)
    n = 0
    while n < len(dest):
        if pread is not None:
            got = pread(fd, len(dest) - n, offset + n)
        else:
            with _SEEK:
                os.lseek(fd, offset + n, os.SEEK_SET)
                got = os.read(fd, len(dest) - n)
        if not got:
            break
        dest[n:n + len(got)] = got
        n += len(got)
    return n


def read_at(fd: int, size: int, offset: int) -> bytes:
    """`size` bytes at `offset` (fewer at the end of the file)."""
    buf = bytearray(size)
    return bytes(buf[:read_into(fd, memoryview(buf), offset)])
