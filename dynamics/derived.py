"""Adding networks computed after training (e.g. post-hoc EMAs) to a finished run, atomically.

A run file's layout is fixed while it is written (SWMR forbids new objects), so derived
networks go into a copy: the run is copied to a temporary file beside the destination, the
new groups and datasets are written into the copy, and the copy is renamed over the
destination only when complete (dyn.safeio.Staged). A kill at any moment leaves the original
untouched (and a temporary that the next writer removes). The run's writer lock is held
throughout, so no training can resume it meanwhile.

Derived networks have `params`/`buffers` rows for every weight record, like recorded ones;
a row that was not derived is NaN. Their records on a split are optional (a network without
a group under `/splits/<split>` has no correctness there). See docs/format.md.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

from .errors import DynError, RunFileError
from .faults import test_point as _test_point
from .format import packed_width, row_chunks, weight_chunk
from .layout import valid_name
from .lock import WriterLock
from .safeio import Staged, close_hdf5, open_hdf5
from .writer import OPTIONAL_RECORDS, Eval

# Runs in these states receive no more epochs, so a derived network can never fall behind.
FINAL_STATES = ("complete", "diverged")


class DerivedWriter:
    """Use as a context manager; `commit()` makes the result visible, anything else discards it."""

    def __init__(self, run_path, out=None):
        from .reader import open_run

        self.src = Path(run_path)
        self.dst = Path(out) if out is not None else self.src
        self._locks = [WriterLock(self.src).acquire()]
        try:
            if self.dst != self.src:
                if self.dst.exists():
                    raise RunFileError(f"{self.dst}: already exists; refusing to overwrite it")
                self._locks.append(WriterLock(self.dst).acquire())
            with open_run(self.src) as run:
                if run.state not in FINAL_STATES:
                    raise RunFileError(f"{self.src}: is {run.state}; networks are added only to a finished "
                                       f"run (complete or diverged), since later epochs could not extend them")
                if not run.has_weights:
                    raise RunFileError(f"{self.src}: records no weights")
                self.weight_rows = len(run.weight_epochs())
                self.networks = list(run.networks)
                self.splits = {s: len(run.epochs(s)) for s in run.splits}
            self.stage = Staged(self.dst, what=f"copying {self.src}")
            try:
                shutil.copyfile(self.src, self.stage.tmp)
                shutil.copymode(self.src, self.stage.tmp)
                # through a GuardedFile: a write that fails (full disk) never reaches HDF5 (safeio)
                self.f = open_hdf5(self.stage.tmp, "r+", name=self.dst, libver="latest")
                _test_point("derive: copied")
            except OSError as e:
                self.stage.discard()
                raise self.stage.error(e, kept=f"{self.src} is unchanged") from None
        except BaseException:
            self._release()
            raise
        self.added: list[str] = []

    def add_network(self, name: str, kind: str, decay: float | None = None, attrs: dict | None = None) -> None:
        """A new network with NaN params/buffers rows for every weight record."""
        if not valid_name(name):
            raise DynError(f"invalid network name {name!r}")
        if name in self.networks or name in self.added:
            raise RunFileError(f"{self.src}: already has a network {name!r}")
        g = self.f["networks"].create_group(name)
        g.attrs["kind"] = kind
        g.attrs["decay"] = np.nan if decay is None else float(decay)
        for k, v in (attrs or {}).items():
            g.attrs[k] = json.dumps(v)
        for key, dtype in (("params", "f4"), ("buffers", "f8")):
            like = self.f[f"networks/{self.networks[0]}"].get(key)
            if like is None:
                continue
            width = like.shape[1]
            g.create_dataset(key, shape=(self.weight_rows, width), maxshape=(None, width), dtype=dtype,
                             chunks=(1, weight_chunk(width)), fillvalue=np.nan)
        self.added.append(name)

    def write_weights(self, name: str, row: int, params, buffers=None) -> None:
        g = self.f[f"networks/{name}"]
        g["params"][row] = np.asarray(params, dtype=np.float32)
        if "buffers" in g:
            g["buffers"][row] = np.asarray(buffers, dtype=np.float64)
        _test_point(f"derive: {name} row {row} written")

    def add_dataset(self, name: str, key: str, data, **attrs) -> None:
        """Any further per-network dataset (e.g. how the network was derived)."""
        ds = self.f[f"networks/{name}"].create_dataset(key, data=data)
        for k, v in attrs.items():
            ds.attrs[k] = v

    def add_split_records(self, split: str, name: str, evals: list[Eval]) -> None:
        """The network's records on `split`, one Eval per committed row of the split."""
        n_rows = self.splits[split]
        if len(evals) != n_rows:
            raise ValueError(f"{split}: {len(evals)} records for {n_rows} epochs")
        g = self.f[f"splits/{split}"]
        n = int(g.attrs["size"])
        like = g[self.networks[0]]
        ng = g.create_group(name)
        packed = []
        extra = {k: [] for k, _ in OPTIONAL_RECORDS if k in like}
        for rec in evals:
            if rec.correct is None:
                raise ValueError(f"{split}/{name}: no correctness given")
            correct = np.asarray(rec.correct, dtype=bool).reshape(-1)
            if correct.shape != (n,):
                raise ValueError(f"{split}/{name}: correctness has {correct.size} samples, the split has {n}")
            packed.append(np.packbits(correct))
            for key, fill in OPTIONAL_RECORDS:
                if key in extra:
                    value = getattr(rec, key)
                    extra[key].append(np.full(n, fill) if value is None else np.asarray(value).reshape(n))
        ng.create_dataset("correct", data=np.stack(packed).reshape(n_rows, packed_width(n)).astype(np.uint8),
                          maxshape=(None, packed_width(n)), chunks=row_chunks(packed_width(n), 1))
        for key, rows in extra.items():
            dtype = like[key].dtype
            ng.create_dataset(key, data=np.stack(rows).reshape(n_rows, n).astype(dtype), maxshape=(None, n),
                              chunks=row_chunks(n, dtype.itemsize))

    def commit(self) -> None:
        guard = self.f.guard
        close_hdf5(self.f)
        if guard.error is not None:  # one line; __exit__ removes the copy, the run is untouched
            guard.check("writing the new networks", kept=f"{self.src} is unchanged")
        _test_point("derive: complete")
        self.stage.commit(durable=True)
        self.stage.discard()
        self._release()

    def _release(self) -> None:
        for lock in self._locks:
            lock.release()
        self._locks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._locks:  # not committed: discard the copy
            if getattr(self, "f", None) is not None and self.f.id.valid:
                close_hdf5(self.f)
            self.stage.discard()
            self._release()

