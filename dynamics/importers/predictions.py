"""`dyn import predictions`: per-epoch correctness or predicted labels as a run file.

Three kinds of source, in any mix (every network must cover the same epochs and samples):

- the paper's code: a `preds/` folder of `{e}.npy` (SGD) and `{e}_average.npy` (EMA),
  boolean arrays over the validation samples, True where the top-1 prediction was right,
  written after training epoch e + 1 and so recorded as dyn's epoch e + 1;
- `.npy` / `.npz` arrays of shape (epochs, samples): bool = correctness, integers = predicted
  labels (which need the true labels: `--labels FILE`, or a `labels` array in the .npz). A
  .npy is one network (`--net NAME=FILE`, else named by its file name); a .npz holds one
  array per network, plus optional `epochs` and `labels`;
- CSV or Parquet in long form: columns `epoch`, `sample`, `network` and `correct`, or
  `predicted` and `label`.

Arrays are read with `allow_pickle=False`: an object array (a pickle) is refused. Without
true labels the run's labels are -1 and its number of classes 0. Networks named `sgd` and
`ema-<decay>` are recorded as SGD and EMA networks; so are the usual spellings of an EMA network
(`ema`, `EMA`, `ema_0.99`, `ema0.99`, `average`, `avg`, `avg-0.999`), as `ema-<decay>` where the name
carries the decay, else `ema` (the config's import.renamed says what became what). Other names
are recorded as "other", which no default selection of the analyses includes. Such a
run holds no weights; its metrics are the epoch and `<net>/<split>/acc`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DynError, UsageError
from ..layout import NAME_RULE, Layout, Network, Split, valid_name
from .sources import natural_key, stem

ARRAY_SUFFIXES = (".npy", ".npz")
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
SUFFIXES = ARRAY_SUFFIXES + TABLE_SUFFIXES
_PAPER_FILE = re.compile(r"^(\d+)(_average)?\.npy$")
_EMA_NAME = re.compile(r"^ema-(.+)$")
# the usual spellings of an EMA network, with its decay where the name carries one:
# ema, EMA, ema_0.99, ema-0.99, ema0.99, average, avg, avg_0.999, ...
_EMA_SPELLING = re.compile(r"^(?:ema|avg|average)(?:[-_]?(\d*\.\d+|\d+(?:\.\d+)?e-?\d+))?$", re.IGNORECASE)
SPECIAL_KEYS = ("epochs", "labels", "index")


@dataclass
class Preds:
    """One network's records: (E, N) correctness or predicted labels over epochs."""

    name: str
    epochs: np.ndarray  # (E,) int64
    source: str  # for messages and provenance
    correct: np.ndarray | None = None  # (E, N) bool
    predicted: np.ndarray | None = None  # (E, N) int

    @property
    def shape(self) -> tuple[int, int]:
        a = self.correct if self.correct is not None else self.predicted
        return tuple(a.shape)


@dataclass
class Collected:
    nets: list[Preds]
    labels: np.ndarray | None = None
    labels_from: str = ""
    index: np.ndarray | None = None


