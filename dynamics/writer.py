"""Appending epochs to a run file, safely against SIGKILL and with live readers.

Usage, from any training loop::

    layout = Layout(networks=[Network.sgd(), Network.ema(0.999)],
                    splits={"val": Split(labels=y_val)}, params=table, metrics=["lr"])
    with RunWriter.create("runs/x.h5", layout, config={...}) as w:
        for epoch in ...:
            w.append(epoch, metrics={"lr": lr},
                     evals={"val": {"sgd": Eval(correct=c0), "ema-0.999": Eval(correct=c1)}},
                     weights={"sgd": (p0, b0), "ema-0.999": (p1, b1)})
        w.finish()

How it stays safe (docs/format.md, "Crash safety"): the layout is created in a temporary
file and renamed into place; every stream (metrics, weights, each split) counts its committed
rows in /status; an append writes its rows, flushes, then bumps /status and flushes again.
Readers read nothing past the counters. On reopening, rows past the counters (an append cut
short by a kill) are dropped. SWMR mode keeps the metadata consistent at every moment and
lets readers follow the live file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import h5py
import numpy as np

from .build import RESUME_SLOTS, build
from .errors import DiskFull, DynError, RunFileError, short_error
from .faults import test_point as _test_point
from .format import FORMAT_NAME, FORMAT_VERSION, STATE_CODES, packed_width, split_stream
from .fs import check_writable, fsync, megabytes, room, swmr_supported
from .layout import Layout
from .lock import WriterLock
from .safeio import close_hdf5, open_hdf5, staged, sweep
from .superblock import repair

# Room kept free beyond what an append's datasets can allocate: HDF5 metadata (chunk indexes,
# object headers, free-space aggregators) grows too.
SLACK_BYTES = 1 << 20
# Writers whose file HDF5 itself failed on (not a failed write: those the GuardedFile absorbs,
# see safeio): closing it flushes, and a flush after such a failure can crash libhdf5.
BROKEN: set = set()


@dataclass
class Eval:
    """One network's record on one split at one epoch.

    `correct`: bool (N,) (packed here), or `packed`: uint8 (ceil(N/8),) already packed with
    np.packbits (bit order "big"). `predicted` (N,) ints and `loss` (N,) floats are optional, as
    are `prob` (N,) (softmax probability of the true class) and `margin` (N,) (true-class logit
    minus the largest other logit); a value the split records but the Eval lacks is stored as
    -1 (predicted) or NaN.
    """

    correct: np.ndarray | None = None
    packed: np.ndarray | None = None
    predicted: np.ndarray | None = None
    loss: np.ndarray | None = None
    prob: np.ndarray | None = None
    margin: np.ndarray | None = None

    @property
    def accuracy(self) -> float:
        """The fraction of `correct` (NaN for no samples)."""
        return float(self.correct.mean()) if len(self.correct) else float("nan")

    @property
    def mean_loss(self) -> float:
        return float(self.loss.mean()) if len(self.loss) else float("nan")


class RunWriter:
    """The single writer of one run file. Create with `create` (new run) or `resume`."""

    def __init__(self, path: Path, lock: WriterLock, swmr: bool | None, durable: bool):
        self.path = path
        self._lock = lock
        self.durable = durable
        self.swmr = swmr_supported(path) if swmr is None else swmr
        self._reported = False
        try:
            repair(path)  # a killed writer leaves the write flags set; we hold the lock
            _test_point("open: repaired")
            if self.swmr:  # SWMR needs HDF5's own file driver: room is checked before each append
                self.f = h5py.File(path, "r+", libver="latest", locking=False)
            else:  # through a GuardedFile: a failed write (full disk) never reaches HDF5 (safeio)
                self.f = open_hdf5(path, "r+", libver="latest")
        except OSError as e:
            lock.release()
            raise RunFileError(f"{path}: cannot be opened for writing ({short_error(e)})") from None
        try:
            self._load()
        except Exception:
            close_hdf5(self.f)
            lock.release()
            raise
        _test_point("open: shrunk")
        if self.swmr:
            self.f.swmr_mode = True
        self._handles()  # after the switch to SWMR: handles taken before it go stale
        _test_point("open: ready")

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, path, layout: Layout, config: Mapping | None = None, *, overwrite: bool = False,
               swmr: bool | None = None, durable: bool = True) -> "RunWriter":
        """Create a new run file holding `layout` (refuses an existing file unless `overwrite`)."""
        path = Path(path)
        check_writable(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = WriterLock(path).acquire()
        try:
            if path.exists() and not overwrite:
                raise RunFileError(f"{path}: already exists; refusing to overwrite a run")
            if path.is_dir():
                raise RunFileError(f"{path}: is a directory")
            with staged(path, what="creating the run file") as (tmp, _):
                f = open_hdf5(tmp, "w", name=path, libver="latest")
                try:
                    build(f, layout, dict(config or {}))
                    f.flush()
                    f.guard.check("creating the run file")
                finally:
                    close_hdf5(f)
                _test_point("create: built")
        except BaseException:
            lock.release()
            raise
        return cls(path, lock, swmr, durable)

    @staticmethod
    def repair(path) -> bool:
        """Make a run whose writer died (killed, or stopped by a failed write) readable again:
        under the writer lock, clear HDF5's write flags and reconcile its end address with the
        file's size. True when it needed it. Resume does the same before it appends."""
        path = Path(path)
        lock = WriterLock(path).acquire()
        try:
            return repair(path)
        finally:
            lock.release()

    @classmethod
    def resume(cls, path, *, swmr: bool | None = None, durable: bool = True) -> "RunWriter":
        """Reopen an existing run to append to it (after a kill, a stop, or to add records)."""
        path = Path(path)
        if not path.is_file():
            raise RunFileError(f"{path}: no such run file to resume")
        lock = WriterLock(path).acquire()
        sweep(path)  # temporaries of creations killed before their rename
        return cls(path, lock, swmr, durable)

    def _load(self) -> None:
        f = self.f
        if f.attrs.get("format") != FORMAT_NAME:
            raise RunFileError(f"{self.path}: not a dyn run file")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise RunFileError(f"{self.path}: format version {version}, this dyn writes {FORMAT_VERSION}")
        self.fields = json.loads(f["status"].attrs["fields"])
        self.status = dict(zip(self.fields, (int(v) for v in f["status"][...])))
        self.config = json.loads(f.attrs.get("config", "{}"))
        self.networks = list(f["networks"])
        self.splits = list(f["splits"]) if "splits" in f else []
        self.metric_columns = json.loads(f["metrics"].attrs["columns"])
        self.has_weights = "weights" in f
        # Drop rows that an interrupted append wrote past the committed counters.
        for stream, datasets in self._streams().items():
            n = self.status[f"rows/{stream}"]
            for ds in datasets:
                if ds.shape[0] != n:
                    ds.resize(n, axis=0)
        self._last = {s: self._last_epoch(s) for s in self._streams()}

    def _handles(self) -> None:
        """Every dataset an append writes, looked up once."""
        f = self.f
        self._status_ds = f["status"]
        self._metrics = _Rows(f["metrics"])
        self._split_size = {s: int(f[f"splits/{s}"].attrs["size"]) for s in self.splits}
        self._split_epoch = {s: _Rows(f[f"splits/{s}/epoch"]) for s in self.splits}
        # A split may hold records of some networks only (Split.networks, e.g. train-presented).
        self._split_nets = {s: [n for n in self.networks if n in f[f"splits/{s}"]] for s in self.splits}
        self._evals = {(s, n): {k: _Rows(ds) for k, ds in f[f"splits/{s}/{n}"].items()}
                       for s in self.splits for n in self._split_nets[s]}
        if self.has_weights:
            self._weight_epoch = _Rows(f["weights/epoch"])
            self._weights = {n: {k: _Rows(ds) for k, ds in f[f"networks/{n}"].items()} for n in self.networks}

    def _streams(self) -> dict[str, list[h5py.Dataset]]:
        f = self.f
        streams = {"metrics": [f["metrics"]], "weights": []}
        if self.has_weights:
            streams["weights"] = [f["weights/epoch"]] + [
                f[f"networks/{n}/{k}"] for n in self.networks for k in ("params", "buffers")
                if k in f[f"networks/{n}"]]
        for s in self.splits:
            g = f[f"splits/{s}"]
            streams[split_stream(s)] = [g["epoch"]] + [g[n][k] for n in self.networks if n in g for k in g[n]]
        return streams

    def _last_epoch(self, stream: str) -> int | None:
        n = self.status[f"rows/{stream}"]
        if n == 0:
            return None
        if stream == "metrics":
            return int(self.f["metrics"][n - 1, 0])
        ds = self.f["weights/epoch"] if stream == "weights" else self.f[f"{stream.replace('split/', 'splits/')}/epoch"]
        return int(ds[n - 1])

    # ------------------------------------------------------------------ state
    def rows(self, stream: str) -> int:
        return self.status[f"rows/{stream}"]

    def last_epoch(self, stream: str = "metrics") -> int | None:
        """Last committed epoch of a stream ("metrics", "weights" or "split/<name>")."""
        return self._last[stream]

    @property
    def state(self) -> str:
        from .format import STATES
        return STATES[self.status["state"]]

    def resume_state(self) -> tuple[int, bytes] | None:
        """(epoch, bytes) of the last committed resume state, or None."""
        if self.status["resume_epoch"] < 0:
            return None
        ds = self.f[RESUME_SLOTS[self.status["resume_slot"]]]
        return self.status["resume_epoch"], ds[: self.status["resume_size"]].tobytes()

    # ----------------------------------------------------------------- append
    def append(self, epoch: int, *, metrics: Mapping[str, float] | None = None,
               evals: Mapping[str, Mapping[str, Eval]] | None = None,
               weights: Mapping[str, tuple] | None = None, resume: bytes | None = None) -> None:
        """Write one epoch's records (any subset of streams) and commit them together."""
        epoch = int(epoch)
        writes = []  # (dataset, row, value): validated in full before anything is written
        bumps = {}
        if metrics is not None:
            row = np.full(len(self.metric_columns), np.nan)
            row[0] = epoch
            for k, v in metrics.items():
                if k not in self.metric_columns:
                    raise ValueError(f"metric {k!r} is not a column of this run ({self.metric_columns[1:]})")
                row[self.metric_columns.index(k)] = np.nan if v is None else float(v)
            self._check_epoch("metrics", epoch)
            writes.append((self._metrics, row))
            bumps["metrics"] = 1
        for split, records in (evals or {}).items():
            if split not in self.splits:
                raise ValueError(f"split {split!r} is not in this run ({self.splits})")
            stream = split_stream(split)
            self._check_epoch(stream, epoch)
            n = self._split_size[split]
            missing = set(self._split_nets[split]) - set(records)
            if missing:
                raise ValueError(f"split {split!r}: no record for networks {sorted(missing)}")
            writes.append((self._split_epoch[split], epoch))
            for net, rec in records.items():
                if net not in self.networks:
                    raise ValueError(f"network {net!r} is not in this run ({self.networks})")
                if net not in self._split_nets[split]:
                    raise ValueError(f"network {net!r} has no records on split {split!r} "
                                     f"(it holds {self._split_nets[split]})")
                writes += _eval_rows(self._evals[split, net], rec, n, f"{split}/{net}")
            bumps[stream] = 1
        if weights is not None:
            if not self.has_weights:
                raise ValueError("this run was created without a parameter table: it records no weights")
            self._check_epoch("weights", epoch)
            missing = set(self.networks) - set(weights)
            if missing:
                raise ValueError(f"weights: none given for networks {sorted(missing)}")
            writes.append((self._weight_epoch, epoch))
            for net, pb in weights.items():
                params, buffers = pb
                ds = self._weights[net]
                writes.append((ds["params"], _vector(params, ds["params"], f"{net} params")))
                if "buffers" in ds:
                    writes.append((ds["buffers"], _vector(buffers, ds["buffers"], f"{net} buffers")))
            bumps["weights"] = 1

        slot = blob = None
        if resume is not None:
            slot = 1 - self.status["resume_slot"] if self.status["resume_epoch"] >= 0 else 0
            blob = np.frombuffer(bytes(resume), dtype=np.uint8)
        self._check_room(epoch, writes, slot, blob)
        where = f"epoch {epoch} ({', '.join(bumps) or 'resume'})"
        _test_point(f"{where}: writing")
        try:
            for i, (rows, value) in enumerate(writes):
                if i == len(writes) // 2:
                    _test_point(f"{where}: half written")
                rows.append(value)
            if blob is not None:
                ds = self.f[RESUME_SLOTS[slot]]
                if ds.shape[0] < len(blob):
                    ds.resize(len(blob), axis=0)
                ds[: len(blob)] = blob
                self.status.update(resume_slot=slot, resume_epoch=epoch, resume_size=len(blob))
            self.f.flush()  # data first ...
            self._check(f"recording epoch {epoch}")  # never a counter after a failed write
            _test_point(f"{where}: flushed")
            for stream in bumps:
                self.status[f"rows/{stream}"] += 1
                self._last[stream] = epoch
            self._commit()  # ... then the counters that make it visible
            self._check(f"recording epoch {epoch}")
        except (OSError, RuntimeError) as e:
            self._break(e, epoch)
        _test_point(f"{where}: committed")

    def _check_room(self, epoch: int, writes: list, slot: int | None, blob: np.ndarray | None) -> None:
        """Refuse, before writing anything, an append that the disk or RLIMIT_FSIZE cannot hold.

        A write that fails half-way leaves HDF5 with a superblock that points past the end of
        the file, and the committed epochs unreadable; so we never start one we cannot finish.
        """
        need = SLACK_BYTES + sum(rows.new_chunk_bytes() for rows, _ in writes)
        if blob is not None:
            ds = self.f[RESUME_SLOTS[slot]]
            need += max(0, len(blob) - ds.shape[0]) + ds.chunks[0] * ds.dtype.itemsize
        free, where = room(self.path)
        if need > free:
            last = self._last.get("metrics")
            kept = f"epochs up to {last}" if last is not None else "no epochs yet"
            self.finish("stopped")  # an in-place write of /status: allocates nothing
            why = f"it needs about {megabytes(need)} and {where} leaves {megabytes(max(free, 0))}"
            e = DiskFull(f"{self.path}: not enough room to record epoch {epoch}: {why}; the run keeps {kept} and "
                         f"is resumable once there is room")
            e.why = why
            raise e

    def _check(self, what: str) -> None:
        """Raise a write that failed (the disk or ulimit -f full) as one line; from the failure
        on nothing reached the file, so it holds what a kill at that moment would leave."""
        guard = getattr(self.f, "guard", None)
        if guard is not None and guard.error is not None and not self._reported:
            self._reported = True
            last = self._last.get("metrics")
            kept = (f"the run keeps epochs up to {last} and is resumable" if last is not None
                    else "the run holds no epochs yet and is resumable")
            guard.check(what, kept=kept)

    def _break(self, error: BaseException, epoch: int) -> None:
        BROKEN.add(self)
        last = self._last.get("metrics")
        raise DynError(f"{self.path}: writing epoch {epoch} failed ({short_error(error)}); the file holds epochs "
                       f"up to {last} as committed, but HDF5 may have left it damaged") from None

    def _check_epoch(self, stream: str, epoch: int) -> None:
        last = self._last.get(stream)
        if last is not None and epoch <= last:
            raise ValueError(f"{stream}: epoch {epoch} is not after the last recorded epoch {last}")

    def _commit(self) -> None:
        self._check("recording the run's state")
        self._status_ds[...] = np.array([self.status[k] for k in self.fields], dtype=np.int64)
        self.f.flush()
        self._check("recording the run's state")
        if self.durable:
            fsync(self.path)

    def extend(self, epochs: int) -> None:
        """Reopen a complete (or stopped) run to train on to `epochs`: the stored config's
        `epochs` becomes `epochs`, the epoch it ended at goes to `extended_from`, and the state
        is running again. Before SWMR only (attributes cannot change under it)."""
        if self.swmr and self.f.swmr_mode:
            raise RuntimeError("extend() before switching to SWMR: open with swmr=False")
        last = self.last_epoch("metrics")
        cfg = {**self.config, "epochs": int(epochs),
               "extended_from": [*self.config.get("extended_from", []), last]}
        self.f.attrs["config"] = json.dumps(cfg, default=str)
        self.config = cfg
        self.status["state"] = STATE_CODES["running"]
        self._commit()

    def finish(self, state: str = "complete", diverged_epoch: int | None = None) -> None:
        """Mark the run complete, diverged (at `diverged_epoch`) or stopped (resumable)."""
        self.status["state"] = STATE_CODES[state]
        if diverged_epoch is not None:
            self.status["diverged_epoch"] = int(diverged_epoch)
        self._commit()

    def close(self) -> None:
        try:
            if self not in BROKEN and getattr(self, "f", None) is not None:
                close_hdf5(self.f)  # a failed closing write is held by the GuardedFile, not fatal
        finally:
            self._lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------------- appending
