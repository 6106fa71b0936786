"""Reading run files lazily: numpy arrays and pandas frames, only what was committed.

`open_run(path)` opens a run in SWMR read mode without locks, so it works on a run that is
still being written (it sees the epochs complete when it opened; `refresh()` follows), on a
run whose writer was killed, and on a read-only path. Every problem with the file becomes
one `RunFileError` line naming the file and what is wrong.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from .errors import RunFileError, short_error
from .hdf5 import open_run_file
from .format import BASE_FIELDS, FORMAT_NAME, FORMAT_VERSION, STATES, packed_width, split_stream
from .lock import writer_alive

READ_BYTES = 32 << 20  # bytes per read when streaming correctness bits


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
        self.f = open_run_file(self.path)
        try:
            self._validate()
        except RunFileError:
            self.f.close()
            raise
        except Exception as e:  # any other surprise in a damaged file
            self.f.close()
            raise RunFileError(f"{self.path}: damaged run file: {short_error(e)}") from None

    # ------------------------------------------------------------ structure
    def _check_links(self) -> None:
        """A run file holds its own data, and dyn writes only hard links. HDF5 follows a link
        into another file silently (to whatever file the name finds), and a link to nothing
        reads as a missing object while `name in group` says it is there: both are damage.
        (One H5Lvisit over the file: under a millisecond.)"""
        other = []
        self.f.id.links.visit(lambda name, info: other.append(name) if info.type != h5py.h5l.TYPE_HARD else None,
                              info=True)
        for name in other:
            path = "/" + name.decode() if isinstance(name, bytes) else "/" + name
            link = self.f.get(path, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise RunFileError(f"{self.path}: damaged run file: {path} links into another file "
                                   f"({link.filename}); a run file holds its own data")
            try:
                target = self.f.get(path)
            except Exception:  # a loop of links, or any other link HDF5 cannot resolve
                target = None
            if target is None:
                raise RunFileError(f"{self.path}: damaged run file: {path} is a link to nothing "
                                   f"({getattr(link, 'path', link)})")

    def _validate(self) -> None:
        f, p = self.f, self.path
        fmt = _text(f.attrs.get("format"))
        if fmt != FORMAT_NAME:
            raise RunFileError(f"{p}: an HDF5 file, but not a dyn run file (format attribute {fmt!r})")
        try:
            self.format_version = int(f.attrs.get("format_version"))
        except (TypeError, ValueError):
            raise RunFileError(f"{p}: format_version attribute is missing or not an integer") from None
        if self.format_version > FORMAT_VERSION:
            raise RunFileError(f"{p}: format version {self.format_version} is newer than this dyn "
                               f"reads ({FORMAT_VERSION}); upgrade dyn")
        if self.format_version < 1:
            raise RunFileError(f"{p}: invalid format version {self.format_version}")
        try:
            self.config = json.loads(_text(f.attrs.get("config", "{}")))
        except json.JSONDecodeError:
            raise RunFileError(f"{p}: config attribute is not valid JSON") from None
        if not isinstance(self.config, dict):
            raise RunFileError(f"{p}: config attribute is not a JSON object")
        self._check_links()
        for name in ("status", "metrics", "networks"):
            if name not in f:
                raise RunFileError(f"{p}: damaged run file: /{name} is missing")
        st = f["status"]
        try:
            self._fields = json.loads(_text(st.attrs["fields"]))
        except (KeyError, json.JSONDecodeError):
            raise RunFileError(f"{p}: damaged run file: /status has no valid 'fields' attribute") from None
        if (not isinstance(st, h5py.Dataset) or st.ndim != 1 or st.dtype.kind != "i"  # signed: -1 is "none"
                or not isinstance(self._fields, list) or len(self._fields) != st.shape[0]):
            raise RunFileError(f"{p}: damaged run file: /status has the wrong shape or type")
        missing = [k for k in BASE_FIELDS if k not in self._fields]
        if missing:
            raise RunFileError(f"{p}: damaged run file: /status lacks {', '.join(missing)}")
        for name in ("networks", "splits"):
            if name in f and not isinstance(f[name], h5py.Group):
                raise RunFileError(f"{p}: damaged run file: /{name} is not a group")
        self.networks: list[str] = list(f["networks"])
        self.splits: list[str] = list(f["splits"]) if "splits" in f else []
        for name in [f"networks/{n}" for n in self.networks] + [f"splits/{s}" for s in self.splits]:
            if not isinstance(f.get(name), h5py.Group):
                raise RunFileError(f"{p}: damaged run file: /{name} is not a group")
        m = f["metrics"]
        self.metric_columns = json.loads(_text(m.attrs["columns"]))
        if (not isinstance(self.metric_columns, list) or not all(isinstance(c, str) for c in self.metric_columns)
                or m.ndim != 2 or len(self.metric_columns) != m.shape[1]):
            raise RunFileError(f"{p}: damaged run file: /metrics does not match its columns")
        self.refresh()

    @_guard("reading /status")
    def refresh(self) -> "Run":
        """Re-read the commit counters: a live run shows the epochs completed since."""
        st = self.f["status"]
        if self._swmr:
            st.refresh()
        self._status = dict(zip(self._fields, (int(v) for v in st[...])))
        for stream in ["metrics", "weights"] + [split_stream(s) for s in self.splits]:
            n = self._status.get(f"rows/{stream}")
            if n is None or n < 0:
                raise RunFileError(f"{self.path}: damaged run file: no valid row count for {stream}")
            for ds in self._stream_datasets(stream):
                if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
                    raise RunFileError(f"{self.path}: damaged run file: {ds.name} is not a dataset of rows")
                if self._swmr:
                    ds.refresh()
                if ds.shape[0] < n:
                    raise RunFileError(f"{self.path}: damaged run file: {ds.name} holds {ds.shape[0]} "
                                       f"rows, {n} were committed (truncated?)")
        return self

    def _stream_datasets(self, stream: str) -> list[h5py.Dataset]:
        f = self.f
        if stream == "metrics":
            return [f["metrics"]]
        if stream == "weights":
            if "weights" not in f:
                return []
            return [f["weights/epoch"]] + [f[f"networks/{n}/params"] for n in self.networks]
        g = f[f"splits/{stream[len('split/'):]}"]
        # a derived network (docs/format.md) may have no records on a split
        return [g["epoch"]] + [g[n]["correct"] for n in self.networks if n in g]

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

    def _check_ds(self, ds: h5py.Dataset, ndim: int, kinds: str, what: str, width: int | None = None,
                  length: int | None = None) -> h5py.Dataset:
        """`ds` itself, or a RunFileError when its rank, dtype kind, row width or length is not
        what the format says (checked from metadata, before any read)."""
        if not isinstance(ds, h5py.Dataset):
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} is not a dataset")
        if (ds.ndim != ndim or ds.dtype.kind not in kinds or (width is not None and ds.shape[1] != width)
                or (length is not None and ds.shape[0] != length)):
            want = [f"{ndim}-d", {"iu": "integer", "f": "float", "u": "unsigned"}.get(kinds, kinds)]
            want += [f"{length} rows"] if length is not None else []
            want += [f"{width} columns"] if width is not None else []
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} has shape {ds.shape} {ds.dtype}, "
                               f"expected {', '.join(want)} ({what})")
        return ds

    # -------------------------------------------------------------- networks
    @_guard("reading a network's attributes")
    def network_info(self, name: str) -> dict:
        # Fixed when the run is created; read once (an attribute read costs ~0.5 ms, and
        # choosing networks asks for each one many times).
        cache = self.__dict__.setdefault("_network_info", {})
        if name not in cache:
            cache[name] = self._read_network_info(name)
        return dict(cache[name])

    def _read_network_info(self, name: str) -> dict:
        self._check_net(name)
        a = self.f[f"networks/{name}"].attrs
        kind, decay = a.get("kind", "other"), a.get("decay", np.nan)
        if not isinstance(_scalar(kind), (str, bytes)):
            raise RunFileError(f"{self.path}: damaged run file: /networks/{name} has a 'kind' that is not a string")
        decay = _number(decay)
        if decay is None:
            raise RunFileError(f"{self.path}: damaged run file: /networks/{name} has a 'decay' that is not a number")
        return {"name": name, "kind": _text(kind), "decay": None if np.isnan(decay) else decay}

    def decay(self, name: str) -> float | None:
        return self.network_info(name)["decay"]

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
        g = self._check_split(split)
        n = _count(g.attrs.get("size"))
        if n is None:
            raise RunFileError(f"{self.path}: damaged run file: /splits/{split} has no valid 'size' attribute")
        labels = g.get("labels")
        if isinstance(labels, h5py.Dataset) and labels.shape != (n,):
            raise RunFileError(f"{self.path}: damaged run file: /splits/{split} says {n} samples, its labels "
                               f"have shape {labels.shape}")
        return n

    @_guard("reading a split")
    def num_classes(self, split: str) -> int:
        n = _count(self._check_split(split).attrs.get("num_classes", 0))
        if n is None:
            raise RunFileError(f"{self.path}: damaged run file: /splits/{split} has an invalid 'num_classes'")
        return n

    @_guard("reading a split")
    def augmentation(self, split: str) -> str | None:
        """How the split's inputs were transformed before evaluation: its `augmentation`
        attribute ("none" for clean images), or None where the file does not say (older runs)."""
        return _text(self._check_split(split).attrs.get("augmentation"))

    def split_source(self, split: str) -> str | None:
        """Where the split's records come from (its `source` attribute, e.g. "training forward
        pass" on train-presented), or None where the file does not say."""
        return _text(self._check_split(split).attrs.get("source"))

    @_guard("reading labels")
    def labels(self, split: str, samples=None) -> np.ndarray:
        """The true class of every sample, or of `samples` (indices) only."""
        return self._per_sample(split, "labels", "iu", samples)

    @_guard("reading dataset indices")
    def dataset_index(self, split: str, samples=None) -> np.ndarray:
        return self._per_sample(split, "index", "iu", samples)

    @_guard("reading images")
    def images(self, split: str, samples=None) -> np.ndarray | None:
        if "images" not in self._check_split(split):
            return None
        return self._per_sample(split, "images", "u", samples, ndim=4)

    def _per_sample(self, split: str, key: str, kinds: str, samples, ndim: int = 1) -> np.ndarray:
        """A per-sample dataset of the split, checked to hold one entry per sample; all of it, or
        the entries of `samples` (indices, in their order)."""
        n = self.split_size(split)
        ds = self._check_split(split)[key]
        self._check_ds(ds, ndim, kinds, "one per sample", length=n)
        if ndim == 4 and ds.dtype != np.uint8:
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} is {ds.dtype}, not uint8 images")
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
        ds = self._check_ds(g["epoch"], 1, "iu", "epochs")
        return ds[: self.rows(split_stream(split))].astype(np.int64)

    def _split_ds(self, split: str, net: str, key: str) -> h5py.Dataset:
        g = self._check_split(split)
        self._check_net(net)
        if net not in g:
            raise RunFileError(f"{self.path}: network {net!r} has no records on split {split!r} "
                               f"(a derived network that was not evaluated)")
        if key not in g[net]:
            raise RunFileError(f"{self.path}: split {split!r} has no {key} records for {net!r}")
        ds = g[net][key]
        if not isinstance(ds, h5py.Dataset):
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} is not a dataset")
        if self._swmr:
            ds.refresh()
        n = self.rows(split_stream(split))
        if ds.ndim < 1 or ds.shape[0] < n:
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} holds {ds.shape[0] if ds.ndim else 0} "
                               f"rows, {n} were committed (truncated?)")
        return ds

    def _rows_slice(self, split: str, rows: slice | None) -> slice:
        n = self.rows(split_stream(split))
        return slice(*(rows or slice(None)).indices(n))

    @_guard("reading correctness bits")
    def correct_packed(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Packed correctness, uint8 (epochs, ceil(N/8)), bit order big (np.packbits)."""
        ds = self._split_ds(split, net, "correct")
        n = self.split_size(split)
        if ds.ndim != 2 or ds.shape[1] != packed_width(n) or ds.dtype != np.uint8:
            raise RunFileError(f"{self.path}: damaged run file: {ds.name} has shape {ds.shape} "
                               f"{ds.dtype}, expected (epochs, {packed_width(n)}) uint8")
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

    @_guard("reading predictions")
    def predicted(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        r = self._rows_slice(split, rows)
        ds = self._check_ds(self._split_ds(split, net, "predicted"), 2, "iu", "predicted classes",
                            width=self.split_size(split))
        return ds[r.start:r.stop]

    @_guard("reading losses")
    def loss(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        r = self._rows_slice(split, rows)
        ds = self._check_ds(self._split_ds(split, net, "loss"), 2, "f", "losses", width=self.split_size(split))
        return ds[r.start:r.stop]

    @_guard("reading true-class probabilities")
    def prob(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """Softmax probability of the true class, float32 (epochs, N); NaN where unknown."""
        r = self._rows_slice(split, rows)
        ds = self._check_ds(self._split_ds(split, net, "prob"), 2, "f", "probabilities",
                            width=self.split_size(split))
        return ds[r.start:r.stop].astype(np.float32)

    @_guard("reading margins")
    def margin(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        """True-class logit minus the largest other logit, float32 (epochs, N); NaN where unknown."""
        r = self._rows_slice(split, rows)
        ds = self._check_ds(self._split_ds(split, net, "margin"), 2, "f", "margins",
                            width=self.split_size(split))
        return ds[r.start:r.stop].astype(np.float32)

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
    def has_weights(self) -> bool:
        return "weights" in self.f and self.rows("weights") > 0

    @_guard("reading weight epochs")
    def weight_epochs(self) -> np.ndarray:
        if "weights" not in self.f:
            return np.zeros(0, np.int64)
        ds = self._check_ds(self.f["weights/epoch"], 1, "iu", "epochs")
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
        if "weights" not in self.f or key not in self.f[f"networks/{net}"]:
            raise RunFileError(f"{self.path}: no weights recorded for {net!r}")
        ds = self.f[f"networks/{net}/{key}"]
        self.param_rows  # noqa: B018 (checks every network's rows against the table)
        self._check_ds(ds, 2, "f", key)
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
    def file_size(self) -> int:
        return self.path.stat().st_size

    def close(self) -> None:
        if self.f.id.valid:
            self.f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<dyn run {self.path} {self.state}, networks {self.networks}, splits {self.splits}>"


def _scalar(v):
    """A 0-d array's item, else the value itself."""
    return v.item() if isinstance(v, np.ndarray) and v.shape == () else v


def _number(v) -> float | None:
    """A real number (not a bool, a string or an array) as float; None for anything else."""
    v = _scalar(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v)


def _count(v) -> int | None:
    """A non-negative integer (or a float that is one); None for anything else."""
    x = _number(v)
    if x is None or not np.isfinite(x) or x < 0 or x != int(x) or x >= 2 ** 63:
        return None
    return int(_scalar(v))


def _text(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v.item())
    return v if v is None or isinstance(v, str) else str(v)
