"""Names, version and storage choices of the run file, format v1 (see docs/format.md).

Everything a writer and a reader must agree on lives here, and nothing else.
"""

from __future__ import annotations

import math

FORMAT_NAME = "dyn-run"
FORMAT_VERSION = 1

# Run state, stored in /status. "running" with no live writer means interrupted (resumable).
STATES = {0: "running", 1: "complete", 2: "diverged", 3: "stopped"}
STATE_CODES = {v: k for k, v in STATES.items()}

# Fixed fields of /status; then one "rows/<stream>" field per stream (see `status_fields`).
BASE_FIELDS = ["state", "diverged_epoch", "resume_slot", "resume_epoch", "resume_size"]

BITORDER = "big"  # np.packbits' default: sample i is bit (7 - i % 8) of byte i // 8.

# Chunks of about this many bytes: big enough to read fast, small enough that tiny runs
# stay tiny (a chunk is allocated whole).
CHUNK_BYTES = 256 * 1024
MAX_CHUNK_ROWS = 256
# Weights: one row (epoch) per chunk, at most this many elements (4 MiB of float32).
WEIGHT_CHUNK_ELEMS = 1 << 20


def ema_name(decay: float) -> str:
    """Network name of the EMA with this decay: `ema-0.9995` (shortest round-trip repr)."""
    return f"ema-{float(decay)!r}"


def split_stream(split: str) -> str:
    return f"split/{split}"


def status_fields(splits: list[str]) -> list[str]:
    streams = ["metrics", "weights"] + [split_stream(s) for s in splits]
    return BASE_FIELDS + [f"rows/{s}" for s in streams]


def packed_width(n: int) -> int:
    """Bytes per packed correctness row for n samples."""
    return (int(n) + 7) // 8


def row_chunks(row_elems: int, itemsize: int) -> tuple[int, int]:
    """Chunk shape (rows, columns) for an (epochs, row_elems) dataset appended row by row."""
    cols = min(max(row_elems, 1), max(1, 4 * CHUNK_BYTES // itemsize))  # a row spans <= 1 MiB chunks
    rows = max(1, min(MAX_CHUNK_ROWS, CHUNK_BYTES // (cols * itemsize)))
    return rows, cols


def weight_chunk(n: int) -> int:
    """Columns of a (1, C) weight chunk: C divides n where a divisor is near the target."""
    if n <= WEIGHT_CHUNK_ELEMS:
        return max(n, 1)
    k = math.ceil(n / WEIGHT_CHUNK_ELEMS)
    for parts in range(k, 4 * k + 1):
        if n % parts == 0:
            return n // parts
    return math.ceil(n / k)


def predicted_dtype(num_classes: int | None) -> str:
    return "int16" if (num_classes or 0) <= 32767 else "int32"
