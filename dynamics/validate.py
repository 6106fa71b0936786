"""Structural checks of a run file: each returns what it checked or raises one RunFileError
line naming the file and what is wrong; and the parsers of attribute values they share.

dyn.reader finds the objects and reads them; these say whether what it found is what
docs/format.md describes. They look at metadata (attributes, shapes, dtypes), never at rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import h5py
import numpy as np

from .errors import RunFileError
from .format import BASE_FIELDS, FORMAT_NAME, FORMAT_VERSION, packed_width, split_stream

# Per-sample records besides "correct" (packed bits): dtype kinds and what the values are.
RECORDS = {"predicted": ("iu", "predicted classes"), "loss": ("f", "losses"),
           "prob": ("f", "probabilities"), "margin": ("f", "margins")}


@dataclass(frozen=True)
class Structure:
    """What the root attributes, /status, /networks, /splits and /metrics say a run holds."""

    format_version: int
    config: dict
    status_fields: list[str]
    networks: list[str]
    splits: list[str]
    metric_columns: list[str]


def check_structure(f: h5py.File, p) -> Structure:
    """The run's structure, once its format, version, config, links and top-level objects are
    as docs/format.md says (row counts: check_committed_rows)."""
    fmt = as_text(f.attrs.get("format"))
    if fmt != FORMAT_NAME:
        raise RunFileError(f"{p}: an HDF5 file, but not a dyn run file (format attribute {fmt!r})")
    try:
        version = int(f.attrs.get("format_version"))
    except (TypeError, ValueError):
        raise RunFileError(f"{p}: format_version attribute is missing or not an integer") from None
    if version > FORMAT_VERSION:
        raise RunFileError(f"{p}: format version {version} is newer than this dyn "
                           f"reads ({FORMAT_VERSION}); upgrade dyn")
    if version < 1:
        raise RunFileError(f"{p}: invalid format version {version}")
    try:
        config = json.loads(as_text(f.attrs.get("config", "{}")))
    except json.JSONDecodeError:
        raise RunFileError(f"{p}: config attribute is not valid JSON") from None
    if not isinstance(config, dict):
        raise RunFileError(f"{p}: config attribute is not a JSON object")
    check_links(f, p)
    for name in ("status", "metrics", "networks"):
        if name not in f:
            raise RunFileError(f"{p}: damaged run file: /{name} is missing")
    st = f["status"]
    try:
        fields = json.loads(as_text(st.attrs["fields"]))
    except (KeyError, json.JSONDecodeError):
        raise RunFileError(f"{p}: damaged run file: /status has no valid 'fields' attribute") from None
    if (not isinstance(st, h5py.Dataset) or st.ndim != 1 or st.dtype.kind != "i"  # signed: -1 is "none"
            or not isinstance(fields, list) or len(fields) != st.shape[0]):
        raise RunFileError(f"{p}: damaged run file: /status has the wrong shape or type")
    missing = [k for k in BASE_FIELDS if k not in fields]
    if missing:
        raise RunFileError(f"{p}: damaged run file: /status lacks {', '.join(missing)}")
    for name in ("networks", "splits"):
        if name in f and not isinstance(f[name], h5py.Group):
            raise RunFileError(f"{p}: damaged run file: /{name} is not a group")
    networks = list(f["networks"])
    splits = list(f["splits"]) if "splits" in f else []
    for name in [f"networks/{n}" for n in networks] + [f"splits/{s}" for s in splits]:
        if not isinstance(f.get(name), h5py.Group):
            raise RunFileError(f"{p}: damaged run file: /{name} is not a group")
    m = f["metrics"]
    columns = json.loads(as_text(m.attrs["columns"]))
    if (not isinstance(columns, list) or not all(isinstance(c, str) for c in columns)
            or m.ndim != 2 or len(columns) != m.shape[1]):
        raise RunFileError(f"{p}: damaged run file: /metrics does not match its columns")
    return Structure(version, config, fields, networks, splits, columns)


def check_links(f: h5py.File, p) -> None:
    """A run file holds its own data, and dyn writes only hard links. HDF5 follows a link
    into another file silently (to whatever file the name finds), and a link to nothing
    reads as a missing object while `name in group` says it is there: both are damage.
    (One H5Lvisit over the file: under a millisecond.)"""
    other = []
    f.id.links.visit(lambda name, info: other.append(name) if info.type != h5py.h5l.TYPE_HARD else None,
                     info=True)
    for name in other:
        path = "/" + name.decode() if isinstance(name, bytes) else "/" + name
        link = f.get(path, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise RunFileError(f"{p}: damaged run file: {path} links into another file "
                               f"({link.filename}); a run file holds its own data")
        try:
            target = f.get(path)
        except Exception:  # a loop of links, or any other link HDF5 cannot resolve
            target = None
        if target is None:
            raise RunFileError(f"{p}: damaged run file: {path} is a link to nothing "
                               f"({getattr(link, 'path', link)})")


def check_committed_rows(f: h5py.File, p, status: dict, networks: list[str], splits: list[str],
                         swmr: bool) -> None:
    """Every stream has a row count in `status`, and each of its datasets holds at least that
    many rows (refreshed first when read in SWMR mode, to see what the writer added)."""
    for stream in ["metrics", "weights"] + [split_stream(x) for x in splits]:
        n = status.get(f"rows/{stream}")
        if n is None or n < 0:
            raise RunFileError(f"{p}: damaged run file: no valid row count for {stream}")
        for ds in _stream_datasets(f, stream, networks):
            if not isinstance(ds, h5py.Dataset) or ds.ndim < 1:
                raise RunFileError(f"{p}: damaged run file: {ds.name} is not a dataset of rows")
            if swmr:
                ds.refresh()
            check_holds_rows(p, ds, n)


def _stream_datasets(f: h5py.File, stream: str, networks: list[str]) -> list[h5py.Dataset]:
    if stream == "metrics":
        return [f["metrics"]]
    if stream == "weights":
        if "weights" not in f:
            return []
        return [f["weights/epoch"]] + [f[f"networks/{n}/params"] for n in networks]
    g = f[f"splits/{stream[len('split/'):]}"]
    # a derived network (docs/format.md) may have no records on a split
    return [g["epoch"]] + [g[n]["correct"] for n in networks if n in g]


def check_holds_rows(p, ds: h5py.Dataset, n: int) -> h5py.Dataset:
    """`ds` itself, once it holds the `n` rows /status says were committed."""
    if ds.ndim < 1 or ds.shape[0] < n:
        raise RunFileError(f"{p}: damaged run file: {ds.name} holds {ds.shape[0] if ds.ndim else 0} "
                           f"rows, {n} were committed (truncated?)")
    return ds


def check_is_dataset(p, ds) -> h5py.Dataset:
    if not isinstance(ds, h5py.Dataset):
        raise RunFileError(f"{p}: damaged run file: {ds.name} is not a dataset")
    return ds


def check_dataset(p, ds: h5py.Dataset, ndim: int, kinds: str, what: str, width: int | None = None,
                  length: int | None = None) -> h5py.Dataset:
    """`ds` itself, or a RunFileError when its rank, dtype kind, row width or length is not
    what the format says (checked from metadata, before any read)."""
    check_is_dataset(p, ds)
    if (ds.ndim != ndim or ds.dtype.kind not in kinds or (width is not None and ds.shape[1] != width)
            or (length is not None and ds.shape[0] != length)):
        want = [f"{ndim}-d", {"iu": "integer", "f": "float", "u": "unsigned"}.get(kinds, kinds)]
        want += [f"{length} rows"] if length is not None else []
        want += [f"{width} columns"] if width is not None else []
        raise RunFileError(f"{p}: damaged run file: {ds.name} has shape {ds.shape} {ds.dtype}, "
                           f"expected {', '.join(want)} ({what})")
    return ds


def check_record(p, ds: h5py.Dataset, key: str, n: int) -> h5py.Dataset:
    """`ds` itself, once it has the shape and dtype of a split's `key` records for `n` samples:
    "correct" packed bits, uint8 (epochs, ceil(n/8)); the others (RECORDS), (epochs, n)."""
    if key == "correct":
        if ds.ndim != 2 or ds.shape[1] != packed_width(n) or ds.dtype != np.uint8:
            raise RunFileError(f"{p}: damaged run file: {ds.name} has shape {ds.shape} "
                               f"{ds.dtype}, expected (epochs, {packed_width(n)}) uint8")
        return ds
    kinds, what = RECORDS[key]
    return check_dataset(p, ds, 2, kinds, what, width=n)


def check_per_sample(p, ds: h5py.Dataset, n: int, ndim: int, kinds: str) -> h5py.Dataset:
    """`ds` itself, once it holds one entry per sample of a split of `n` (labels, indices, or
    uint8 images when ndim is 4)."""
    check_dataset(p, ds, ndim, kinds, "one per sample", length=n)
    if ndim == 4 and ds.dtype != np.uint8:
        raise RunFileError(f"{p}: damaged run file: {ds.name} is {ds.dtype}, not uint8 images")
    return ds


def split_size(p, split: str, g: h5py.Group) -> int:
    """N, the split's samples: its `size` attribute, which its labels must agree with."""
    n = as_count(g.attrs.get("size"))
    if n is None:
        raise RunFileError(f"{p}: damaged run file: /splits/{split} has no valid 'size' attribute")
    labels = g.get("labels")
    if isinstance(labels, h5py.Dataset) and labels.shape != (n,):
        raise RunFileError(f"{p}: damaged run file: /splits/{split} says {n} samples, its labels "
                           f"have shape {labels.shape}")
    return n


