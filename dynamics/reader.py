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
from .format import FORMAT_NAME, FORMAT_VERSION, STATES, packed_width, split_stream
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
            except (OSError, KeyError, ValueError, TypeError, IndexError, RuntimeError) as e:
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
        for name in ("status", "metrics", "networks"):
            if name not in f:
                raise RunFileError(f"{p}: damaged run file: /{name} is missing")
        st = f["status"]
        try:
            self._fields = json.loads(_text(st.attrs["fields"]))
        except (KeyError, json.JSONDecodeError):
            raise RunFileError(f"{p}: damaged run file: /status has no valid 'fields' attribute") from None
        if (not isinstance(st, h5py.Dataset) or st.ndim != 1 or st.dtype.kind not in "iu"
                or not isinstance(self._fields, list) or len(self._fields) != st.shape[0]):
            raise RunFileError(f"{p}: damaged run file: /status has the wrong shape or type")
        self.networks: list[str] = list(f["networks"])
        self.splits: list[str] = list(f["splits"]) if "splits" in f else []
        m = f["metrics"]
        self.metric_columns = json.loads(_text(m.attrs["columns"]))
        if m.ndim != 2 or len(self.metric_columns) != m.shape[1]:
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
        return [g["epoch"]] + [g[n]["correct"] for n in self.networks]

    @property
    def _swmr(self) -> bool:
        return bool(getattr(self.f, "swmr_mode", False))

    def rows(self, stream: str) -> int:
        """Committed rows of a stream: "metrics", "weights" or "split/<name>"."""
        return self._status[f"rows/{stream}"]

    # ----------------------------------------------------------------- state
    @property
    def state(self) -> str:
        """complete, diverged, stopped, running (a live writer) or interrupted (killed)."""
        s = STATES.get(self._status["state"], "unknown")
        if s == "running" and not self.writer_alive:
            return "interrupted"
        return s

    @property
    def writer_alive(self) -> bool:
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
    def network_info(self, name: str) -> dict:
        self._check_net(name)
        a = self.f[f"networks/{name}"].attrs
        decay = float(a.get("decay", np.nan))
        return {"name": name, "kind": _text(a.get("kind", "other")),
                "decay": None if np.isnan(decay) else decay}

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
        return int(self._check_split(split).attrs["size"])

    @_guard("reading a split")
    def num_classes(self, split: str) -> int:
        return int(self._check_split(split).attrs.get("num_classes", 0))

    @_guard("reading labels")
    def labels(self, split: str) -> np.ndarray:
        return self._check_split(split)["labels"][...]

    @_guard("reading dataset indices")
    def dataset_index(self, split: str) -> np.ndarray:
        return self._check_split(split)["index"][...]

    @_guard("reading images")
    def images(self, split: str) -> np.ndarray | None:
        g = self._check_split(split)
        return g["images"][...] if "images" in g else None

    @_guard("reading epochs")
    def epochs(self, split: str) -> np.ndarray:
        """Epochs with a correctness record on `split` (epoch 0 = the initial weights)."""
        g = self._check_split(split)
        return g["epoch"][: self.rows(split_stream(split))]

    def window(self, split: str, from_epoch: int | None = None, to_epoch: int | None = None) -> slice:
        """Rows of `split` whose epoch lies in [from_epoch, to_epoch] (both inclusive)."""
        ep = self.epochs(split)
        if len(ep) == 0:
            raise RunFileError(f"{self.path}: split {split!r} has no recorded epochs yet")
        lo = ep[0] if from_epoch is None else from_epoch
        hi = ep[-1] if to_epoch is None else to_epoch
        if lo > hi or lo > ep[-1] or hi < ep[0]:
            raise RunFileError(f"{self.path}: epoch window {lo}..{hi} is outside the recorded "
                               f"epochs {ep[0]}..{ep[-1]} of split {split!r}")
        a, b = np.searchsorted(ep, lo, "left"), np.searchsorted(ep, hi, "right")
        return slice(int(a), int(b))

    def _split_ds(self, split: str, net: str, key: str) -> h5py.Dataset:
        g = self._check_split(split)
        self._check_net(net)
        if key not in g[net]:
            raise RunFileError(f"{self.path}: split {split!r} has no {key} records for {net!r}")
        ds = g[net][key]
        if self._swmr:
            ds.refresh()
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
        return self._split_ds(split, net, "predicted")[r.start:r.stop]

    @_guard("reading losses")
    def loss(self, split: str, net: str, rows: slice | None = None) -> np.ndarray:
        r = self._rows_slice(split, rows)
        return self._split_ds(split, net, "loss")[r.start:r.stop]

    def has(self, split: str, net: str, key: str) -> bool:
        return split in self.splits and net in self.networks and key in self.f[f"splits/{split}/{net}"]

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
        ds = self.f["weights/epoch"]
        if self._swmr:
            ds.refresh()
        return ds[: self.rows("weights")]

    @functools.cached_property
    def param_rows(self) -> np.ndarray:
        """The parameter table as a numpy structured array (no pandas needed)."""
        if "weights" not in self.f:
            raise RunFileError(f"{self.path}: this run records no weights")
        try:
            t = self.f["weights/table"][...]
            for field in ("name", "shape", "kind", "dtype", "offset", "size"):
                t[field]  # noqa: B018 (a missing field raises here, not later)
            return t
        except (KeyError, ValueError, TypeError, OSError) as e:
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
        if self._swmr:
            ds.refresh()
        return ds

    def iter_params(self, net: str, epochs=None, buffers: bool = False) -> Iterator[tuple[int, np.ndarray]]:
        """(epoch, flat weights) one recorded epoch at a time; with buffers appended if asked."""
        for e in (self.weight_epochs() if epochs is None else epochs):
            p = self.params(net, int(e))
            yield int(e), (np.concatenate([p, self.buffers(net, int(e))]) if buffers else p)

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


def _text(v) -> str | None:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return _text(v.item())
    return v if v is None or isinstance(v, str) else str(v)
