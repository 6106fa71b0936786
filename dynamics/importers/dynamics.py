"""`dyn import dynamics`: per-example training dynamics of other projects as a run's
train-presented split, so that `dyn analyze forgetting | datamap | aum` work on them.

Read:
- cartography (allenai/cartography): a folder of `dynamics_epoch_{e}.jsonl` (or the folder
  holding `training_dynamics/`), one JSON line per example per epoch:
  {"guid": id, "logits_epoch_{e}": [floats], "gold": class}. From the logits: correctness
  (argmax == gold), the softmax probability of gold, the margin.
- the aum package: `full_aum_records.csv` (AUMCalculator(compressed=False)): sample_id,
  num_measurements, target_logit (the target class), target_val, other_logit, other_val,
  margin, aum; measurement k is recorded as epoch k. `aum_values.csv` holds only final values
  and is refused with what to give instead.
- example_forgetting (mtoneva): `*_stats_dict.pkl`, {example id: [losses, accuracies, margins]}
  per presentation. It is a pickle: read by a restricted unpickler that builds dicts, lists,
  tuples, numbers and strings only (and numpy scalars, how numpy ids and floats pickle); any
  other object is refused in one line, nothing is run. prob = exp(-loss) (their loss is the
  per-example cross-entropy, -log p).

Examples (ids) are sorted by id; an integer id is the example's index in the data set, else the
index is its position and the ids are kept in the run's config.
"""

from __future__ import annotations

import csv
import io
import json
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DynError, UsageError

FORMATS = ("auto", "cartography", "aum", "toneva")


@dataclass
class Dynamics:
    """One network's per-example records: (E, N) arrays over the epochs, NaN where unknown."""

    fmt: str
    source: str
    epochs: np.ndarray
    ids: list
    labels: np.ndarray
    correct: np.ndarray
    prob: np.ndarray | None = None
    margin: np.ndarray | None = None
    loss: np.ndarray | None = None
    num_classes: int = 0
    notes: dict = field(default_factory=dict)


def _ordered_ids(ids) -> tuple[list, np.ndarray, bool]:
    """(ids sorted, data-set index, whether the index is the ids themselves: integer ids)."""
    ids = list(ids)
    if all(isinstance(i, (int, np.integer)) or (isinstance(i, str) and re.fullmatch(r"-?\d+", i.strip()))
           for i in ids):
        order = sorted(range(len(ids)), key=lambda k: int(ids[k]))
        return [ids[k] for k in order], np.array([int(ids[k]) for k in order], np.int64), True
    ids = sorted(ids, key=str)
    return ids, np.arange(len(ids), dtype=np.int64), False


# ---------------------------------------------------------------------------- cartography
EPOCH_FILE = re.compile(r"dynamics_epoch_(\d+)\.jsonl$")


def cartography_files(path: Path) -> list[tuple[int, Path]]:
    folder = path / "training_dynamics" if (path / "training_dynamics").is_dir() else path
    found = sorted((int(m.group(1)), p) for p in folder.iterdir() if (m := EPOCH_FILE.search(p.name)))
    return found


def read_cartography(path: Path) -> Dynamics:
    files = cartography_files(path)
    if not files:
        raise DynError(f"{path}: no dynamics_epoch_<e>.jsonl files (cartography's training_dynamics/)")
    per_epoch, gold = [], {}
    for e, f in files:
        key, rows = f"logits_epoch_{e}", {}
        with open(f, encoding="utf-8") as fh:
            for ln, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    rec = json.loads(line)
                    guid, logits, y = rec["guid"], rec[key], int(rec["gold"])
                    logits = np.asarray(logits, dtype=np.float64)
                    if logits.ndim != 1 or not 0 <= y < logits.size:
                        raise ValueError(f"gold {y} is not an index of {logits.size} logits")
                except (ValueError, KeyError, TypeError) as err:
                    what = f"no {err}" if isinstance(err, KeyError) else str(err)
                    raise DynError(f"{f}: line {ln}: not a cartography record ({what}); expected "
                                   f'{{"guid": id, "{key}": [logits], "gold": class}}') from None
                if gold.setdefault(guid, y) != y:
                    raise DynError(f"{f}: line {ln}: guid {guid!r} has gold {y}, earlier {gold[guid]}")
                rows[guid] = logits
        per_epoch.append(rows)
    ids, index, _ = _ordered_ids(gold)
    n, E = len(ids), len(files)
    classes = max(v.size for rows in per_epoch for v in rows.values())
    correct = np.zeros((E, n), bool)
    prob = np.full((E, n), np.nan, np.float32)
    margin = np.full((E, n), np.nan, np.float32)
    labels = np.array([gold[i] for i in ids], np.int64)
    for t, rows in enumerate(per_epoch):
        for k, guid in enumerate(ids):
            z = rows.get(guid)
            if z is None:
                continue  # not in this epoch's file: not presented
            y = labels[k]
            other = np.delete(z, y)
            margin[t, k] = z[y] - (other.max() if other.size else -np.inf)
            ez = np.exp(z - z.max())
            prob[t, k] = ez[y] / ez.sum()
            correct[t, k] = int(np.argmax(z)) == y
    return Dynamics("cartography", str(path), np.array([e for e, _ in files], np.int64), ids, labels, correct,
                    prob=prob, margin=margin, num_classes=classes)


