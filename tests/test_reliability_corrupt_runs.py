"""Damaged run files fed to the reader and every analysis command: a correct answer for what is
intact, or one line; never a traceback, a crash, a hang, or an answer the file does not hold.

Hypothesis damages a small valid run (dyn.synthetic, so every value it holds is known) in
seven ways: truncation at a random offset; random byte flips; deleted groups and datasets;
datasets replaced by ones of another dtype or shape; attributes given a value of the wrong type;
huge declared sizes (2**40 rows, a /status counter beyond the data, a split's size, a parameter
table's offsets); and /status counters lowered, which leaves a shorter run. On each damaged file
`dyn inspect --json`, `dyn analyze stability|histogram|flips|weight-diff|accuracy|agreement
--json` and `dyn table --format json` run as real `dyn` processes (tests/forkserver.py), each
with its address space capped, so a size forged into the file cannot swamp the machine, and
within a time limit. Each must exit 0 with an answer, or 1 or 2 with one line `dyn: error: ...`
naming the file; no traceback, no signal, no hang.

What is guaranteed of an answer, and asserted:

- A truncated file is always refused (the superblock records the file's end).
- Damage made through HDF5 (deleting, retyping, reshaping, attributes, sizes, counters) leaves
  the data bytes as they were, so an answer must be the right one for an intact part of the
  run: the pristine file's answer, or the pristine answer for fewer networks, fewer splits or
  fewer epochs (a prefix: what /status still commits), which the test computes by running the
  same command on the pristine file with --net/--from-epoch/--to-epoch (inspect: from the
  synthetic run's known accuracies; table: from a shorter synthetic run). A retype that loses
  values (float32 weights stored as float16) changes the data itself: only the no-traceback
  rules apply to it.
- Byte flips: HDF5 checksums its metadata (libver "latest": superblock, object headers, chunk
  indexes), but not raw data and not the global heap that holds string attributes; the writer
  stores data unfiltered (no fletcher32: dynamics/build.py), so a flip there silently changes
  a value, and nothing can tell. A command's answer must equal the pristine one when no flip
  touched the raw data it reads (or the global heap); when one did, only the no-traceback
  rules apply.

Not guaranteed: that damage is always noticed (a flipped correctness bit or label is a valid
value), or that a damaged file is refused rather than read in part.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from dyn.synthetic import Synthetic


def SETTINGS(n):
    return settings(max_examples=int(os.environ.get("DYN_TEST_EXAMPLES", n)), deadline=None, derandomize=True,
                    database=None, phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))


# 43 samples: the last correctness byte is padded; weights every 2 epochs: 4 records of 7 epochs
# 5 buffer values a record (4 and num_batches_tracked): no 2-d dataset is square, so a transposed
# one has another shape
SPEC = Synthetic(epochs=7, samples=43, decays=(0.9, 0.99), weights_every=2, n_params=30, n_buffers=4, images=True)
NETS = ["sgd", "ema-0.9", "ema-0.99"]
TIMEOUT = 30          # seconds per command: a hang fails
MEMORY = 1 << 30      # bytes of address space a command may add

COMMANDS = {
    "inspect": ["inspect", "--json"],
    "stability": ["analyze", "stability", "--json"],
    "histogram": ["analyze", "histogram", "--json"],
    "flips": ["analyze", "flips", "--json", "--top", "5"],
    "weight-diff": ["analyze", "weight-diff", "--json", "--include-buffers"],
    "accuracy": ["analyze", "accuracy", "--json"],
    "agreement": ["analyze", "agreement", "--json"],
    "table": ["table", "--format", "json"],
}
DEFAULT_FLAGS = {"agreement": ["--net", "sgd,ema-0.99"]}
EMPTY = {"mean": None, "std": None, "n": 0}  # a table cell without runs
OPTIONAL = {"label_differs", "mean_label_mismatch", "last_label_mismatch"}  # agreement without predictions

# Which datasets' raw bytes each command reads (all of them read /status and string attributes)
READS = {
    "inspect": r"splits/[^/]+/epoch|splits/[^/]+/[^/]+/correct|weights/(epoch|table)",
    "stability": r"splits/val/(epoch|[^/]+/correct)",
    "histogram": r"splits/val/(epoch|[^/]+/correct)",
    "accuracy": r"splits/val/(epoch|[^/]+/correct)",
    "flips": r"splits/val/(epoch|labels|index|images|[^/]+/correct)",
    "agreement": r"splits/val/(epoch|(sgd|ema-0\.99)/(correct|predicted))",
    "weight-diff": r"weights/epoch|networks/[^/]+/(params|buffers)",
    "table": r"splits/test/(epoch|[^/]+/correct)",
}


# --------------------------------------------------------------------------- the pristine run
class Pristine:
    """The valid run, its layout, and every command's answer on it (and on parts of it)."""

    def __init__(self, forkserver, folder):
        self.forkserver, self.folder = forkserver, folder
        self.path = SPEC.write(folder / "run.h5")
        self.raw = self.path.read_bytes()
        self.accuracy = {}  # (split, net) -> accuracy at each epoch
        for epoch, kw in SPEC.records():
            for s, nets in kw["evals"].items():
                for n, ev in nets.items():
                    self.accuracy.setdefault((s, n), []).append(float(ev["correct"].mean()))
        self.objects, self.datasets, self.attrs, self.regions = [], {}, {}, []
        with h5py.File(self.path, "r") as f:
            self.attrs.update({("/", a): type_of(v) for a, v in f.attrs.items()})

            def visit(name, obj):
                self.objects.append(name)
                self.attrs.update({(name, a): type_of(v) for a, v in obj.attrs.items()})
                if isinstance(obj, h5py.Dataset):
                    self.datasets[name] = obj[...]
                    self.regions.extend((a, a + n, name) for a, n in _extents(obj))

            f.visititems(visit)
        for m in re.finditer(b"GCOL", self.raw):  # global heap collections: string attributes
            size = int.from_bytes(self.raw[m.start() + 8:m.start() + 16], "little")
            self.regions.append((m.start(), m.start() + size, "heap"))
        self.cache = {}
        self.answers = {c: self.run(c) for c in COMMANDS}
        assert all(v is not None for v in self.answers.values()), self.answers

    def run(self, command, *flags, path=None):
        key = (command, flags, path)
        if key not in self.cache:
            self.cache[key] = dyn(self.forkserver, command, path or self.path, *flags)
        return self.cache[key]

    def shorter(self, epochs):
        """A valid run of the first `epochs` epochs (what lowered counters leave)."""
        path = self.folder / f"first-{epochs}.h5"
        if not path.exists():
            Synthetic(**{**SPEC.__dict__, "epochs": epochs}).write(path)
        return path

    def where(self, offset):
        """What the byte at `offset` belongs to: a dataset's name, "heap", or None (metadata)."""
        return next((name for a, b, name in self.regions if a <= offset < b), None)


