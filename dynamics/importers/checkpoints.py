"""`dyn import checkpoints`: other projects' checkpoints as one run file of SGD and EMA weights.

Two passes over the files. The first loads each one lazily (torch files memory-mapped, so
only the pickle is read; safetensors' JSON header), finds its layout (layouts.py), pairs
files that hold the two halves of one epoch, orders them, and checks that every file has the
same tensors with the same shapes. Only then is anything written: the second pass reads the
selected tensors file by file into a temporary run file, renamed into place at the end
(output.py), so a bad file anywhere leaves nothing behind.

Parameters and buffers: a state_dict alone does not say which tensors are buffers, so an
import without the model classifies by name and dtype: keys ending in `running_mean`,
`running_var` or `num_batches_tracked`, and every integer or bool tensor, are buffers (stored
exactly, as float64); everything else is a parameter (stored as float32, as format v1 does).
With --evaluate the model's own named_buffers decide instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .. import __version__
from ..errors import DynError, UsageError
from ..format import ema_name
from ..layout import Layout, Network, Param
from .layouts import Detection, Found, LayoutError, detect, select
from .load import SUFFIXES, load
from .records import ORDERS, Part, Record, drop_last_copies, order_records, records_auto, records_paired
from .sources import expand, stem

BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
PARAM_RULE = ("buffers: keys ending in running_mean, running_var or num_batches_tracked, and integer or bool "
              "tensors; parameters: everything else")


def is_buffer(name: str, dtype: str) -> bool:
    """The import's rule when the model is unknown (see the module docstring)."""
    return name.endswith(BUFFER_SUFFIXES) or dtype == "bool" or dtype.startswith(("int", "uint"))


# ------------------------------------------------------------------------- first pass
def scan(path: Path, sgd_key=None, ema_key=None, role: str | None = None) -> Found:
    """Look at one file without reading its tensor data. `role` ("sgd" or "ema"): the file
    holds that one network (pair mode, --sgd/--ema), whatever its layout calls it."""
    ck = load(path, lazy=True)
    try:
        det = detect(ck.tree, stem(path), sgd_key, ema_key)
    except LayoutError as e:
        raise DynError(f"{path}: {e}") from None
    _from_metadata(det, ck.metadata)
    if det.decay is None and det.ema is not None and ck.path.is_dir() and len(det.ema.path) == 1:
        try:  # a checkpoint folder's ema-<decay>.safetensors (importers/folders.py), chosen by --ema-key
            det.decay = float(det.ema.path[0].removeprefix("ema-")) if det.ema.path[0].startswith("ema-") else None
            det.decay_from = f"the file name {det.ema.path[0]}.safetensors" if det.decay is not None else ""
        except ValueError:
            pass
    if role is None:
        refs = {n: r for n, r in (("sgd", det.sgd), ("ema", det.ema)) if r is not None}
    else:
        other = det.ema if role == "sgd" else det.sgd
        ref = getattr(det, role) or other
        if ref is None:
            raise DynError(f"{path}: holds no state_dict to use as the {role.upper()} weights")
        refs = {role: ref}
    if not refs:
        raise DynError(f"{path}: no SGD or EMA weights found")
    tensors, notes = {}, {}
    for net, ref in refs.items():
        try:
            sd, notes[net] = select(ck.tree, ref)
        except LayoutError as e:
            raise DynError(f"{path}: {e}") from None
        for k, t in sd.items():
            if t.dtype.startswith("complex"):
                raise DynError(f"{path}: tensor {k!r} is {t.dtype}; dyn stores real weights only")
        tensors[net] = {k: (tuple(t.shape), t.dtype) for k, t in sd.items()}
    return Found(Path(path), ck.format, det, refs, tensors, notes)


def _from_metadata(det: Detection, meta: dict) -> None:
    """safetensors' __metadata__ (strings) may carry epoch, step and decay."""
    for key, attr, cast in (("epoch", "epoch", int), ("step", "step", int), ("global_step", "step", int),
                            ("decay", "decay", float)):
        if key in meta and getattr(det, attr) is None:
            try:
                value = cast(float(meta[key])) if cast is int else cast(meta[key])
            except (TypeError, ValueError, OverflowError):  # "nan" and "inf" fail int(); checked below
                continue
            if not np.isfinite(value):
                continue
            setattr(det, attr, value)
            setattr(det, f"{attr}_from", f"metadata {key!r}")
    if "trainer_epoch" in meta:  # a Trainer checkpoint saved mid-epoch: no whole epoch to give
        det.notes.append(f"Trainer epoch {meta['trainer_epoch']}")