def num_classes(p, split: str, g: h5py.Group) -> int:
    n = as_count(g.attrs.get("num_classes", 0))
    if n is None:
        raise RunFileError(f"{p}: damaged run file: /splits/{split} has an invalid 'num_classes'")
    return n


def network_info(p, name: str, attrs) -> dict:
    """{name, kind, decay (None where not a number, NaN in the file)} from a network's attributes."""
    kind, decay = attrs.get("kind", "other"), attrs.get("decay", np.nan)
    if not isinstance(scalar(kind), (str, bytes)):
        raise RunFileError(f"{p}: damaged run file: /networks/{name} has a 'kind' that is not a string")
    decay = as_number(decay)
    if decay is None:
        raise RunFileError(f"{p}: damaged run file: /networks/{name} has a 'decay' that is not a number")
    return {"name": name, "kind": as_text(kind), "decay": None if np.isnan(decay) else decay}


# ------------------------------------------------------------- attribute values
def scalar(v):
    """A 0-d array's item, else the value itself."""
    return v.item() if isinstance(v, np.ndarray) and v.shape == () else v


def as_number(v) -> float | None:
    """A real number (not a bool, a string or an array) as float; None for anything else."""
    v = scalar(v)
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
        return None
    return float(v)


def as_count(v) -> int | None:
    """A non-negative integer (or a float that is one); None for anything else."""
    x = as_number(v)
    if x is None or not np.isfinite(x) or x < 0 or x != int(x) or x >= 2 ** 63:
        return None
    return int(scalar(v))


def as_text(v) -> str | None:
    """A string attribute (bytes decoded as UTF-8) as str; None stays None."""
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, np.ndarray) and v.shape == ():
        return as_text(v.item())
    return v if v is None or isinstance(v, str) else str(v)