def _extents(ds):
    layout = ds.id.get_create_plist().get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        off = ds.id.get_offset()
        return [] if off is None else [(off, ds.id.get_storage_size())]
    if layout == h5py.h5d.CHUNKED:
        out = []
        ds.id.chunk_iter(lambda info: out.append((info.byte_offset, info.size)))
        return out
    return []  # compact: inside the (checksummed) object header


@pytest.fixture(scope="module")
def forkserver(tmp_path_factory):
    """A fork server without torch (tests/forkserver.py): none of these commands needs it, and a
    fork of an interpreter that imported torch costs ~0.1 s, of this one a few ms."""
    from forkserver import ForkServer

    server = ForkServer(tmp_path_factory.mktemp("forkserver"), torch=False)
    yield server
    server.close()


@pytest.fixture(scope="module")
def pristine(forkserver, tmp_path_factory):
    return Pristine(forkserver, tmp_path_factory.mktemp("pristine"))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("damaged")


# ------------------------------------------------------------------------------ running dyn
def dyn(forkserver, command, path, *flags):
    """`dyn COMMAND PATH` as a real process: its JSON answer (the path written RUN), or None
    when it refused in one line."""
    flags = flags or tuple(DEFAULT_FLAGS.get(command, ()))
    r = forkserver.run(*COMMANDS[command], path, *flags, timeout=TIMEOUT, memory=MEMORY)
    assert r.signal is None and r.code is not None, f"{command} died or hung: {r}"
    assert "Traceback" not in r.stderr, f"{command}: {r.stderr}"
    if r.code == 0:
        return json.loads(r.stdout.replace(json.dumps(str(path))[1:-1], "RUN"))
    assert r.code in (1, 2), f"{command}: {r}"
    assert r.stderr.startswith("dyn: error: ") and r.stderr.count("\n") == 1, f"{command}: {r.stderr!r}"
    assert str(path) in r.stderr, f"{command}: the error does not name the file: {r.stderr!r}"
    return None