# -------------------------------------------------------------------------------- plan
@dataclass
class Plan:
    """Everything the import will write, decided before writing anything."""

    founds: list[Found]
    records: list[Record]
    networks: list[Network]
    params: list[Param]
    decay: float | None
    decay_from: str
    mode: str
    order: str

    @property
    def roles(self) -> list[str]:
        return [("sgd" if n.kind == "sgd" else "ema") for n in self.networks]

    def net_name(self, role: str) -> str:
        return self.networks[self.roles.index(role)].name


def plan(sources=(), *, sgd=None, ema=None, sgd_key=None, ema_key=None, decay=None, order="auto",
         epoch_offset=0, buffer_names: set[str] | None = None) -> Plan:
    """First pass: find, pair, order and check every file; raise DynError on the first problem."""
    if sources and (sgd or ema):
        raise UsageError("give either SOURCES or --sgd/--ema, not both")
    if sgd or ema:
        s_files = expand([sgd], SUFFIXES, "--sgd", folders=True) if sgd else []
        e_files = expand([ema], SUFFIXES, "--ema", folders=True) if ema else []
        founds_s = [scan(p, sgd_key, None, "sgd") for p in s_files]
        founds_e = [scan(p, None, ema_key, "ema") for p in e_files]
        founds, mode = founds_s + founds_e, "pair"
        records = records_paired(founds_s, founds_e)
    else:
        files = expand(sources, SUFFIXES, folders=True)
        founds, mode = [scan(p, sgd_key, ema_key) for p in files], "auto"
        records = drop_last_copies(records_auto(founds))
    _check_networks(records, ema_key)  # before ordering: a file without EMA may also number its epoch otherwise
    records = order_records(records, order, epoch_offset)
    dec, dec_from = _decay(records, decay)
    networks = []
    if "sgd" in records[0].parts:
        networks.append(Network.sgd())
    if "ema" in records[0].parts:
        networks.append(Network.ema(dec) if dec is not None else Network("ema", "ema", None))
    params = _param_table(records, buffer_names)
    return Plan(founds, records, networks, params, dec, dec_from, mode, order)


def _check_networks(records: list[Record], ema_key) -> None:
    if not records:
        raise DynError("no checkpoints to import")
    want = set(records[0].parts)
    for r in records[1:]:
        if set(r.parts) != want:
            missing = (want - set(r.parts)) or (set(r.parts) - want)
            lacking, having = (r, records[0]) if want - set(r.parts) else (records[0], r)
            net = missing.pop().upper()
            raise DynError(f"{lacking.first.path}: holds no {net} weights, but {having.first.path} does "
                           f"({having.parts[net.lower()].found.det.layout}); import one layout at a time"
                           + (", or name the EMA with --ema-key" if net == "EMA" and not ema_key else ""))


def _decay(records: list[Record], decay: float | None) -> tuple[float | None, str]:
    found = {}
    for r in records:
        part = r.parts.get("ema")
        if part is not None and part.found.det.decay is not None:
            found.setdefault(part.found.det.decay, part)
    if decay is not None:
        if not 0 < decay < 1:
            raise UsageError(f"--decay must lie in (0, 1), not {decay}")
        for d, part in found.items():
            if d != decay:
                raise DynError(f"{part.path}: records decay {d}, but --decay says {decay}")
        return float(decay), "--decay"
    if len(found) > 1:
        (d1, p1), (d2, p2) = list(found.items())[:2]
        raise DynError(f"{p1.path} and {p2.path}: EMA decays differ ({d1} vs {d2}); import one decay at a time")
    if found:
        d, part = next(iter(found.items()))
        return d, f"{part.found.det.decay_from} ({part.path.name})"
    return None, ""


def _param_table(records: list[Record], buffer_names: set[str] | None) -> list[Param]:
    ref_part = records[0].first
    ref = ref_part.found.tensors[ref_part.net]
    for r in records:
        for net, part in r.parts.items():
            other = part.found.tensors[part.net]
            if other is ref:
                continue
            _same_tensors(ref_part, ref, part, other)
    params = []
    for name, (shape, dtype) in ref.items():
        buffer = name in buffer_names if buffer_names is not None else is_buffer(name, dtype)
        params.append(Param(name, shape, "buffer" if buffer else "param", dtype))
    return params


