"""A network's packed correctness rows in chunks of epochs, read straight from the file.

Why not only h5py: h5py holds the GIL while it reads, so a read cannot overlap the bit
counting of another thread, and every read into a fresh array costs page faults on top of
the copy. Here the HDF5 chunks' file addresses come from HDF5 itself (H5Dchunk_iter), then
os.preadv copies their bytes into a few reused buffers (dyn.analyze.fileio: a seek and a read
where the platform has no preadv); preadv and numpy both release the GIL, so networks are
counted in parallel threads, and a thread can read the next chunk while the current one is
counted (feed() decides when that pays).

Used only where this is exact: chunks spanning whole rows, stored without filters, every
chunk of the window allocated, and the first chunk identical to h5py's read of it.
Anything else (compressed or column-split chunks, an odd file) goes through the reader,
Run.iter_correct_packed, with the same results.
"""

from __future__ import annotations

import os
import queue
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from dyn.analyze import fileio, kernels
from dyn.errors import RunFileError

READ_BYTES = 2 << 20  # per chunk handed out: 16 rows of 10**6 samples, whole groups for the C adder (measured)
AHEAD = 2             # chunks read ahead of the one being counted
READ_AHEAD = None     # None: as feed() decides; True/False: always/never (benchmarks compare)
PREAD_BYTES = 8192    # a 1-byte pread costs about as long as copying this many bytes (2 us; measured)

