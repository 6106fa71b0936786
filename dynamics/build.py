"""Creating a run file's layout: every group and dataset, empty and resizable.

HDF5's SWMR mode forbids creating objects once writing has started, so everything a run will
ever hold is created here, at once, in a temporary file that the writer renames into place.
"""

from __future__ import annotations

import datetime as _dt
import json

import h5py
import numpy as np

from . import __version__
from .format import (
    FORMAT_NAME, FORMAT_VERSION, packed_width, predicted_dtype, row_chunks, status_fields, weight_chunk,
)
from .layout import Layout

RESUME_SLOTS = ("resume/slot0", "resume/slot1")


def build(f: h5py.File, layout: Layout, config: dict) -> None:
    f.attrs["format"] = FORMAT_NAME
    f.attrs["format_version"] = FORMAT_VERSION
    f.attrs["dyn_version"] = __version__
    f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    f.attrs["config"] = json.dumps(config, default=str)

    splits = list(layout.splits)
    fields = status_fields(splits)
    init = {"state": 0, "diverged_epoch": -1, "resume_slot": 0, "resume_epoch": -1, "resume_size": 0}
    st = f.create_dataset("status", data=np.array([init.get(k, 0) for k in fields], dtype=np.int64))
    st.attrs["fields"] = json.dumps(fields)

    cols = ["epoch"] + layout.metrics
    m = f.create_dataset("metrics", shape=(0, len(cols)), maxshape=(None, len(cols)), dtype="f8",
                         chunks=row_chunks(len(cols), 8))
    m.attrs["columns"] = json.dumps(cols)

    nets = f.create_group("networks", track_order=True)
    for net in layout.networks:
        g = nets.create_group(net.name)
        g.attrs["kind"] = net.kind
        g.attrs["decay"] = np.nan if net.decay is None else float(net.decay)
    if layout.params is not None:
        _weights(f, layout)

    sg = f.create_group("splits", track_order=True)
    for name, split in layout.splits.items():
        g = sg.create_group(name)
        n = split.size
        g.attrs["size"] = n
        g.attrs["num_classes"] = int(split.num_classes or 0)
        if split.augmentation is not None:
            g.attrs["augmentation"] = str(split.augmentation)
        if split.source is not None:
            g.attrs["source"] = str(split.source)
        g.create_dataset("labels", data=split.labels)
        g.create_dataset("index", data=split.index)
        if split.images is not None:
            g.create_dataset("images", data=split.images, chunks=True)
        _rows(g, "epoch", 0, "i8")
        for net in layout.networks:
            if split.networks is not None and net.name not in split.networks:
                continue  # e.g. train-presented: only SGD makes a training forward pass
            ng = g.create_group(net.name)
            _rows(ng, "correct", packed_width(n), "u1")
            if split.predicted:
                _rows(ng, "predicted", n, predicted_dtype(split.num_classes))
            if split.loss:
                _rows(ng, "loss", n, "f2")
            if split.prob:
                _rows(ng, "prob", n, "f2")
            if split.margin:
                _rows(ng, "margin", n, "f2")

    if layout.resume:
        for slot in RESUME_SLOTS:
            f.create_dataset(slot, shape=(0,), maxshape=(None,), dtype="u1", chunks=(1 << 16,))


def _weights(f: h5py.File, layout: Layout) -> None:
    rows = [(p.name.encode(), json.dumps(list(p.shape)).encode(), p.kind.encode(), p.dtype.encode(), p.offset, p.size)
            for p in layout.params]
    width = max([len(r[0]) for r in rows] + [1])
    swidth = max([len(r[1]) for r in rows] + [2])
    dt = np.dtype([("name", f"S{width}"), ("shape", f"S{swidth}"), ("kind", "S6"), ("dtype", "S16"),
                   ("offset", "<i8"), ("size", "<i8")])
    f.create_dataset("weights/table", data=np.array(rows, dtype=dt))
    f.create_dataset("weights/epoch", shape=(0,), maxshape=(None,), dtype="i8", chunks=(1024,))
    for net in layout.networks:
        g = f[f"networks/{net.name}"]
        P, B = layout.n_params, layout.n_buffers
        g.create_dataset("params", shape=(0, P), maxshape=(None, P), dtype="f4",
                         chunks=(1, weight_chunk(P)))
        if B:
            g.create_dataset("buffers", shape=(0, B), maxshape=(None, B), dtype="f8",
                             chunks=(1, weight_chunk(B)))


def _rows(g: h5py.Group, name: str, width: int, dtype: str) -> None:
    """An (epochs, width) dataset that grows one row per epoch ((epochs,) when width is 0)."""
    if width == 0:
        g.create_dataset(name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
        return
    g.create_dataset(name, shape=(0, width), maxshape=(None, width), dtype=dtype,
                     chunks=row_chunks(width, np.dtype(dtype).itemsize))