# The optional per-sample records of a split, and what stands for an unknown value.
OPTIONAL_RECORDS = (("predicted", -1), ("loss", np.nan), ("prob", np.nan), ("margin", np.nan))


def _eval_rows(ds: dict, rec, n: int, where: str) -> list:
    if isinstance(rec, Mapping):
        rec = Eval(**rec)
    if rec.packed is not None:
        packed = np.asarray(rec.packed, dtype=np.uint8).reshape(-1)
        if packed.shape != (packed_width(n),):
            raise ValueError(f"{where}: packed correctness has {packed.size} bytes, expected {packed_width(n)}")
        packed = packed.copy()
        if n % 8:
            packed[-1] &= (0xFF << (8 - n % 8)) & 0xFF  # padding bits are 0 by definition
    elif rec.correct is not None:
        correct = np.asarray(rec.correct).reshape(-1)
        if correct.shape != (n,):
            raise ValueError(f"{where}: correctness has {correct.size} samples, the split has {n}")
        packed = np.packbits(correct.astype(bool))
    else:
        raise ValueError(f"{where}: no correctness given")
    out = [(ds["correct"], packed)]
    for key, fill in OPTIONAL_RECORDS:
        value = getattr(rec, key)
        if key in ds:
            if value is None:
                value = np.full(n, fill)
            value = np.asarray(value).reshape(-1)
            if value.shape != (n,):
                raise ValueError(f"{where}: {key} has {value.size} samples, the split has {n}")
            with np.errstate(over="ignore", invalid="ignore"):  # a diverging loss beyond float32 is stored as inf
                out.append((ds[key], value.astype(ds[key].dtype)))
    return out