# ----------------------------------------------------------------------------------- aum
AUM_COLUMNS = ("sample_id", "num_measurements", "target_logit", "margin")


def read_aum(path: Path) -> Dynamics:
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        cols = reader.fieldnames or []
        if set(cols) == {"sample_id", "aum"}:
            raise DynError(f"{path}: holds only each sample's final AUM (aum_values.csv); import the records per "
                           "measurement: full_aum_records.csv, written by AUMCalculator(save_dir, compressed=False)")
        missing = [c for c in AUM_COLUMNS if c not in cols]
        if missing:
            raise DynError(f"{path}: not the aum package's full_aum_records.csv: no column(s) {', '.join(missing)}")
        recs = {}
        labels, classes = {}, 0
        for ln, r in enumerate(reader, 2):
            try:
                sid, k, y, m = r["sample_id"], int(r["num_measurements"]), int(float(r["target_logit"])), float(r["margin"])
                if k < 1:
                    raise ValueError(f"num_measurements {k}")
            except (TypeError, ValueError) as err:
                raise DynError(f"{path}: line {ln}: {err}") from None
            if labels.setdefault(sid, y) != y:
                raise DynError(f"{path}: line {ln}: sample {sid!r} has target {y}, earlier {labels[sid]}")
            recs[sid, k] = m
            other = r.get("other_logit")
            classes = max(classes, y + 1, int(float(other)) + 1 if other not in (None, "") else 0)
    if not recs:
        raise DynError(f"{path}: holds no records")
    ids, index, _ = _ordered_ids(labels)
    pos = {s: i for i, s in enumerate(ids)}
    E = max(k for _, k in recs)
    margin = np.full((E, len(ids)), np.nan, np.float32)
    for (sid, k), m in recs.items():
        margin[k - 1, pos[sid]] = m
    correct = np.nan_to_num(margin, nan=-1) > 0  # right exactly when the target logit is the largest
    return Dynamics("aum", str(path), np.arange(1, E + 1), ids, np.array([labels[s] for s in ids], np.int64),
                    correct, margin=margin, num_classes=classes,
                    notes={"epochs": "measurement k of each sample recorded as epoch k"})


