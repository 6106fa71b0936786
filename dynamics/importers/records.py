"""Which files make which epoch of an imported run, and in what order.

A record is one epoch: the SGD and EMA weights, each from some file (the same file for most
layouts; two files for the paper's `*_averaged_model.pt`, NeMo's `*-EMA.ckpt` and
`--sgd GLOB --ema GLOB`). Records are then ordered and numbered: by the epoch the files
record, else by their step, else by their names; epochs come from the files, else from the
numbers in their names, else from their positions (1, 2, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DynError, UsageError
from .layouts import Found, partner_kind
from .sources import natural_key, number_in_name, stem

ORDERS = ("auto", "epoch", "step", "name", "given")


@dataclass
class Part:
    found: Found
    net: str  # which of found.refs

    @property
    def path(self) -> Path:
        return self.found.path


@dataclass
class Record:
    """One epoch of the run: where its SGD and EMA weights come from."""

    parts: dict[str, Part]
    epoch: int | None = None
    epoch_from: str = ""
    step: int | None = None

    @property
    def first(self) -> Part:
        return self.parts.get("sgd") or self.parts["ema"]

    def file_epoch(self) -> tuple[int | None, str]:
        for part in self.parts.values():
            if part.found.det.epoch is not None:
                return part.found.det.epoch, part.found.det.epoch_from
        return None, ""

    def file_step(self) -> int | None:
        steps = [p.found.det.step for p in self.parts.values() if p.found.det.step is not None]
        return steps[0] if steps else None


def records_auto(founds: list[Found]) -> list[Record]:
    """Records from SOURCES: one per file, with `*_averaged_model` / `*-EMA` files joined to
    their partner (same name without the suffix, else the same epoch)."""
    partners = [f for f in founds if partner_kind(stem(f.path)) and set(f.refs) == {"ema"}]
    hosts = [f for f in founds if f not in partners]
    records = {id(f): Record({n: Part(f, n) for n in f.refs}) for f in hosts}
    by_stem = {(f.path.parent, stem(f.path)): f for f in hosts}
    out = [records[id(f)] for f in hosts]
    for p in partners:
        base = partner_kind(stem(p.path))[0]
        host = by_stem.get((p.path.parent, base))
        if host is None and p.det.epoch is not None:
            same = [f for f in hosts if f.det.epoch == p.det.epoch and "ema" not in records[id(f)].parts]
            host = same[0] if len(same) == 1 else None
        if host is None:
            out.append(Record({"ema": Part(p, "ema")}))
            continue
        rec = records[id(host)]
        if "ema" in rec.parts:
            raise DynError(f"{p.path}: EMA weights for {host.path}, which holds EMA weights itself "
                           f"({rec.parts['ema'].found.refs['ema']})")
        if host.det.epoch is not None and p.det.epoch is not None and host.det.epoch != p.det.epoch:
            raise DynError(f"{p.path}: records epoch {p.det.epoch}, its partner {host.path} epoch {host.det.epoch}")
        rec.parts["ema"] = Part(p, "ema")
    return out


def drop_last_copies(records: list[Record]) -> list[Record]:
    """Lightning's `last.ckpt` (save_last=True) repeats the newest epoch=E-step=S.ckpt: drop a
    `last*` file whose epoch and step another file of the run records too."""
    def key(r):
        return r.file_epoch()[0], r.file_step()

    named = {key(r) for r in records if not stem(r.first.path).startswith("last") and None not in key(r)}
    return [r for r in records if not (stem(r.first.path).startswith("last") and key(r) in named)] or records


def records_paired(sgd_files: list[Found], ema_files: list[Found]) -> list[Record]:
    """Records from --sgd GLOB --ema GLOB: files paired by the epoch in them or in their
    names (else by position, when the counts match)."""
    if not ema_files:
        return [Record({"sgd": Part(f, "sgd")}) for f in sgd_files]
    if not sgd_files:
        return [Record({"ema": Part(f, "ema")}) for f in ema_files]

    def key(f: Found):
        return f.det.epoch if f.det.epoch is not None else number_in_name(f.path)

    keys_s, keys_e = [key(f) for f in sgd_files], [key(f) for f in ema_files]
    if None in keys_s or None in keys_e:
        if len(sgd_files) != len(ema_files):
            f = (sgd_files + ema_files)[(keys_s + keys_e).index(None)]
            raise DynError(f"{f.path}: no epoch in the file or its name to pair --sgd and --ema files by, "
                           f"and their counts differ ({len(sgd_files)} vs {len(ema_files)})")
        return [Record({"sgd": Part(s, "sgd"), "ema": Part(e, "ema")}) for s, e in zip(sgd_files, ema_files)]
    ema_by = {}
    for f, k in zip(ema_files, keys_e):
        if k in ema_by:
            raise DynError(f"{f.path} and {ema_by[k].path}: both are the EMA weights of epoch {k}")
        ema_by[k] = f
    out = []
    for f, k in zip(sgd_files, keys_s):
        if k not in ema_by:
            raise DynError(f"{f.path}: no EMA found for its epoch {k} among the --ema files")
        out.append(Record({"sgd": Part(f, "sgd"), "ema": Part(ema_by.pop(k), "ema")}))
    if ema_by:
        k, f = next(iter(ema_by.items()))
        raise DynError(f"{f.path}: no SGD file for its epoch {k} among the --sgd files")
    return out


# ------------------------------------------------------------------------------- order
def order_records(records: list[Record], order: str, epoch_offset: int = 0) -> list[Record]:
    """Sort records and give each its epoch (see the CLI's help for the rules)."""
    if order not in ORDERS:
        raise UsageError(f"--order must be one of {', '.join(ORDERS)}, not {order!r}")
    epochs = [r.file_epoch()[0] for r in records]
    steps = [r.file_step() for r in records]
    if order == "epoch" and None in epochs:
        raise DynError(f"{records[epochs.index(None)].first.path}: --order epoch, but the file records no epoch")
    if order == "step" and None in steps:
        raise DynError(f"{records[steps.index(None)].first.path}: --order step, but the file records no step")
    distinct = lambda xs: None not in xs and len(set(xs)) == len(xs)  # noqa: E731
    if order == "auto":
        # checkpoints saved within epochs (Lightning's every_n_train_steps, a Trainer's
        # save_steps) repeat an epoch: their steps order them
        order = ("epoch" if distinct(epochs) else "step" if distinct(steps)
                 else "epoch" if None not in epochs else "step" if None not in steps else "name")
    if order == "epoch":
        records = sorted(records, key=lambda r: r.file_epoch()[0])
    elif order == "step":
        records = sorted(records, key=lambda r: r.file_step())
    elif order == "name":
        records = sorted(records, key=lambda r: natural_key(r.first.path))

    names = [number_in_name(r.first.path) for r in records]
    file_epochs = [r.file_epoch()[0] for r in records]
    if order == "step" and distinct(steps) and None not in file_epochs and not distinct(file_epochs):
        for r in records:  # several checkpoints per epoch: number them by their steps
            r.epoch, r.epoch_from = r.file_step(), "the step (the files' epochs repeat: saved within epochs)"
    elif None not in file_epochs:
        for r in records:
            r.epoch, r.epoch_from = r.file_epoch()
    elif None not in names and all(a < b for a, b in zip(names, names[1:])):
        for r, n in zip(records, names):
            r.epoch, r.epoch_from = n, "the number in the file name"
    else:
        why = "the numbers in the names do not increase in this order" if None not in names else \
            "no epoch in the files or their names"
        for i, r in enumerate(records):
            r.epoch, r.epoch_from = i + 1, f"position in the order ({why})"
    for r in records:
        r.step = r.file_step()
        if epoch_offset:
            r.epoch += epoch_offset
            r.epoch_from += f", {epoch_offset:+d} (--epoch-offset)"
    for a, b in zip(records, records[1:]):
        if b.epoch <= a.epoch:
            what = "both hold" if a.epoch == b.epoch else "are out of order at"
            raise DynError(f"{a.first.path} and {b.first.path}: {what} epoch {b.epoch} ({b.epoch_from}); "
                           "pass the files of one run once each, or choose --order")
    if records and records[0].epoch < 0:
        raise DynError(f"{records[0].first.path}: epoch {records[0].epoch} is negative")
    return records