@dataclass
class Damage:
    strict: frozenset = frozenset(COMMANDS)  # commands whose answer must be right for an intact part
    mask: tuple = ()                         # inspect fields that show what the damage wrote


def check_all(pristine, path, damage: Damage):
    """Run every command on the damaged file; check each answer it gives."""
    answers = {}
    for command in COMMANDS:
        got = answers[command] = dyn(pristine.forkserver, command, path)
        if got is None or command not in damage.strict:
            continue
        if command == "inspect":
            check_inspect(pristine, got, damage.mask)
        elif command == "table":
            check_table(pristine, got)
        else:
            check_analysis(pristine, command, got)
    return answers


def matches(got, want) -> bool:
    if isinstance(want, dict):
        return isinstance(got, dict) and got.keys() == want.keys() and all(
            (k in OPTIONAL and got[k] is None) or matches(got[k], want[k]) for k in want)
    if isinstance(want, list):
        return isinstance(got, list) and len(got) == len(want) and all(map(matches, got, want))
    return got == want


def subsequence(a, b) -> bool:
    it = iter(b)
    return all(x in it for x in a)


def check_analysis(pristine, command, got):
    """The pristine answer for the networks and epochs the answer covers."""
    if command == "accuracy":
        nets = got["groups"][0]["networks"]
        epochs = next(iter(nets.values()))["epochs"]
    else:
        run = got["runs"][0]
        nets = run["networks"]
        if command == "weight-diff":
            epochs = [e for w in nets.values() for e in w["epochs"]]
        else:
            epochs = run["epochs"] if command == "agreement" else run["window"]
    names = list(nets)
    assert subsequence(names, NETS), (command, names)
    want = pristine.run(command, "--net", ",".join(names), "--from-epoch", str(min(epochs)),
                        "--to-epoch", str(max(epochs)))
    assert want is not None and matches(got, want), f"{command}: an answer the file does not hold"


def check_inspect(pristine, got, mask=()):
    """The pristine summary, for the networks, splits and committed rows the answer shows."""
    want = json.loads(json.dumps(pristine.answers["inspect"]))
    got = dict(got)
    for k in ("file_size", *mask):
        got.pop(k)
        want.pop(k)
    # in the file's order, which a group re-created as a link changes
    names = [n["name"] for n in got["networks"]]
    assert set(names) <= set(NETS) and len(set(names)) == len(names), names
    networks = {n["name"]: n for n in want["networks"]}
    want["networks"] = [networks[n] for n in names]
    splits = {s["name"]: s for s in want["splits"]}
    seen = [s["name"] for s in got["splits"]]
    assert set(seen) <= set(splits) and len(set(seen)) == len(seen), seen
    want["splits"] = []
    for s in got["splits"]:
        w, r = dict(splits[s["name"]]), s["records"]
        assert 0 <= r <= w["records"], s
        w["images"] = w["images"] and s["images"]  # the images are optional
        w.update(records=r, first_epoch=0 if r else None, last_epoch=r - 1 if r else None,
                 final_accuracy={n: pristine.accuracy[s["name"], n][r - 1] for n in names} if r else {})
        want["splits"].append(w)
    if got["weights"] is None:
        want["weights"] = None
    else:
        r = got["weights"]["records"]
        assert 0 <= r <= want["weights"]["records"], got["weights"]
        want["weights"].update(records=r, first_epoch=0 if r else None, last_epoch=2 * (r - 1) if r else None,
                               every=2 if r > 1 else None)
    assert 0 <= got["metrics"]["rows"] <= want["metrics"]["rows"], got["metrics"]
    want["metrics"]["rows"] = got["metrics"]["rows"]
    assert got == want, "inspect: a summary the file does not hold"