def _vector(x, rows: "_Rows", what: str) -> np.ndarray:
    x = np.asarray(x, dtype=rows.dtype).reshape(-1)
    if x.shape != rows.row_shape:
        raise ValueError(f"{what}: {x.size} values, the parameter table says {rows.row_shape[0]}")
    return x


class _Rows:
    """A dataset that grows one row per epoch, with what appending needs looked up once.

    Through h5py's high-level API, the lookups and property reads of an epoch's ~40 appends
    cost ~150 ms (measured), far more than the writes; here an append is set_extent and one
    hyperslab write on the low-level id.
    """

    def __init__(self, ds: h5py.Dataset):
        self.id = ds.id
        self.rows = ds.shape[0]
        self.row_shape = tuple(ds.shape[1:])
        self.dtype = ds.dtype
        self.chunk_rows = ds.chunks[0]
        across = -(-int(np.prod(self.row_shape, dtype=np.int64)) // int(np.prod(ds.chunks[1:], dtype=np.int64)))
        self.chunk_bytes = int(np.prod(ds.chunks)) * ds.dtype.itemsize * max(across, 1)
        self._memory = h5py.h5s.create_simple((1,) + self.row_shape)

    def new_chunk_bytes(self) -> int:
        """Bytes of the chunks that appending one row allocates (0 inside an existing chunk)."""
        return 0 if self.rows % self.chunk_rows else self.chunk_bytes

    def append(self, value) -> None:
        n = self.rows
        self.id.set_extent((n + 1,) + self.row_shape)
        space = self.id.get_space()
        space.select_hyperslab((n,) + (0,) * len(self.row_shape), (1,) + self.row_shape)
        row = np.ascontiguousarray(value, dtype=self.dtype).reshape((1,) + self.row_shape)
        self.id.write(self._memory, space, row)
        self.rows = n + 1
