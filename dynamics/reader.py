"""Reading run files lazily: numpy arrays and pandas frames, only what was committed.

`open_run(path)` opens a run in SWMR read mode without locks, so it works on a run that is
still being written (it sees the epochs complete when it opened; `refresh()` follows), on a
run whose writer was killed, and on a read-only path. Every problem with the file becomes
one `RunFileError` line naming the file and what is wrong (the structural checks: dyn.validate).
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from . import validate
from .errors import RunFileError, short_error
from .hdf5 import open_run_file
from .format import STATES, split_stream
from .lock import writer_alive
from .validate import as_text

READ_BYTES = 32 << 20  # bytes per read when streaming correctness bits

# What a failure while reading each per-sample record is said to interrupt.
READING = {"correct": "reading correctness bits", "predicted": "reading predictions", "loss": "reading losses",
           "prob": "reading true-class probabilities", "margin": "reading margins"}


def open_run(path: str | os.PathLike) -> "Run":
    """Open a run file for reading. Raises RunFileError with a one-line reason."""
    return Run(path)


def _guard(what: str):
    """Turn HDF5/numpy failures while reading `what` into a one-line RunFileError."""

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(self, *args, **kwargs):
            try:
                return fn(self, *args, **kwargs)
            except RunFileError:
                raise
            except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError, MemoryError) as e:
                raise RunFileError(f"{self.path}: {what}: {short_error(e)}") from None

        return wrapper

    return deco


class Run:
    """A run file opened for reading. Use as a context manager, or call `close()`."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._network_info: dict[str, dict] = {}
        self.f = open_run_file(self.path)
        try:
            s = validate.check_structure(self.f, self.path)
            self.format_version, self.config = s.format_version, s.config
            self._fields, self.metric_columns = s.status_fields, s.metric_columns
            self.networks: list[str] = s.networks
            self.splits: list[str] = s.splits
            self.refresh()
        except RunFileError:
            self.f.close()
            raise
        except Exception as e:  # any other surprise in a damaged file
            self.f.close()
            raise RunFileError(f"{self.path}: damaged run file: {short_error(e)}") from None

    # ------------------------------------------------------------ structure
    @_guard("reading /status")
    def refresh(self) -> "Run":
        """Re-read the commit counters: a live run shows the epochs completed since."""
        st = self.f["status"]
        if self._swmr:
            st.refresh()
        self._status = dict(zip(self._fields, (int(v) for v in st[...])))
        validate.check_committed_rows(self.f, self.path, self._status, self.networks, self.splits, self._swmr)
        return self

    @property
    def _swmr(self) -> bool:
        return bool(getattr(self.f, "swmr_mode", False))

    def rows(self, stream: str) -> int:
        """Committed rows of a stream: "metrics", "weights" or "split/<name>"."""
        return self._status[f"rows/{stream}"]

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> str:
        """complete, diverged, stopped, running (a live writer, or possibly live where the
        platform cannot tell: see writer_alive) or interrupted (killed)."""
        s = STATES.get(self._status["state"], "unknown")
        if s == "running" and self.writer_alive is False:
            return "interrupted"
        return s

    @property
    def writer_alive(self) -> bool | None:
        """Whether a process writes this run; None where the platform has no file locks and
        a writer's lock file is there (possibly live, possibly killed)."""
        return writer_alive(self.path)

    @property
    def diverged_epoch(self) -> int | None:
        e = self._status["diverged_epoch"]
        return None if e < 0 else e

    @property
    def resumable(self) -> bool:
        return self.state in ("interrupted", "stopped") and self._status["resume_epoch"] >= 0

    @_guard("reading the resume state")
    def resume_state(self) -> tuple[int, bytes] | None:
        if self._status["resume_epoch"] < 0:
            return None
        ds = self.f[f"resume/slot{self._status['resume_slot']}"]
        if self._swmr:
            ds.refresh()
        return self._status["resume_epoch"], ds[: self._status["resume_size"]].tobytes()

    # -------------------------------------------------------------- networks
    @_guard("reading a network's attributes")
    def network_info(self, name: str) -> dict:
        # Fixed when the run is created; read once (an attribute read costs ~0.5 ms, and
        # choosing networks asks for each one many times).
        if name not in self._network_info:
            self._check_net(name)
            self._network_info[name] = validate.network_info(self.path, name, self.f[f"networks/{name}"].attrs)
        return dict(self._network_info[name])

    def decay(self, name: str) -> float | None:
        return self.network_info(name)["decay"]

    @_guard("reading a network's records")
    def network_values(self, net: str, key: str) -> np.ndarray | None:
        """A dataset of `net` with one row per weight record besides params and buffers (a
        derived network's `residual`, `l1`, `coefficients`: docs/format.md), committed rows
        only; None where the network has none."""
        self._check_net(net)
        ds = self.f[f"networks/{net}"].get(key)
        if ds is None:
            return None
        n = self.rows("weights")
        return validate.check_holds_rows(self.path, validate.check_is_dataset(self.path, ds), n)[:n]

    def _check_net(self, name: str) -> None:
        if name not in self.networks:
            raise RunFileError(f"{self.path}: no network {name!r} (networks: {', '.join(self.networks)})")

    def _check_split(self, split: str) -> h5py.Group:
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise RunFileError(f"{self.path}: no split {split!r} (splits: {have})")
        return self.f[f"splits/{split}"]

    # ---------------------------------------------------------------- splits
    @_guard("reading a split")
    def split_size(self, split: str) -> int:
        """N, the split's samples: its `size` attribute, which its labels must agree with."""
        return validate.split_size(self.path, split, self._check_split(split))

    @_guard("reading a split")
    def num_classes(self, split: str) -> int:
        return validate.num_classes(self.path, split, self._check_split(split))

    @_guard("reading a split")
    def augmentation(self, split: str) -> str | None:
        """How the split's inputs were transformed before evaluation: its `augmentation`
        attribute ("none" for clean images), or None where the file does not say (older runs)."""
        return as_text(self._check_split(split).attrs.get("augmentation"))

    def split_source(self, split: str) -> str | None:
        """Where the split's records come from (its `source` attribute, e.g. "training forward
        pass" on train-presented), or None where the file does not say."""
        return as_text(self._check_split(split).attrs.get("source"))

    @_guard("reading labels")
    def labels(self, split: str, samples=None) -> np.ndarray:
        """The true class of every sample, or of `samples` (indices) only."""
        return self._per_sample(split, "labels", "iu", samples)

    @_guard("reading dataset indices")
    def dataset_index(self, split: str, samples=None) -> np.ndarray:
        return self._per_sample(split, "index", "iu", samples)

    @_guard("reading images")
    def images(self, split: str, samples=None) -> np.ndarray | None:
        if not self.has_images(split):
            return None
        return self._per_sample(split, "images", "u", samples, ndim=4)

    @_guard("reading a split")
    def has_images(self, split: str) -> bool:
        """Whether the split keeps its input images."""
        return "images" in self._check_split(split)

    @_guard("reading a split")
    def recorded_networks(self, split: str) -> list[str]:
        """The networks with records on `split`, in the run's order: a derived network that was
        not evaluated there has none (docs/format.md)."""
        g = self._check_split(split)
        return [n for n in self.networks if n in g]

    def _per_sample(self, split: str, key: str, kinds: str, samples, ndim: int = 1) -> np.ndarray:
        """A per-sample dataset of the split, checked to hold one entry per sample; all of it, or
        the entries of `samples` (indices, in their order)."""
        n = self.split_size(split)
        ds = validate.check_per_sample(self.path, self._check_split(split)[key], n, ndim, kinds)
        if samples is None:
            return ds[...]
        samples = np.asarray(samples, dtype=np.int64)
        if not len(samples):
            return ds[:0]
        if samples.min() < 0 or samples.max() >= n:
            raise IndexError(f"sample indices outside 0..{n - 1}")
        rows, where = np.unique(samples, return_inverse=True)  # h5py reads increasing indices
        return ds[rows][where]

    @_guard("reading epochs")
    def epochs(self, split: str) -> np.ndarray:
        """Epochs with a correctness record on `split` (epoch 0 = the initial weights)."""
        g = self._check_split(split)
        ds = validate.check_dataset(self.path, g["epoch"], 1, "iu", "epochs")
        return ds[: self.rows(split_stream(split))].astype(np.int64)

    def _split_ds(self, split: str, net: str, key: str) -> h5py.Dataset:
        g = self._check_split(split)
        self._check_net(net)
        if net not in g:
            raise RunFileError(f"{self.path}: network {net!r} has no records on split {split!r} "
                               f"(a derived network that was not evaluated)")
        if key not in g[net]:
            raise RunFileError(f"{self.path}: split {split!r} has no {key} records for {net!r}")
        ds = validate.check_is_dataset(self.path, g[net][key])
        if self._swmr:
            ds.refresh()
        return validate.check_holds_rows(self.path, ds, self.rows(split_stream(split)))

    def record_dataset(self, split: str, net: str, key: str) -> h5py.Dataset:
        """The dataset behind `net`'s `key` records on `split` ("correct", "predicted", "loss",
        "prob", "margin"), refreshed and checked (shape, dtype, committed rows) as the method
        of that name checks it, for a reader that reads it its own way (raw chunk reads).
        Rows past rows(split_stream(split)) are not committed."""
        if key not in READING:
            raise ValueError(f"no record {key!r}; one of {', '.join(READING)}")
        return _guard(READING[key])(Run._record_dataset)(self, split, net, key)

    def _record_dataset(self, split: str, net: str, key: str) -> h5py.Dataset:
        ds = self._split_ds(split, net, key)
        return validate.check_record(self.path, ds, key, self.split_size(split))

    def _rows_slice(self, split: str, rows: slice | None) -> slice:
        n = self.rows(split_stream(split))
        return slice(*(rows or slice(None)).indices(n))

    @_guard(READING["correct"])
    def correct_packed(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Packed correctness, uint8 (epochs, ceil(N/8)), bit order big (np.packbits)."""
        ds = self._record_dataset(split, net, "correct")
        r = self._rows_slice(split, rows)
        return ds[r.start:r.stop]

    def iter_correct_packed(self, split: str, net: str, rows: slice | None = None,
                            chunk_rows: int | None = None) -> Iterator[np.ndarray]:
        """Packed correctness in chunks of epochs, in order: memory independent of epochs."""
        r = self._rows_slice(split, rows)
        if chunk_rows is None:
            ds = self._split_ds(split, net, "correct")
            step = (ds.chunks or (1,))[0]
            chunk_rows = max(step, READ_BYTES // max(ds.shape[1], 1) // step * step)
        for a in range(r.start, r.stop, chunk_rows):
            yield self.correct_packed(split, net, slice(a, min(a + chunk_rows, r.stop)))

    def correct(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Correctness as bool (epochs, N): True where the top-1 prediction was right."""
        n = self.split_size(split)
        return np.unpackbits(self.correct_packed(split, net, rows), axis=1, count=n).astype(bool)

    @_guard(READING["predicted"])
    def predicted(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        r = self._rows_slice(split, rows)
        return self._record_dataset(split, net, "predicted")[r.start:r.stop]

    @_guard(READING["loss"])
    def loss(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        r = self._rows_slice(split, rows)
        return self._record_dataset(split, net, "loss")[r.start:r.stop]

    @_guard(READING["prob"])
    def prob(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Softmax probability of the true class, float32 (epochs, N); NaN where unknown."""
        r = self._rows_slice(split, rows)
        return self._record_dataset(split, net, "prob")[r.start:r.stop].astype(np.float32)

    @_guard(READING["margin"])
    def margin(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """True-class logit minus the largest other logit, float32 (epochs, N); NaN where unknown."""
        r = self._rows_slice(split, rows)
        return self._record_dataset(split, net, "margin")[r.start:r.stop].astype(np.float32)

    def has(self, split: str, net: str, key: str) -> bool:
        return (split in self.splits and net in self.networks and net in self.f[f"splits/{split}"]
                and key in self.f[f"splits/{split}/{net}"])

    def accuracy(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Accuracy per recorded epoch, counted from the correctness bits."""
        n = self.split_size(split)
        counts = [np.bitwise_count(c).sum(axis=1) for c in self.iter_correct_packed(split, net, rows)]
        total = np.concatenate(counts) if counts else np.zeros(0, np.int64)
        return total / n if n else np.full(len(total), np.nan)

    # --------------------------------------------------------------- metrics
    @_guard("reading /metrics")
    def metrics(self):
        """The per-epoch metrics table as a pandas DataFrame (committed rows only)."""
        import pandas as pd

        ds = self.f["metrics"]
        if self._swmr:
            ds.refresh()
        data = ds[: self.rows("metrics")]
        df = pd.DataFrame(data, columns=self.metric_columns)
        if "epoch" in df:
            df["epoch"] = df["epoch"].astype(np.int64)
        return df

    # --------------------------------------------------------------- weights
    @property
    def records_weights(self) -> bool:
        """Whether the run was set up to record weights, with records yet or not (has_weights:
        at least one)."""
        return "weights" in self.f

    @property
    def has_weights(self) -> bool:
        return self.records_weights and self.rows("weights") > 0

    @_guard("reading weight epochs")
    def weight_epochs(self) -> np.ndarray:
        if not self.records_weights:
            return np.zeros(0, np.int64)
        ds = validate.check_dataset(self.path, self.f["weights/epoch"], 1, "iu", "epochs")
        if self._swmr:
            ds.refresh()
        return ds[: self.rows("weights")].astype(np.int64)

    @functools.cached_property
    def param_rows(self) -> np.ndarray:
        """The parameter table as a numpy structured array (no pandas needed), checked: its
        tensors fill every network's params and buffers rows exactly."""
        if "weights" not in self.f:
            raise RunFileError(f"{self.path}: this run records no weights")
        try:
            ds = self.f["weights/table"]
            if not isinstance(ds, h5py.Dataset):
                raise ValueError("/weights/table is not a dataset")
            fields = ds.dtype.fields or {}
            kinds = {"name": "S", "shape": "S", "kind": "S", "dtype": "S", "offset": "iu", "size": "iu"}
            bad = [k for k, v in kinds.items() if k not in fields or fields[k][0].kind not in v]
            if ds.ndim != 1 or bad:
                raise ValueError(f"shape {ds.shape}, fields {', '.join(bad) or 'ok'} missing or of the wrong type")
            if ds.shape[0] > 1 << 24:
                raise ValueError(f"{ds.shape[0]:,} rows")
            t = ds[...]
            for kind, key in ((b"param", "params"), (b"buffer", "buffers")):
                mine = t["kind"] == kind
                off, size = t["offset"][mine].astype(np.int64), t["size"][mine].astype(np.int64)
                if (off < 0).any() or (size < 0).any():
                    raise ValueError(f"a negative {kind.decode()} offset or size")
                off, size = off.astype(object), size.astype(object)  # Python ints: no overflow
                total = int(size.sum())
                end = int((off + size).max()) if len(off) else 0
                for net in self.networks:
                    rows = self.f[f"networks/{net}"].get(key)
                    if rows is None:
                        continue
                    if not isinstance(rows, h5py.Dataset) or rows.ndim != 2:
                        raise ValueError(f"/networks/{net}/{key} is not a table of rows")
                    width = rows.shape[1]
                    if total != width or end > width:
                        raise ValueError(f"its {kind.decode()} tensors hold {total:,} values up to offset "
                                         f"{end:,}; /networks/{net}/{key} rows hold {width:,}")
            if not np.isin(t["kind"], [b"param", b"buffer"]).all():
                raise ValueError("a kind other than param or buffer")
            return t
        except (KeyError, ValueError, TypeError, OSError, RuntimeError, MemoryError) as e:
            raise RunFileError(f"{self.path}: damaged parameter table: {short_error(e)}") from None

    @functools.cached_property
    def param_table(self):
        """name, shape, kind, dtype, offset, size of every state_dict tensor (a DataFrame)."""
        import pandas as pd

        t = self.param_rows
        try:
            return pd.DataFrame({
                "name": [x.decode() for x in t["name"]],
                "shape": [tuple(json.loads(x)) for x in t["shape"]],
                "kind": [x.decode() for x in t["kind"]],
                "dtype": [x.decode() for x in t["dtype"]],
                "offset": t["offset"].astype(np.int64),
                "size": t["size"].astype(np.int64),
            })
        except (ValueError, TypeError, UnicodeDecodeError) as e:
            raise RunFileError(f"{self.path}: damaged parameter table: {short_error(e)}") from None

    def _weight_row(self, epoch: int) -> int:
        ep = self.weight_epochs()
        i = int(np.searchsorted(ep, epoch))
        if i >= len(ep) or ep[i] != epoch:
            shown = ", ".join(map(str, ep[:8])) + (", ..." if len(ep) > 8 else "")
            raise RunFileError(f"{self.path}: no weights recorded at epoch {epoch} "
                               f"(recorded: {shown or 'none'})")
        return i

    @_guard("reading weights")
    def params(self, net: str, epoch: int) -> np.ndarray:
        """Flattened float32 parameters of `net` at `epoch`."""
        self._check_net(net)
        return self._weights_ds(net, "params")[self._weight_row(epoch)]

    @_guard("reading weights")
    def buffers(self, net: str, epoch: int) -> np.ndarray:
        """Flattened buffers (BatchNorm statistics, float64) of `net` at `epoch`."""
        self._check_net(net)
        g = self.f[f"networks/{net}"]
        if "buffers" not in g:
            return np.zeros(0, np.float64)
        return self._weights_ds(net, "buffers")[self._weight_row(epoch)]

    def _weights_ds(self, net: str, key: str) -> h5py.Dataset:
        if not self.records_weights or key not in self.f[f"networks/{net}"]:
            raise RunFileError(f"{self.path}: no weights recorded for {net!r}")
        ds = self.f[f"networks/{net}/{key}"]
        self.param_rows  # noqa: B018 (checks every network's rows against the table)
        validate.check_dataset(self.path, ds, 2, "f", key)
        if self._swmr:
            ds.refresh()
        return ds

    def iter_params(self, net: str, epochs=None, buffers=False) -> Iterator[tuple[int, np.ndarray]]:
        """(epoch, flat weights) one recorded epoch at a time; buffers appended if asked: True
        for all of them, or an index array for those positions of the buffers row."""
        for e in (self.weight_epochs() if epochs is None else epochs):
            p = self.params(net, int(e))
            if buffers is False or buffers is None:
                yield int(e), p
                continue
            b = self.buffers(net, int(e))
            if buffers is not True:
                keep = np.asarray(buffers, np.int64)
                if len(keep) and int(keep.max()) >= len(b):  # the table lists buffers the rows lack
                    raise RunFileError(f"{self.path}: {net} at epoch {e}: the parameter table lists buffer values "
                                       f"up to {int(keep.max()) + 1:,}, the file holds {len(b):,}")
                b = b[keep]
            yield int(e), np.concatenate([p, b])

    def state_dict(self, net: str, epoch: int) -> dict[str, np.ndarray]:
        """The state_dict of `net` at `epoch`, as numpy arrays in their original dtypes.

        For torch: `{k: torch.from_numpy(v) for k, v in run.state_dict(...).items()}`.
        """
        params, buffers = self.params(net, epoch), self.buffers(net, epoch)
        out = {}
        for row in self.param_table.itertuples():
            src = params if row.kind == "param" else buffers
            flat = src[row.offset:row.offset + row.size]
            try:
                dtype = np.dtype(row.dtype)
            except TypeError:  # e.g. bfloat16, which numpy lacks: keep the stored float
                dtype = flat.dtype
            out[row.name] = flat.astype(dtype).reshape(row.shape)
        return out

    # ----------------------------------------------------------------- misc
    @property
    def dyn_version(self) -> str | None:
        """The version of dyn that created the file."""
        return as_text(self.f.attrs.get("dyn_version"))

    @property
    def created(self) -> str | None:
        """When the file was created (ISO 8601, UTC)."""
        return as_text(self.f.attrs.get("created"))

    @property
    def file_size(self) -> int:
        return self.path.stat().st_size

    @property
    def addresses_are_offsets(self) -> bool:
        """Whether HDF5's addresses in this file are byte offsets into the file at `path` (the
        plain sec2 driver, no user block): then a chunk's bytes can be read there directly."""
        return self.f.driver == "sec2" and self.f.userblock_size == 0

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<dyn run {self.path} {self.state}, networks {self.networks}, splits {self.splits}>"
