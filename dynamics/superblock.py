"""Repair of an HDF5 superblock left behind by a killed writer.

A killed SWMR writer leaves the superblock's "open for (SWMR) write" flags set, and the
end-of-file address it records may be older than the data already on disk. HDF5 then refuses
to open the file for writing. `h5clear --status --increment=0` fixes both; this module does
the same in Python so that resuming needs no HDF5 command-line tools. (`h5clear -s` alone is
harmful: it keeps the stale end address, and a resumed writer can overwrite live data.)

Only superblock versions 2 and 3 (libver "latest", which dyn writes) carry these flags and a
checksum; older versions are left alone. Call only while holding the writer lock: it proves
that no writer is alive.
"""

from __future__ import annotations

import os
import struct

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, the checksum HDF5 puts on its metadata."""
    n = len(data)
    a = b = c = (0xDEADBEEF + n + initval) & _MASK
    i = 0
    while n > 12:
        a = (a + int.from_bytes(data[i:i + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[i + 4:i + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[i + 8:i + 12], "little")) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK
        n -= 12
        i += 12
    if n == 0:
        return c
    tail = data[i:i + n] + bytes(12 - n)  # zero bytes add nothing
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + int.from_bytes(tail[8:12], "little")) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK
    a ^= c; a = (a - _rot(c, 11)) & _MASK
    b ^= a; b = (b - _rot(a, 25)) & _MASK
    c ^= b; c = (c - _rot(b, 16)) & _MASK
    a ^= c; a = (a - _rot(c, 4)) & _MASK
    b ^= a; b = (b - _rot(a, 14)) & _MASK
    c ^= b; c = (c - _rot(b, 24)) & _MASK
    return c


class Superblock:
    """The fields of a version 2/3 superblock that a repair touches."""

    def __init__(self, raw: bytes, offset: int):
        self.offset = offset
        self.version = raw[8]
        self.size_of_offsets = raw[9]
        o = self.size_of_offsets
        self.length = 12 + 4 * o + 4
        self.raw = bytearray(raw[: self.length])
        self.flags = raw[11]
        self.eof_pos = 12 + 2 * o
        self.eof = int.from_bytes(raw[self.eof_pos:self.eof_pos + o], "little")
        self.checksum = struct.unpack_from("<I", raw, self.length - 4)[0]

    def checksum_ok(self) -> bool:
        return lookup3(bytes(self.raw[:-4])) == self.checksum

    def cleared(self, file_size: int) -> bytes:
        """This superblock as `h5clear --status --increment=0` leaves it: no write flags, the
        end-of-file address at least the file's real end, the checksum to match."""
        raw = bytearray(self.raw)
        raw[11] = 0
        new_eof = max(self.eof, file_size - self.offset)
        raw[self.eof_pos:self.eof_pos + self.size_of_offsets] = new_eof.to_bytes(self.size_of_offsets, "little")
        struct.pack_into("<I", raw, self.length - 4, lookup3(bytes(raw[:-4])))
        return bytes(raw)


def read_superblock(path: str | os.PathLike) -> Superblock | None:
    """The v2/v3 superblock of `path`, or None for older versions or a non-HDF5 file."""
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048, 4096):
            f.seek(offset)
            raw = f.read(64)
            if raw[:8] == SIGNATURE:
                if len(raw) < 12 or raw[8] not in (2, 3):
                    return None
                return Superblock(raw, offset)
    return None


def repair(path: str | os.PathLike) -> bool:
    """Clear the write flags and move the end-of-file address to the real file size.

    Returns True when the file needed a repair. Safe on a cleanly closed file (no-op).
    """
    sb = read_superblock(path)
    if sb is None or not sb.checksum_ok():
        return False
    size = os.path.getsize(path)
    if sb.flags == 0 and max(sb.eof, size - sb.offset) == sb.eof and size >= sb.offset + sb.eof:
        return False
    raw = sb.cleared(size)
    with open(path, "r+b") as f:
        if size < sb.offset + sb.eof and sb.flags != 0:
            # Only a file its writer had open (flags set), never a copy cut short. A write that failed (disk or ulimit -f full) left the file shorter than the space
            # HDF5 had allocated for the unfinished epoch, past the commit counter: give it back
            # as zeros so HDF5 opens the file; resume then shrinks every dataset to the counter.
            f.truncate(sb.offset + sb.eof)
        f.seek(sb.offset)
        f.write(raw)
        f.flush()
        os.fsync(f.fileno())
    return True