def check_table(pristine, got):
    """The pristine table of a run of the first few epochs, for the networks it shows."""
    for epochs in range(SPEC.epochs, 0, -1):
        path = pristine.path if epochs == SPEC.epochs else pristine.shorter(epochs)
        want = pristine.run("table", path=path)
        want = json.loads(json.dumps(want).replace(json.dumps(str(path))[1:-1], "RUN"))
        cols = got["columns"]
        if subsequence(cols, want["columns"]) and len(got["rows"]) == len(want["rows"]):
            want["columns"] = cols
            # a network the run no longer holds: its column stays, empty
            want["rows"] = [{**row, "cells": {c: mine["cells"][c] if mine["cells"][c] == EMPTY else row["cells"][c]
                                              for c in cols}} for row, mine in zip(want["rows"], got["rows"])]
            if got == want:
                return
    raise AssertionError(f"table: a table the file does not hold: {got}")


# -------------------------------------------------------------------------------- damage
def write(folder, data: bytes):
    path = folder / "run.h5"
    path.write_bytes(data)
    return path


def rewrite(f, name, data, **kw):
    """Replace dataset `name` by one holding `data` (its attributes kept)."""
    attrs = dict(f[name].attrs)
    del f[name]
    ds = f.create_dataset(name, data=data, **kw)
    for k, v in attrs.items():
        ds.attrs[k] = v
    return ds


def huge_copy(f, name, axis: int, size: int = 1 << 40):
    """Replace dataset `name` by a chunked one whose shape claims `size` along `axis`, its data
    in the first places (nothing else is allocated)."""
    data = f[name][...]
    attrs = dict(f[name].attrs)
    del f[name]
    shape = list(data.shape) if data.ndim else [1]
    data = data.reshape(shape)
    shape[axis] = size
    chunks = [max(1, min(n, 256)) for n in data.shape]
    ds = f.create_dataset(name, shape=tuple(shape), maxshape=tuple(None for _ in shape), dtype=data.dtype,
                          chunks=tuple(chunks))
    ds[tuple(slice(0, n) for n in data.shape)] = data
    for k, v in attrs.items():
        ds.attrs[k] = v


def status_set(f, field, value):
    fields = json.loads(f["status"].attrs["fields"])
    st = f["status"][...]
    st[fields.index(field)] = value
    f["status"][...] = st


def committed(stream):
    return 4 if stream == "weights" else SPEC.epochs


STREAMS = ["metrics", "weights", "split/val", "split/test"]


# ------------------------------------------------------------------------------- the tests
@SETTINGS(8)
@given(keep=st.floats(0, 1, exclude_max=True))
def test_truncated_runs_are_refused(pristine, folder, keep):
    path = write(folder, pristine.raw[:int(keep * len(pristine.raw))])
    answers = check_all(pristine, path, Damage())
    assert not any(answers.values()), {k: v for k, v in answers.items() if v}