def _same_tensors(ref_part: Part, ref: dict, part: Part, other: dict) -> None:
    where = f"{part.path} ({part.net.upper()})"
    for k, (shape, _) in other.items():
        if k not in ref:
            raise DynError(f"{where}: has tensor {k!r}, which {ref_part.path} lacks: files of different "
                           "architectures cannot be one run")
        if tuple(shape) != tuple(ref[k][0]):
            raise DynError(f"{where}: tensor {k!r} has shape {list(shape)}, {ref_part.path} has "
                           f"{list(ref[k][0])}: files of different architectures cannot be one run")
    for k in ref:
        if k not in other:
            raise DynError(f"{where}: lacks tensor {k!r}, which {ref_part.path} has: files of different "
                           "architectures cannot be one run")


# ----------------------------------------------------------------------- second pass
def read_weights(plan_: Plan, record: Record, cache: dict | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{"sgd"/"ema": {tensor name: array}} of one record, read from its files."""
    out = {}
    cache = {} if cache is None else cache
    for role, part in record.parts.items():
        key = part.path
        if key not in cache:
            cache.clear()  # one file in memory at a time (a record's parts may share it)
            cache[key] = load(part.path, lazy=True)
        ck = cache[key]
        sd, _ = select(ck.tree, part.found.refs[part.net])
        arrays = {}
        for p in plan_.params:
            try:
                arrays[p.name] = np.asarray(sd[p.name].numpy())
            except DynError as e:
                raise DynError(f"{part.path}: tensor {p.name!r}: {e}") from None
            except KeyError:
                raise DynError(f"{part.path}: lacks tensor {p.name!r} (the file changed while importing?)") from None
            if arrays[p.name].shape != tuple(p.shape):
                raise DynError(f"{part.path}: tensor {p.name!r} has shape {list(arrays[p.name].shape)}, "
                               f"expected {list(p.shape)}")
        out[role] = arrays
    return out


def flatten(params: list[Param], arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(float32 params, float64 buffers) in table order, as format v1 stores them."""
    ps = [arrays[p.name].astype(np.float32).reshape(-1) for p in params if p.kind == "param"]
    bs = [arrays[p.name].astype(np.float64).reshape(-1) for p in params if p.kind == "buffer"]
    cat = lambda xs, dt: np.concatenate(xs) if xs else np.zeros(0, dt)  # noqa: E731
    return cat(ps, np.float32), cat(bs, np.float64)


def nonfinite(arrays: dict[str, np.ndarray]) -> dict[str, int]:
    """{tensor: count of NaN/inf values} for the tensors that hold any."""
    bad = {}
    for k, a in arrays.items():
        if a.dtype.kind == "f":
            n = int(a.size - np.count_nonzero(np.isfinite(a)))
            if n:
                bad[k] = n
    return bad


def _check_finite(arrays: dict[str, np.ndarray], what: str, strict: bool, warn) -> None:
    bad = nonfinite(arrays)
    if not bad:
        return
    keys = ", ".join(f"{k} ({n})" for k, n in list(bad.items())[:3])
    msg = f"{what} hold {sum(bad.values())} NaN/inf values (in {keys}{', ...' if len(bad) > 3 else ''})"
    if strict:
        raise DynError(msg + "; refused under --strict")
    warn(msg)


def config(plan_: Plan, extra: dict | None = None) -> dict:
    """The run's config: provenance of every record (file, key, layout) and the decay."""
    def src(part: Part) -> dict:
        f = part.found
        return {"file": str(f.path.resolve()), "format": f.format, "layout": f.det.layout,
                "key": str(f.refs[part.net]), "notes": f.notes.get(part.net, []) + f.det.notes}

    recs = [{"epoch": r.epoch, "step": r.step, **{n: src(p) for n, p in r.parts.items()}} for r in plan_.records]
    cfg = {
        "source": "dyn import checkpoints",
        "decays": [plan_.decay] if plan_.decay is not None else [],
        "import": {
            "dyn_version": __version__, "mode": plan_.mode, "order": plan_.order,
            "layouts": sorted({p.found.det.layout for r in plan_.records for p in r.parts.values()}),
            "epochs_from": sorted({r.epoch_from for r in plan_.records}),
            "decay": plan_.decay, "decay_from": plan_.decay_from or "unknown (network named 'ema')",
            "param_rule": PARAM_RULE, "records": recs,
        },
    }
    cfg.update(extra or {})
    return cfg


def write(plan_: Plan, out, *, overwrite=False, strict=False, warn: Callable[[str], None] | None = None,
          evaluator=None, extra_config: dict | None = None) -> Path:
    """Second pass: read every record and write the run (all or nothing). Returns the path."""
    from ..writer import RunWriter
    from .output import check_target, staged

    out = check_target(out, overwrite)
    warn = warn or (lambda msg: None)
    splits = evaluator.splits() if evaluator is not None else {}
    metrics = []
    if all(r.step is not None for r in plan_.records):
        metrics.append("iteration")
    for net in plan_.networks:
        for s in splits:
            metrics += [f"{net.name}/{s}/acc", f"{net.name}/{s}/loss"]
    layout = Layout(networks=plan_.networks, splits=splits, params=plan_.params, metrics=metrics)
    cfg = config(plan_, {**(evaluator.config() if evaluator is not None else {}), **(extra_config or {})})
    cache: dict = {}
    with staged(out, overwrite) as tmp:
        with RunWriter.create(tmp, layout, cfg, swmr=False, durable=False) as w:
            for rec in plan_.records:
                weights, evals, row = {}, {}, {}
                arrays = {plan_.net_name(role): arr for role, arr in read_weights(plan_, rec, cache).items()}
                for role, part in rec.parts.items():
                    net = plan_.net_name(role)
                    _check_finite(arrays[net], f"{part.path}: {net} weights", strict, warn)
                    weights[net] = flatten(plan_.params, arrays[net])
                if evaluator is not None:
                    for net, per_split in evaluator.evaluate(arrays).items():
                        for split, (ev, acc, loss) in per_split.items():
                            evals.setdefault(split, {})[net] = ev
                            row[f"{net}/{split}/acc"], row[f"{net}/{split}/loss"] = acc, loss
                if rec.step is not None and "iteration" in metrics:
                    row["iteration"] = rec.step
                w.append(rec.epoch, metrics=row, weights=weights, evals=evals or None)
            cache.clear()
            w.finish()
    return out


# ------------------------------------------------------------------------------ report
def describe(plan_: Plan) -> list[str]:
    """What --dry-run prints: each file's findings, then the run that would be written."""
    lines = []
    for f in plan_.founds:
        nets = ", ".join(f"{n}: {r} ({len(f.tensors[n])} tensors)" for n, r in f.refs.items())
        d = f.det
        bits = [f"{d.layout}", nets]
        bits.append(f"epoch {d.epoch} from {d.epoch_from}" if d.epoch is not None else "no epoch in the file")
        if d.step is not None:
            bits.append(f"step {d.step} ({d.step_from})")
        if d.decay is not None:
            bits.append(f"decay {d.decay:g} ({d.decay_from})")
        notes = sorted({n for ns in f.notes.values() for n in ns} | set(d.notes))
        if notes:
            bits.append("; ".join(notes))
        lines.append(f"{f.path}: " + "; ".join(bits))
    recs = plan_.records
    n_par = sum(p.size for p in plan_.params if p.kind == "param")
    n_buf = sum(p.size for p in plan_.params if p.kind == "buffer")
    nets = ", ".join(n.name for n in plan_.networks)
    lines.append(f"run: {len(recs)} epochs ({recs[0].epoch}..{recs[-1].epoch}, epochs from "
                 f"{'; '.join(sorted({r.epoch_from for r in recs}))}); networks {nets}; "
                 f"{len(plan_.params)} tensors: {n_par:,} parameter and {n_buf:,} buffer values per network")
    if plan_.decay is None and "ema" in plan_.roles:
        lines.append("decay: unknown (network named 'ema'; give --decay to name it ema-<decay>)")
    elif plan_.decay is not None:
        lines.append(f"decay: {plan_.decay!r} from {plan_.decay_from} -> network {ema_name(plan_.decay)}")
    for r in recs:
        srcs = ", ".join(f"{n} {p.path.name}:{p.found.refs[p.net]}" for n, p in r.parts.items())
        lines.append(f"  epoch {r.epoch}: {srcs}")
    return lines


def import_checkpoints(sources=(), out=None, *, dry_run=False, overwrite=False, strict=False, warn=None,
                       evaluator=None, **kw) -> tuple[Plan, Path | None]:
    """Plan, then (unless dry_run) write. Returns (plan, path written or None)."""
    from .output import check_target

    if not dry_run:
        check_target(out, overwrite)  # before reading a single checkpoint
    buffers = evaluator.buffer_names() if evaluator is not None else None
    p = plan(sources, buffer_names=buffers, **kw)
    if evaluator is not None:
        evaluator.check(p.params, p.records[0].first.path)
    if dry_run:
        return p, None
    return p, write(p, out, overwrite=overwrite, strict=strict, warn=warn, evaluator=evaluator)


__all__ = ["import_checkpoints", "plan", "write", "describe", "scan", "is_buffer", "Plan", "Found",
           "Record", "ORDERS", "PARAM_RULE"]