# ------------------------------------------------------------------------------ readers
def load_array(path, what: str = "array") -> np.ndarray:
    """np.load without pickles; one-line errors."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as e:
        raise DynError(f"{path}: cannot be read ({e.strerror})") from None
    if magic != b"\x93NUMPY":  # numpy would take anything else for a pickle
        raise DynError(f"{path}: not a numpy {what} (.npy) file")
    try:
        return np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DynError(f"{path}: no such file") from None
    except ValueError as e:
        if "pickle" in str(e).lower():
            raise DynError(f"{path}: holds a pickled (object) array, which dyn never loads; save plain "
                           "bool or integer arrays") from None
        raise DynError(f"{path}: not a numpy {what} ({e})") from None
    except MemoryError:
        raise DynError(f"{path}: declares an array larger than memory (damaged?)") from None
    except Exception as e:  # a damaged header: numpy raises OSError, EOFError, SyntaxError, TypeError...
        raise DynError(f"{path}: not a numpy {what} ({_first(e)})") from None


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:120]}" if text else type(e).__name__


def is_paper_file(path: Path) -> bool:
    return bool(_PAPER_FILE.match(path.name))


def read_paper(files: list[Path], ema_name: str = "ema") -> list[Preds]:
    """The paper's `{e}.npy` / `{e}_average.npy` files -> networks sgd and ema, at dyn's epoch
    e + 1: the authors' loop counts epochs from 0 and saves after training, so file e holds the
    state after e + 1 passes over the data, which dyn calls epoch e + 1 (0: initial weights)."""
    by_net: dict[str, dict[int, Path]] = {"sgd": {}, ema_name: {}}
    for f in files:
        m = _PAPER_FILE.match(f.name)
        by_net[ema_name if m.group(2) else "sgd"][int(m.group(1))] = f
    if by_net["sgd"] and by_net[ema_name]:
        for a, b, what in (("sgd", ema_name, "EMA (_average.npy)"), (ema_name, "sgd", "SGD")):
            missing = sorted(set(by_net[a]) - set(by_net[b]))
            if missing:
                raise DynError(f"{by_net[a][missing[0]]}: no {what} file for its epoch {missing[0]}")
    out = []
    for net, files_ in by_net.items():
        if not files_:
            continue
        epochs = np.array(sorted(files_), dtype=np.int64)  # as the files are numbered
        rows = []
        for e in epochs:
            a = load_array(files_[e])
            if a.ndim != 1:
                raise DynError(f"{files_[e]}: holds an array of shape {list(a.shape)}; the paper's files "
                               "hold one value per sample")
            if rows and a.shape != rows[0].shape:
                first = files_[epochs[0]]
                raise DynError(f"{files_[e]}: {a.shape[0]} samples, but {first} has {rows[0].shape[0]}: "
                               "predictions of different lengths")
            rows.append(a)
        folder = files_[epochs[0]].parent
        pattern = "{e}_average.npy" if net != "sgd" else "{e}.npy"
        out.append(_values(net, epochs + 1, np.stack(rows), f"{folder}/{pattern} as epoch e + 1"))
    return out


def read_npy(name: str, path: Path, epochs: np.ndarray | None, first_epoch: int) -> Preds:
    a = load_array(path)
    if a.ndim != 2:
        raise DynError(f"{path}: holds an array of shape {list(a.shape)}; expected (epochs, samples)")
    return _values(name, _epochs(epochs, len(a), first_epoch, path), a, str(path))


def read_npz(path: Path, first_epoch: int) -> Collected:
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as e:  # a damaged archive: OSError, ValueError, EOFError, BadZipFile...
        raise DynError(f"{path}: not a numpy .npz archive ({_first(e)})") from None
    with z:
        try:
            arrays = {k: z[k] for k in z.files}
        except ValueError as e:
            if "pickle" in str(e).lower():
                raise DynError(f"{path}: holds a pickled (object) array, which dyn never loads") from None
            raise DynError(f"{path}: a damaged .npz archive ({_first(e)})") from None
        except MemoryError:
            raise DynError(f"{path}: declares an array larger than memory (damaged?)") from None
        except Exception as e:
            raise DynError(f"{path}: a damaged .npz archive ({_first(e)})") from None
    epochs = arrays.pop("epochs", None)
    labels = arrays.pop("labels", None)
    index = arrays.pop("index", None)
    if not arrays:
        raise DynError(f"{path}: holds no network arrays besides {', '.join(SPECIAL_KEYS)}")
    nets = []
    for name, a in arrays.items():
        if a.ndim != 2:
            raise DynError(f"{path}: array {name!r} has shape {list(a.shape)}; expected (epochs, samples)")
        nets.append(_values(name, _epochs(epochs, len(a), first_epoch, path), a, f"{path}:{name}"))
    return Collected(nets, labels, f"{path}:labels" if labels is not None else "", index)


def read_table(path: Path) -> Collected:
    """Long form: one row per (epoch, sample, network)."""
    import pandas as pd

    try:
        if path.name.endswith(".csv"):
            df = pd.read_csv(path)
        else:
            df = pd.read_parquet(path)
    except Exception as e:  # pandas/pyarrow raise many kinds for a damaged file
        raise DynError(f"{path}: cannot be read as {path.suffix[1:]} ({type(e).__name__}: "
                       f"{str(e).splitlines()[0][:120] if str(e) else ''})") from None
    df = df.reset_index(drop=True)  # row labels = positions, for indexing below
    cols = set(df.columns)
    need = {"epoch", "sample", "network"}
    if not need <= cols or not ({"correct"} <= cols or {"predicted", "label"} <= cols):
        raise DynError(f"{path}: needs columns epoch, sample, network and correct (or predicted and label); "
                       f"has {', '.join(map(str, df.columns))}")
    for c in ("epoch", "sample") + (("predicted", "label") if "predicted" in cols else ()):
        if not pd.api.types.is_integer_dtype(df[c]):
            raise DynError(f"{path}: column {c!r} must hold integers (has {df[c].dtype})")
    samples = np.unique(df["sample"].to_numpy(np.int64))
    pos = np.searchsorted(samples, df["sample"].to_numpy(np.int64))
    n = len(samples)
    labels = None
    if "label" in cols:
        lab = np.full(n, -1, np.int64)
        lab[pos] = df["label"].to_numpy(np.int64)
        check = lab[pos] != df["label"].to_numpy(np.int64)
        if check.any():
            s = int(df["sample"].to_numpy()[np.argmax(check)])
            raise DynError(f"{path}: sample {s} has more than one label")
        labels = lab
    nets = []
    for name, g in df.groupby("network", sort=False):
        name = str(name)
        epochs = np.unique(g["epoch"].to_numpy(np.int64))
        row = np.searchsorted(epochs, g["epoch"].to_numpy(np.int64))
        col = pos[g.index.to_numpy()]
        seen = np.zeros((len(epochs), n), np.int64)
        np.add.at(seen, (row, col), 1)
        if (seen > 1).any():
            e, s = np.argwhere(seen > 1)[0]
            raise DynError(f"{path}: network {name!r} has more than one row for epoch {epochs[e]}, sample {samples[s]}")
        if (seen == 0).any():
            e, s = np.argwhere(seen == 0)[0]
            raise DynError(f"{path}: network {name!r} has no row for epoch {epochs[e]}, sample {samples[s]} "
                           f"({int((seen == 0).sum())} missing): every network needs every sample at every epoch")
        if "correct" in cols:
            values = np.zeros((len(epochs), n), bool)
            values[row, col] = _bool_column(g["correct"], path)
        else:
            values = np.zeros((len(epochs), n), np.int64)
            values[row, col] = g["predicted"].to_numpy(np.int64)
        p = _values(name, epochs, values, f"{path}:{name}")
        if "correct" in cols and "predicted" in cols:
            pred = np.zeros((len(epochs), n), np.int64)
            pred[row, col] = g["predicted"].to_numpy(np.int64)
            p.predicted = pred
        nets.append(p)
    return Collected(nets, labels, f"{path}:label" if labels is not None else "", samples)


def _bool_column(s, path: Path) -> np.ndarray:
    v = s.to_numpy()
    if v.dtype == bool:
        return v
    if v.dtype.kind in "iu" and np.isin(v, (0, 1)).all():
        return v.astype(bool)
    if v.dtype == object:
        low = s.astype(str).str.lower()
        if low.isin(("true", "false")).all():
            return (low == "true").to_numpy()
    raise DynError(f"{path}: column 'correct' must hold booleans (True/False or 1/0)")


def _values(name: str, epochs: np.ndarray, a: np.ndarray, source: str) -> Preds:
    if a.ndim == 2 and 0 in a.shape:
        raise DynError(f"{source}: holds an empty array of shape {list(a.shape)}; expected (epochs, samples)")
    if a.dtype == bool:
        return Preds(name, epochs, source, correct=np.asarray(a))
    if a.dtype.kind in "iu":
        return Preds(name, epochs, source, predicted=np.asarray(a).astype(np.int64))
    raise DynError(f"{source}: holds {a.dtype} values; expected bool correctness or integer predicted labels")


def _epochs(epochs, count: int, first_epoch: int, path) -> np.ndarray:
    if epochs is None:
        return np.arange(first_epoch, first_epoch + count, dtype=np.int64)
    e = np.asarray(epochs)
    if e.ndim != 1 or e.dtype.kind not in "iu" or len(e) != count:
        raise DynError(f"{path}: 'epochs' must be {count} integers, one per row")
    return e.astype(np.int64)


# ------------------------------------------------------------------------------ collect
def collect(sources=(), nets: dict[str, str] | None = None, labels=None, first_epoch: int = 1,
            decay: float | None = None) -> Collected:
    """Read every source into one Collected; DynError naming the file on any problem."""
    from .sources import expand

    ema = f"ema-{float(decay)!r}" if decay is not None else "ema"
    out = Collected([])
    files = expand(sources, SUFFIXES) if sources else []
    paper = [f for f in files if is_paper_file(f)]
    others = [f for f in files if not is_paper_file(f)]
    if paper:
        out.nets += read_paper(sorted(paper, key=natural_key), ema)
    for f in others:
        if f.name.endswith(".npz"):
            c = read_npz(f, first_epoch)
            out.nets += c.nets
            _merge_side(out, c)
        elif f.name.endswith(TABLE_SUFFIXES):
            c = read_table(f)
            out.nets += c.nets
            _merge_side(out, c)
        elif f.name.endswith(".npy"):
            out.nets.append(read_npy(stem(f), f, None, first_epoch))
        else:
            raise DynError(f"{f}: not a predictions file (expected {', '.join(SUFFIXES)})")
    for name, path in (nets or {}).items():
        out.nets.append(read_npy(name, Path(path), None, first_epoch))
    if labels is not None:
        if out.labels is not None:
            raise UsageError(f"--labels given, but {out.labels_from} holds labels already")
        lab = load_array(labels, "array of labels")
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise DynError(f"{labels}: labels must be a 1-D integer array, has {lab.dtype} {list(lab.shape)}")
        out.labels, out.labels_from = lab.astype(np.int64), str(labels)
    if not out.nets:
        raise UsageError("no predictions given: SOURCES (a preds/ folder, .npy/.npz, .csv/.parquet) or --net")
    return out


def _merge_side(out: Collected, c: Collected) -> None:
    if c.labels is not None:
        if out.labels is not None and not np.array_equal(out.labels, c.labels):
            raise DynError(f"{c.labels_from}: labels differ from {out.labels_from}")
        out.labels, out.labels_from = c.labels, c.labels_from
    if c.index is not None:
        if out.index is not None and not np.array_equal(out.index, c.index):
            raise DynError(f"{c.labels_from or 'a table'}: sample ids differ from another source's")
        out.index = c.index


# ---------------------------------------------------------------------------- validate
def network(name: str) -> Network:
    """The network a name stands for: `sgd`; an EMA network under its usual spellings (see
    _EMA_SPELLING), recorded as `ema-<decay>` when the name carries a decay in (0, 1), else as
    `ema`; anything else as kind "other" under its own name."""
    if name.lower() == "sgd":
        return Network.sgd()
    m = _EMA_NAME.match(name)
    if m:
        try:
            d = float(m.group(1))
            if 0 < d < 1:
                return Network.ema(d, name)
        except ValueError:
            pass
    m = _EMA_SPELLING.match(name)
    if m:
        d = float(m.group(1)) if m.group(1) else None
        if d is None:
            return Network("ema", "ema", None)
        if 0 < d < 1:
            return Network.ema(d)
    return Network(name, "other")


def check(c: Collected) -> tuple[np.ndarray, int]:
    """(epochs, samples) shared by every network, or DynError naming the odd one out."""
    names = [p.name for p in c.nets]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        srcs = [p.source for p in c.nets if p.name == dup]
        raise DynError(f"{srcs[1]}: network {dup!r} is given twice (also by {srcs[0]})")
    first = c.nets[0]
    for p in c.nets[1:]:
        if p.shape[1] != first.shape[1]:
            raise DynError(f"{p.source}: {p.shape[1]} samples, but {first.source} has {first.shape[1]}: "
                           "predictions of different lengths")
        if not np.array_equal(p.epochs, first.epochs):
            raise DynError(f"{p.source}: epochs {_span(p.epochs)}, but {first.source} has {_span(first.epochs)}: "
                           "predictions of different lengths")
    e = first.epochs
    if len(e) == 0:
        raise DynError(f"{first.source}: holds no epochs")
    if (np.diff(e) <= 0).any() or e[0] < 0:
        raise DynError(f"{first.source}: epochs must be non-negative and increasing")
    n = first.shape[1]
    for src, arr in (("labels", c.labels), ("sample ids", c.index)):
        if arr is not None and len(arr) != n:
            raise DynError(f"{c.labels_from or src}: {len(arr)} {src}, but the predictions have {n} samples")
    for p in c.nets:
        if p.correct is None and c.labels is None:
            raise UsageError(f"{p.source}: holds integer predicted labels; pass the true labels with --labels "
                             "FILE (or, for 0/1 correctness, save it as bool)")
    return e, n


def _span(e: np.ndarray) -> str:
    return f"{e[0]}..{e[-1]} ({len(e)})" if len(e) else "none"


# ------------------------------------------------------------------------------- write
def import_predictions(sources=(), out=None, *, nets=None, labels=None, split="val", first_epoch=1,
                       decay=None, overwrite=False) -> Path:
    """Read, check, then write the run all or nothing. Returns the path written."""
    from ..writer import RunWriter
    from .output import check_target, staged

    out = check_target(out, overwrite)
    if decay is not None and not 0 < decay < 1:
        raise UsageError(f"--decay must lie in (0, 1), not {decay}")
    for flag, name in [("--split", split)] + [("--net", n) for n in nets or {}]:
        if not valid_name(name):
            raise UsageError(f"{flag} {name!r}: {NAME_RULE}")
    c = collect(sources, nets, labels, first_epoch, decay)
    for p in c.nets:  # names found in the files (a .npz key, a CSV's network column, a file name)
        if not valid_name(p.name):
            raise DynError(f"{p.source}: network {p.name!r} cannot be recorded: {NAME_RULE}")
    epochs, n = check(c)
    by_name, renamed = {}, {}
    for p in c.nets:  # ema_0.99, avg, average, ... recorded as the EMA networks they are
        net = network(p.name)
        if net.name in by_name:
            raise DynError(f"{p.source}: network {p.name!r} is {net.name!r}, as is {by_name[net.name].source}; "
                           f"rename one (--net NAME=FILE)")
        by_name[net.name] = p
        if net.name != p.name:
            renamed[p.name] = net.name
    networks = sorted((network(p.name) for p in c.nets),
                      key=lambda x: (x.kind != "sgd", x.kind != "ema", x.decay or 0.0))
    known = c.labels is not None
    labels_ = c.labels if known else np.full(n, -1, np.int64)
    has_pred = any(p.predicted is not None for p in c.nets)
    classes = 0
    if known:
        top = [int(labels_.max()) if n else -1] + [int(p.predicted.max()) for p in c.nets
                                                   if p.predicted is not None and p.predicted.size]
        classes = max(top) + 1
    sp = Split(labels=labels_, index=c.index, num_classes=classes, predicted=has_pred, loss=False)
    layout = Layout(networks=networks, splits={split: sp},
                    metrics=[f"{x.name}/{split}/acc" for x in networks])
    cfg = {"source": "dyn import predictions", "dataset": None, "model": None,
           "decays": sorted(x.decay for x in networks if x.decay is not None),
           "import": {"dyn_version": __version__, "split": split, "labels": c.labels_from or "unknown (-1)",
                      "networks": {network(p.name).name: p.source for p in c.nets},
                      **({"renamed": renamed} if renamed else {})}}
    with staged(out, overwrite) as tmp:
        with RunWriter.create(tmp, layout, cfg, swmr=False, durable=False) as w:
            for i, e in enumerate(epochs):
                evals, row = {}, {}
                for net in networks:
                    p = by_name[net.name]
                    pred = None if p.predicted is None else p.predicted[i]
                    correct = p.correct[i] if p.correct is not None else pred == labels_
                    evals[net.name] = {"correct": correct, "predicted": pred}
                    row[f"{net.name}/{split}/acc"] = float(np.mean(correct)) if n else float("nan")
                w.append(int(e), metrics=row, evals={split: evals})
            w.finish()
    return out