@SETTINGS(20)
@given(data=st.data())
def test_flipped_bytes_give_the_pristine_answer_unless_they_hit_data(pristine, folder, data):
    raw = bytearray(pristine.raw)
    # anywhere, or in the metadata (the bytes outside every dataset's data and the global heap)
    meta = [i for i in range(0, len(raw), 7) if pristine.where(i) is None]
    offset = st.one_of(st.integers(0, len(raw) - 1), st.sampled_from(meta), st.integers(0, 4095))
    flips = data.draw(st.lists(st.tuples(offset, st.integers(1, 255)), min_size=1, max_size=6), label="flips")
    if data.draw(st.booleans(), label="left open by a killed writer"):
        mark_open(raw)  # the reader then takes HDF5's SWMR path, which retries failed metadata reads
    for at, x in flips:
        raw[at] ^= x
    hit = {pristine.where(at) for at, _ in flips} - {None}
    strict = {c for c in COMMANDS
              if not any(h in ("heap", "status") or re.fullmatch(READS[c], h) for h in hit)}
    check_all(pristine, write(folder, bytes(raw)), Damage(frozenset(strict)))


def mark_open(raw: bytearray) -> None:
    """Set the superblock's "open for (SWMR) write" flags, as a killed writer leaves them."""
    from dyn.superblock import lookup3

    length = 12 + 4 * raw[9] + 4  # superblock v2/v3
    raw[11] |= 0x05
    raw[length - 4:length] = lookup3(bytes(raw[:length - 4])).to_bytes(4, "little")


INSTEAD = ["nothing", "a dangling link", "a link to itself", "a link into a missing file",
           "a link to the same object in the pristine file", "an empty group", "a scalar dataset"]


def put_instead(f, name, what, pristine):
    if what == "a dangling link":
        f[name] = h5py.SoftLink("/nowhere")
    elif what == "a link to itself":
        f[name] = h5py.SoftLink("/" + name)
    elif what == "a link into a missing file":
        f[name] = h5py.ExternalLink("missing.h5", "/" + name)
    elif what == "a link to the same object in the pristine file":
        f[name] = h5py.ExternalLink(str(pristine.path), "/" + name)
    elif what == "an empty group":
        f.create_group(name)
    elif what == "a scalar dataset":
        f[name] = 0


@SETTINGS(20)
@given(data=st.data())
def test_deleted_groups_and_datasets(pristine, folder, data):
    """Deleted, or replaced by a link that leads nowhere (or to the same data elsewhere), by an
    empty group or by a number."""
    names = data.draw(st.lists(st.sampled_from(pristine.objects), min_size=1, max_size=2, unique=True),
                      label="delete")
    instead = data.draw(st.sampled_from(INSTEAD), label="instead")
    path = write(folder, pristine.raw)
    with h5py.File(path, "r+", libver="latest") as f:
        for name in sorted(names, key=lambda n: -n.count("/")):  # inner first: never through a new link
            del f[name]
            put_instead(f, name, instead, pristine)
    assert pristine.path.read_bytes() == pristine.raw
    check_all(pristine, path, Damage())


DTYPES = ["f8", "f4", "f2", "i8", "i4", "i2", "i1", "u1", "u8", "?", "S8", "c8"]
SHAPES = ["scalar", "extra axis", "transposed", "fewer rows", "more rows", "fewer columns", "more columns",
          "empty"]


def reshaped(data, how, rng):
    if how == "scalar":
        return data.reshape(-1)[0] if data.size else np.zeros((), data.dtype)
    if how == "extra axis":
        return data[..., None]
    if how == "transposed":
        return data.T if data.ndim > 1 else data[None, :]
    if how == "fewer rows":
        return data[: rng.integers(0, len(data))] if data.ndim and len(data) else data
    if how == "more rows":
        extra = data[: 1 + rng.integers(0, 3)] if data.ndim and len(data) else data
        return np.concatenate([data, extra[::-1]]) if data.ndim else data
    if how in ("fewer columns", "more columns") and data.ndim >= 2:
        if how == "fewer columns":
            return data[:, :-1]
        extra = data[:, :1] + (rng.integers(1, 5, data[:, :1].shape) if data.dtype.kind in "iuf" else 0)
        return np.concatenate([data, extra.astype(data.dtype)], axis=1)
    if how == "empty":
        return data[:0]
    return data