# -------------------------------------------------------------------------------- toneva
class _Restricted(pickle.Unpickler):
    """Builds plain containers, numbers and strings only; numpy scalars (how numpy ids and
    floats pickle) through numpy's own scalar constructor. Anything else: refused."""

    ALLOWED = {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"), ("numpy", "dtype")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            import importlib

            return getattr(importlib.import_module(module), name)
        raise pickle.UnpicklingError(f"{module}.{name}")


def _plain(x) -> bool:
    if isinstance(x, dict):
        return all(_plain(k) and _plain(v) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return all(_plain(v) for v in x)
    return isinstance(x, (int, float, str, bool, np.integer, np.floating, np.bool_)) or x is None


def read_toneva(path: Path) -> Dynamics:
    try:
        data = _Restricted(io.BytesIO(path.read_bytes())).load()
    except pickle.UnpicklingError as err:
        raise DynError(f"{path}: refused: the pickle asks for {err}, not a dict of lists of numbers "
                       "(a pickle that builds other objects can run code)") from None
    except Exception as err:  # a truncated or garbled pickle
        raise DynError(f"{path}: not a readable pickle ({type(err).__name__}: {err})") from None
    if not isinstance(data, dict) or not _plain(data):
        raise DynError(f"{path}: refused: not a dict of lists of numbers (example_forgetting's stats_dict)")
    stats = {k: v for k, v in data.items() if not isinstance(k, str)}  # 'train', 'test': summaries
    if not stats:
        raise DynError(f"{path}: holds no per-example statistics (integer keys)")
    for k, v in stats.items():
        if not (isinstance(v, (list, tuple)) and len(v) >= 2 and all(isinstance(s, (list, tuple)) for s in v[:3])):
            raise DynError(f"{path}: example {k}: expected [losses, accuracies, margins] per presentation")
    ids, index, _ = _ordered_ids(stats)
    E = max(len(v[1]) for v in stats.values())
    correct = np.zeros((E, len(ids)), bool)
    loss = np.full((E, len(ids)), np.nan, np.float32)
    margin = np.full((E, len(ids)), np.nan, np.float32)
    for j, k in enumerate(ids):
        v = stats[k]
        acc = np.asarray(v[1], float)
        correct[: len(acc), j] = acc > 0
        loss[: len(v[0]), j] = np.asarray(v[0], float)
        if len(v) > 2:
            margin[: len(v[2]), j] = np.asarray(v[2], float)
    with np.errstate(over="ignore"):
        prob = np.exp(-loss.astype(np.float64)).astype(np.float32)
    return Dynamics("toneva", str(path), np.arange(1, E + 1), ids, np.full(len(ids), -1, np.int64), correct,
                    prob=prob, margin=None if np.isnan(margin).all() else margin, loss=loss,
                    notes={"prob": "exp(-loss)", "labels": "unknown (-1): stats_dict holds none",
                           "epochs": "presentation t recorded as epoch t"})


def detect(path: Path) -> str:
    if path.is_dir():
        return "cartography"
    if path.suffix.lower() == ".csv":
        return "aum"
    if path.suffix.lower() in (".pkl", ".pickle"):
        return "toneva"
    raise UsageError(f"{path}: cannot tell the format (a cartography folder, an aum .csv, a stats_dict .pkl); "
                     "give --format")


def import_dynamics(source, out=None, *, fmt="auto", net="sgd", split="train-presented", overwrite=False) -> Path:
    """Read, check, then write the run all or nothing. Returns the path written."""
    from .. import __version__
    from ..layout import NAME_RULE, Layout, Split, valid_name
    from ..writer import Eval, RunWriter
    from .output import check_target, staged
    from .predictions import network

    out = check_target(out, overwrite)
    path = Path(source)
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    for flag, name in (("--split", split), ("--net", net)):
        if not valid_name(name):
            raise UsageError(f"{flag} {name!r}: {NAME_RULE}")
    fmt = detect(path) if fmt == "auto" else fmt
    d = {"cartography": read_cartography, "aum": read_aum, "toneva": read_toneva}[fmt](path)
    ids, index, ids_are_index = _ordered_ids(d.ids)
    nw = network(net)
    sp = Split(labels=d.labels, index=index, num_classes=d.num_classes, predicted=False, loss=d.loss is not None,
               prob=d.prob is not None, margin=d.margin is not None, source=f"imported from {fmt}")
    cfg = {"source": f"dyn import dynamics ({fmt})", "dataset": None, "model": None,
           "decays": [nw.decay] if nw.decay is not None else [],
           "import": {"dyn_version": __version__, "format": fmt, "from": d.source, "split": split, **d.notes,
                      **({} if ids_are_index else {"ids": [str(i) for i in ids]})}}
    with staged(out, overwrite) as tmp:
        with RunWriter.create(tmp, Layout(networks=[nw], splits={split: sp}), cfg, swmr=False, durable=False) as w:
            for t, e in enumerate(d.epochs):
                rec = Eval(correct=d.correct[t],
                           **{k: getattr(d, k)[t] for k in ("prob", "margin", "loss") if getattr(d, k) is not None})
                w.append(int(e), evals={split: {nw.name: rec}})
            w.finish()
    return out