# {run: {(dataset name, lo, hi): chunk plan}}, gone with the run: see _chunk_plan
_PLANS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def chunks(run, split: str, net: str, lo: int, hi: int, read_bytes: int | None = None,
           ahead: bool | None = None):
    """Rows lo..hi-1 of `net`'s packed correctness on `split`, uint8 (t, ceil(N/8)) chunks in
    epoch order. A chunk is only valid until the next one is asked for (buffers are reused)."""
    read_bytes = READ_BYTES if read_bytes is None else read_bytes
    ahead = READ_AHEAD is not False if ahead is None else ahead
    ds = run.record_dataset(split, net, "correct")
    plan = _chunk_plan(run, ds, lo, hi)
    if plan is None:
        rows = max(1, read_bytes // max(ds.shape[1], 1))
        yield from run.iter_correct_packed(split, net, slice(lo, hi), chunk_rows=rows)
        return
    yield from _raw(run, ds, plan, lo, hi, read_bytes, ahead)


def _chunk_plan(run, ds, lo: int, hi: int):
    """{first row of an HDF5 chunk: file address} covering rows lo..hi-1, or None.

    Kept while the run is open for its next use (flips reads its barcodes from the chunks it
    counted): a written chunk does not move, it is only filled further."""
    plans = _PLANS.setdefault(run, {})
    key = (ds.name, lo, hi)
    if key not in plans:
        plans[key] = _find_chunks(run, ds, lo, hi)
    return plans[key]


def _find_chunks(run, ds, lo: int, hi: int):
    width = ds.shape[1]
    if (hi <= lo or ds.chunks is None or ds.chunks[1] != width or ds.dtype != np.uint8
            or not run.addresses_are_offsets
            or ds.id.get_create_plist().get_nfilters() != 0):
        return None
    crows = ds.chunks[0]
    plan = {}
    try:
        def take(info):
            r0 = info.chunk_offset[0]
            if info.filter_mask == 0 and info.size == crows * width and r0 + crows > lo and r0 < hi:
                plan[r0] = info.byte_offset
        ds.id.chunk_iter(take)
    except Exception:  # an HDF5 without chunk_iter, or anything unexpected: use h5py
        return None
    first = lo - lo % crows
    if any(r0 not in plan for r0 in range(first, hi, crows)):
        return None
    plan["crows"], plan["width"] = crows, width
    # Trust the addresses only if they give what HDF5 gives.
    probe = np.empty((min(hi, first + crows) - lo, width), np.uint8)
    try:
        with open(run.path, "rb", buffering=0) as fh:
            _read(fh.fileno(), plan, lo, probe)
    except (OSError, RunFileError):
        return None
    return plan if np.array_equal(probe, ds[lo:lo + len(probe)]) else None


def _read(fd: int, plan: dict, a: int, out: np.ndarray) -> None:
    """Rows a..a+len(out)-1 into out, one preadv per HDF5 chunk touched."""
    crows, width = plan["crows"], plan["width"]
    r, b = a, a + len(out)
    while r < b:
        r0 = r - r % crows
        end = min(b, r0 + crows)
        dest = memoryview(out[r - a:end - a]).cast("B")
        got = fileio.read_into(fd, dest, plan[r0] + (r - r0) * width)
        if got != len(dest):
            raise RunFileError(f"short read: {got} of {len(dest)} bytes at row {r}")
        r = end


def _raw(run, ds, plan, lo, hi, read_bytes, ahead):
    width, crows = plan["width"], plan["crows"]
    step = max(crows, read_bytes // width // crows * crows)  # whole HDF5 chunks per read
    bounds = []
    a = lo
    while a < hi:
        b = min(hi, (a - a % crows) + step)  # the first read may start mid-chunk
        bounds.append((a, b))
        a = b
    fd = fileio.open_binary(run.path)
    try:
        if not ahead or len(bounds) == 1:
            buf = np.empty((step, width), np.uint8)
            for a, b in bounds:
                _read(fd, plan, a, buf[:b - a])
                yield buf[:b - a]
        else:
            yield from _ahead(fd, plan, bounds, step, width)
    except RunFileError as e:
        raise RunFileError(f"{run.path}: reading {ds.name}: {e}") from None
    finally:
        os.close(fd)


def _ahead(fd, plan, bounds, step, width):
    free, full = queue.Queue(), queue.Queue()
    for _ in range(AHEAD + 1):
        free.put(np.empty((step, width), np.uint8))
    stop = threading.Event()

    def produce():
        try:
            for a, b in bounds:
                buf = free.get()
                if stop.is_set():
                    return
                _read(fd, plan, a, buf[:b - a])
                full.put((buf, b - a))
        except BaseException as e:  # handed to the consumer, raised there
            full.put(e)

    t = threading.Thread(target=produce, name="dyn-read-ahead", daemon=True)
    t.start()
    try:
        for _ in bounds:
            item = full.get()
            if isinstance(item, BaseException):
                raise item
            buf, n = item
            yield buf[:n]
            free.put(buf)
    finally:
        stop.set()
        free.put(np.empty((0, width), np.uint8))  # wakes a producer waiting for a buffer
        t.join()


def feed(run, split: str, nets, lo: int, hi: int, make) -> dict:
    """{net: [results]}: one streaming pass per network over rows lo..hi-1, networks in
    parallel threads; make(net) -> the accumulators to feed (each with add() and result()).

    Reading ahead only pays where a CPU would otherwise idle: with at least as many networks
    as threads, every CPU already reads or counts, and the hand-offs to a reader thread cost
    more than they save (measured: benchmarks/analyze_bench.py, "1 ahead" vs "1 plain").
    """
    nets = list(nets)
    ahead = len(nets) < workers() if READ_AHEAD is None else READ_AHEAD

    def one(net):
        accs = make(net)
        for c in chunks(run, split, net, lo, hi, ahead=ahead):
            for acc in accs:
                acc.add(c)
        return [acc.result() for acc in accs]

    return dict(zip(nets, map_parallel(one, nets)))


def aligned(iterators):
    """Zip chunk iterators of the same rows whose chunk lengths may differ: tuples of
    equal-length chunks. Each iterator is advanced only once its chunk is used up, so the
    views handed out stay valid until the next tuple is asked for."""
    its = [iter(i) for i in iterators]
    pending = [np.zeros((0, 0), np.uint8) for _ in its]
    while True:
        for i, it in enumerate(its):
            if not len(pending[i]):
                nxt = next(it, None)
                if nxt is None:
                    return
                pending[i] = nxt
        m = min(len(p) for p in pending)
        yield tuple(p[:m] for p in pending)
        pending = [p[m:] for p in pending]


def columns(run, split: str, net: str, lo: int, hi: int, cols) -> np.ndarray:
    """uint8 (hi-lo, len(cols)): the given byte columns of rows lo..hi-1 (cols sorted, unique).

    For barcodes: a few bytes per row. HDF5 reads whole chunks to pick bytes out of them, as
    much as reading every bit. Short rows are read whole all the same (10,000 samples: 1,250
    bytes a row); long ones a byte at a time, one pread at its address each (about 2 us, a
    page each; dyn.analyze.kernels.gather), which costs less once a row is longer than
    PREAD_BYTES per column.
    """
    cols = np.asarray(cols, dtype=np.int64)
    ds = run.record_dataset(split, net, "correct")
    if not len(cols) or hi <= lo:
        return np.zeros((max(hi - lo, 0), len(cols)), np.uint8)
    if ds.shape[1] <= PREAD_BYTES * len(cols):
        return np.concatenate([c[:, cols] for c in chunks(run, split, net, lo, hi, ahead=False)])
    plan = _chunk_plan(run, ds, lo, hi)
    if plan is None:
        return ds[lo:hi, cols]
    crows, width = plan["crows"], plan["width"]
    rows = np.arange(lo, hi)
    starts = np.array([plan[r0] for r0 in (rows - rows % crows).tolist()], np.int64) + (rows % crows) * width
    offsets = (starts[:, None] + cols[None, :]).ravel()
    fd = fileio.open_binary(run.path)
    try:
        got = kernels.gather(fd, offsets)
    finally:
        os.close(fd)
    if len(got) != len(offsets):
        raise RunFileError(f"{run.path}: reading {ds.name}: short read")
    return np.frombuffer(got, np.uint8).reshape(hi - lo, len(cols)).copy()


# ------------------------------------------------------------------ networks in parallel

def workers() -> int:
    """Threads for per-network passes: $DYN_WORKERS if set, else the CPUs this process may use."""
    env = os.environ.get("DYN_WORKERS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_parallel(fn, items, n_workers: int | None = None) -> list:
    """[fn(x) for x in items], in threads: numpy and the raw reads release the GIL."""
    items = list(items)
    n = min(len(items), n_workers or workers())
    if n <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, items))