def retyped(data, dtype, field=0):
    """data cast to dtype (the table: one field of it), and whether an answer must still be
    right: the cast kept every value, or changed the kind (which a reader can see)."""
    if data.dtype.names:
        name = data.dtype.names[field % len(data.dtype.names)]
        fields = [(n, dtype if n == name else data.dtype[n]) for n in data.dtype.names]
        out = np.empty(data.shape, fields)
        for n in data.dtype.names:
            out[n] = data[n].astype(fields[data.dtype.names.index(n)][1]) if n != name else _cast(data[n], dtype)
        same = np.dtype(dtype).kind == data.dtype[name].kind
        return out, not same or np.array_equal(out[name], data[name])
    out = _cast(data, dtype)
    lossless = out.dtype.kind == data.dtype.kind and np.array_equal(out, data)
    return out, lossless or out.dtype.kind != data.dtype.kind


def _cast(a, dtype):
    try:
        with np.errstate(all="ignore"):
            return a.astype(dtype)
    except (ValueError, TypeError):  # bytes that are not numbers: zeros of the new type
        return np.zeros(a.shape, dtype)


@SETTINGS(24)
@given(data=st.data())
def test_datasets_of_the_wrong_dtype_or_shape(pristine, folder, data):
    name = data.draw(st.sampled_from(sorted(pristine.datasets)), label="dataset")
    change = data.draw(st.one_of(st.tuples(st.just("dtype"), st.sampled_from(DTYPES), st.integers(0, 5)),
                                 st.tuples(st.just("shape"), st.sampled_from(SHAPES))), label="change")
    old = pristine.datasets[name]
    rng = np.random.default_rng(0)
    if change[0] == "dtype":
        new, strict = retyped(old, change[1], change[2])
    else:
        new = reshaped(old, change[1], rng)
        strict = np.shape(new) != old.shape or np.array_equal(new, old)  # else: other values, same shape
    path = write(folder, pristine.raw)
    with h5py.File(path, "r+", libver="latest") as f:
        kw = {} if np.ndim(new) == 0 else {"maxshape": (None,) * np.ndim(new)}
        rewrite(f, name, new, **kw)
    check_all(pristine, path, Damage() if strict else Damage(frozenset()))


ARRAYS = [np.array([1, 2]), np.array([0.9, 0.9]), np.zeros(0), np.array(["a", "b"], dtype="S1"), np.zeros((1, 1))]
STRINGS = ["not a number", "", "7", "0.9", b"\xff", "[1, 2]"]
WRONG = {  # values of another type than the attribute's own
    "str": [7, -1, 1.5, float("nan"), True, np.int8(3), 1 << 62, 1e300, *ARRAYS],
    "int": [1.5, float("nan"), float("inf"), -2.0, True, 1e300, *STRINGS, *ARRAYS],
    "float": [True, np.bool_(False), *STRINGS, *ARRAYS],
}
ECHOED = ("created", "dyn_version")  # free-form strings: inspect shows whatever is there


def type_of(value):
    if isinstance(value, (str, bytes)):
        return "str"
    return "int" if np.asarray(value).dtype.kind in "iu" else "float"


@SETTINGS(24)
@given(data=st.data())
def test_attributes_of_the_wrong_type(pristine, folder, data):
    obj, attr = data.draw(st.sampled_from(sorted(pristine.attrs)), label="attribute")
    value = data.draw(st.sampled_from(WRONG[pristine.attrs[obj, attr]]), label="value")
    path = write(folder, pristine.raw)
    with h5py.File(path, "r+", libver="latest") as f:
        f[obj].attrs[attr] = value
    mask = (attr,) if obj == "/" and attr in ECHOED else ()
    check_all(pristine, path, Damage(mask=mask))


def huge_damage():
    resizable = st.sampled_from(["metrics", "weights/epoch", "networks/sgd/params", "networks/ema-0.9/buffers",
                                 "splits/val/epoch", "splits/val/sgd/correct", "splits/test/ema-0.99/predicted",
                                 "splits/val/ema-0.9/loss"])
    fixed = st.sampled_from(["splits/val/labels", "splits/val/index", "splits/val/images", "weights/table",
                             "status"])
    wide = st.sampled_from(["splits/val/sgd/correct", "networks/ema-0.99/params", "networks/sgd/buffers",
                            "metrics", "splits/val/ema-0.99/predicted", "splits/val/images"])
    big = st.sampled_from([1 << 31, 1 << 40, (1 << 62) + 1])
    return st.one_of(
        st.tuples(st.just("resize"), resizable),
        st.tuples(st.just("rows"), fixed),
        st.tuples(st.just("columns"), wide),
        st.tuples(st.just("counter"), st.sampled_from(STREAMS), st.one_of(big, st.integers(1, 3))),
        st.tuples(st.just("size"), st.sampled_from(["val", "test"]), st.one_of(big, st.integers(-3, 3))),
        st.tuples(st.just("table"), st.sampled_from(["offset", "size"]), st.integers(0, 3),
                  st.one_of(big, st.integers(-3, 40))),
    )


@SETTINGS(24)
@given(damage=huge_damage())
@example(damage=("rows", "splits/val/labels"))
@example(damage=("columns", "networks/ema-0.99/params"))
@example(damage=("table", "offset", 0, 1 << 40))
def test_huge_declared_sizes(pristine, folder, damage):
    path = write(folder, pristine.raw)
    with h5py.File(path, "r+", libver="latest") as f:
        kind = damage[0]
        if kind == "resize":
            f[damage[1]].resize(1 << 40, axis=0)
        elif kind == "rows":
            huge_copy(f, damage[1], 0)
        elif kind == "columns":
            huge_copy(f, damage[1], 1, 1 << 32)
        elif kind == "counter":  # more rows committed than the datasets hold
            stream, extra = damage[1], damage[2]
            status_set(f, f"rows/{stream}", committed(stream) + extra if extra < 8 else extra)
        elif kind == "size":
            split, size = damage[1], damage[2]
            f[f"splits/{split}"].attrs["size"] = SPEC.samples + size if abs(size) < 8 else size
        else:
            _, field, row, value = damage
            t = f["weights/table"][...]
            t[field][row] = value
            f["weights/table"][...] = t
    check_all(pristine, path, Damage())


@SETTINGS(10)
@given(rows=st.fixed_dictionaries({s: st.integers(0, committed(s)) for s in STREAMS}),
       which=st.sets(st.sampled_from(STREAMS), min_size=1))
def test_lowered_counters_give_the_answers_of_a_shorter_run(pristine, folder, rows, which):
    path = write(folder, pristine.raw)
    with h5py.File(path, "r+", libver="latest") as f:
        for stream in which:
            status_set(f, f"rows/{stream}", rows[stream])
    check_all(pristine, path, Damage())


def test_report_on_damaged_runs_draws_what_is_intact_or_refuses(pristine, folder, forkserver, tmp_path):
    """`dyn analyze report` (it draws, so only a few damaged files): a page or one line."""
    damages = {
        "truncated": lambda p: p.write_bytes(pristine.raw[: len(pristine.raw) // 2]),
        "no labels": lambda p: _h5(p, lambda f: f.__delitem__("splits/val/labels")),
        "decay a string": lambda p: _h5(p, lambda f: f["networks/ema-0.9"].attrs.__setitem__("decay", "x")),
        "huge labels": lambda p: _h5(p, lambda f: huge_copy(f, "splits/val/labels", 0)),
    }
    for what, damage in damages.items():
        path = write(folder, pristine.raw)
        damage(path)
        out = tmp_path / what.replace(" ", "-")
        r = forkserver.run("analyze", "report", path, "--out-dir", out, timeout=120, memory=MEMORY)
        assert r.signal is None and r.code is not None, f"{what}: {r}"
        assert "Traceback" not in r.stderr, f"{what}: {r.stderr}"
        if r.code:
            assert r.stderr.startswith("dyn: error: ") and r.stderr.count("\n") == 1, f"{what}: {r.stderr!r}"
        else:
            assert (out / "index.html").exists(), what


def _h5(path, fn):
    with h5py.File(path, "r+", libver="latest") as f:
        fn(f)


def _table_set(field, row, value):
    def damage(f):
        t = f["weights/table"][...]
        t[field][row] = value
        f["weights/table"][...] = t
    return damage


def _retype(name, dtype):
    return lambda f: rewrite(f, name, _cast(f[name][...], dtype), maxshape=(None,) * f[name].ndim)


def _attr(obj, name, value):
    return lambda f: f[obj].attrs.__setitem__(name, value)


# Damage that once gave a traceback or a wrong answer (found by the tests above), each kept here
REGRESSIONS = {
    # flips read labels and indices by hand: a KeyError traceback
    "labels deleted": lambda f: f.__delitem__("splits/val/labels"),
    # float("x") in network_info: a ValueError traceback
    "decay a string": _attr("networks/ema-0.9", "decay", "x"),
    "decay an array": _attr("networks/ema-0.9", "decay", np.array([0.9, 0.9])),
    "kind a number": _attr("networks/sgd", "kind", 3),
    # inspect showed the value int() made of it
    "num_classes a fraction": _attr("splits/val", "num_classes", 1.5),
    # 42 of 43 samples fit the same packed width: every analysis counted 42
    "size one less than the labels": _attr("splits/val", "size", SPEC.samples - 1),
    # a row of 2**32 float32: a MemoryError traceback
    "params 2**32 columns": lambda f: huge_copy(f, "networks/ema-0.99/params", 1, 1 << 32),
    # weight-diff computed with complex buffers; epochs came out as floats
    "buffers complex": _retype("networks/sgd/buffers", "c8"),
    "epochs float": _retype("splits/val/epoch", "f8"),
    # agreement: a ValueError traceback
    "predicted shorter than committed": lambda f: rewrite(f, "splits/val/sgd/predicted",
                                                          f["splits/val/sgd/predicted"][:5], maxshape=(None, None)),
    # inspect counted parameters the rows do not hold
    "table row size 2**40": _table_set("size", 0, 1 << 40),
    "table row size 0": _table_set("size", 0, 0),
    "table empty": lambda f: rewrite(f, "weights/table", f["weights/table"][:0]),
}


@pytest.mark.parametrize("what", list(REGRESSIONS))
def test_damage_that_once_gave_a_traceback_or_a_wrong_answer(pristine, folder, what):
    path = write(folder, pristine.raw)
    _h5(path, REGRESSIONS[what])
    check_all(pristine, path, Damage())


def _relink(name, make):
    """Replace object `name` by the link make(f, pristine_path) returns."""
    def damage(f, pristine_path):
        link = make(f, pristine_path)
        del f[name]
        f[name] = link
    return damage


def _copy_then_link(f, pristine_path):
    f.copy("splits/val/labels", "labels_copy")
    return h5py.SoftLink("/labels_copy")


# dyn writes only hard links. A link out of the file was followed (wherever its file name led)
# and a link to nothing passed for the object (inspect said images: true): both are refused.
# A soft link inside the file to what should be there reads as that object.
LINKS = {
    "images a dangling link": (_relink("splits/val/images", lambda f, p: h5py.SoftLink("/nowhere")), False),
    "metrics a link to itself": (_relink("metrics", lambda f, p: h5py.SoftLink("/metrics")), False),
    "a network's bits a link into the pristine file": (_relink(
        "splits/val/sgd/correct", lambda f, p: h5py.ExternalLink(str(p), "/splits/val/sgd/correct")), False),
    "labels a soft link to a copy in the file": (_relink("splits/val/labels", _copy_then_link), True),
}


@pytest.mark.parametrize("what", list(LINKS))
def test_links_out_of_the_file_or_to_nothing_are_refused(pristine, folder, what):
    damage, intact = LINKS[what]
    path = write(folder, pristine.raw)
    _h5(path, lambda f: damage(f, pristine.path))
    answers = check_all(pristine, path, Damage())
    if intact:
        assert all(answers.values()), [k for k, v in answers.items() if v is None]
    else:
        assert not any(answers.values()), [k for k, v in answers.items() if v is not None]
