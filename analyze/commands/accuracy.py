"""`dyn analyze accuracy`: accuracy over epochs of every network; runs that differ only in
seed as mean and band (Figures 1a-e), and with --lr each schedule's learning rate (Figure 1f)."""

from __future__ import annotations

from dataclasses import dataclass, field

import click
import numpy as np

from dyn.analyze import inputs, networks, output, stream, window
from dyn.analyze import runs as pooling
from dyn.analyze.command import Analysis, dataframe
from dyn.analyze.measures.accuracy import BANDS, AccuracyAccumulator, Band, seed_band
from dyn.analyze.networks import label
from dyn.analyze.options import common
from dyn.analyze.runs import CONFIG_KEYS
from dyn.errors import DynError, RunFileError


@dataclass
class Group:
    label: str                # what tells the group from the others, e.g. the schedule
    config: dict
    paths: list
    nets: dict                # {network: Band}
    lr: tuple | None          # (epochs, lr) of the group's first run
    notes: list = field(default_factory=list)  # runs left out or cut, said on every output
    short: str = ""           # the same, short enough for the figure's panel title


@dataclass
class Result:
    split: str
    band: str                 # "minmax" or "std"
    groups: list


def _notes(p, records, bands) -> tuple[list, str]:
    """What the group's numbers leave out or cut, in full (table, JSON) and short (figure)."""
    notes, short = [], []
    for run, why in p.left_out:
        notes.append(f"left out {run.path} ({why})")
    if p.left_out:
        short.append(f"{len(p.left_out)} run{'s' * (len(p.left_out) > 1)} left out: not complete")
    shared = set()
    for b in bands.values():
        shared.update(int(e) for e in b.epochs)
    cut = [r for r in records if len(set(map(int, r["epochs"])) - shared)]
    if cut:
        lo, hi = min(shared), max(shared)
        for r in cut:
            notes.append(f"{r['path']} cut to epochs {lo}..{hi}, the epochs its seeds share "
                         f"(it records {int(r['epochs'][0])}..{int(r['epochs'][-1])})")
        short.append(f"cut to epochs {lo}..{hi} shared by its runs")
    for r in records:
        if r["state"] != "complete":
            notes.append(f"{r['path']} is {r['state']}: epochs up to {int(r['epochs'][-1])} so far")
            if not any(s.startswith("not complete") for s in short):
                short.append("not complete")
    return notes, "; ".join(short)


def _lr(run):
    if "lr" not in run.metric_columns:
        raise RunFileError(f"{run.path}: its metrics have no 'lr' column; --lr needs it")
    m = run.metrics()
    ok = m["lr"].notna()
    return m["epoch"][ok].to_numpy(), m["lr"][ok].to_numpy()


NO_BAND = "no band: a sample std needs two or more runs (seeds)"


def _last(b: Band) -> dict:
    best = int(np.nanargmax(b.mean))
    return {"runs": b.n_runs, "last_epoch": int(b.epochs[-1]), "last_mean": float(b.mean[-1]),
            "last_lo": float(b.lo[-1]), "last_hi": float(b.hi[-1]), "best_mean": float(b.mean[best]),
            "best_epoch": int(b.epochs[best]), "note": NO_BAND if np.isnan(b.lo).all() else None}


class AccuracyCommand(Analysis):
    name = "accuracy"

    def compute(self, runs, opts, band: str = "minmax", lr: bool = False) -> Result:
        """One group per experiment (dyn.analyze.runs.pool: runs that differ only in seed); what
        is left out of a group, or cut to the epochs its seeds share, is noted on the group."""
        try:
            pools = pooling.pool(runs)
        except ValueError as e:
            raise DynError(f"cannot average over seeds: {e}") from None
        out = []
        for p in pools:
            records = []
            for run in p.members:
                inputs.need_correctness(run, opts.split, "accuracy")
                nets = networks.choose(run, opts.nets)
                win = window.select(run, opts.split, opts.first, opts.last, what="accuracy")
                n = run.split_size(opts.split)
                res = stream.feed(run, opts.split, nets, win.lo, win.hi, lambda net: [AccuracyAccumulator(n)])
                records.append({"path": str(run.path), "state": run.state, "epochs": win.epochs,
                                "curves": {net: (win.epochs, r[0]) for net, r in res.items()},
                                "lr_curve": _lr(run) if lr else None})
            nets = list(dict.fromkeys(n for r in records for n in r["curves"]))
            try:
                bands = {n: seed_band([r["curves"][n] for r in records if n in r["curves"]], band) for n in nets}
            except ValueError as e:
                raise DynError(f"{', '.join(r['path'] for r in records)}: {e}") from None
            notes, short = _notes(p, records, bands)
            name = p.label or (str(p.config["schedule"]) if p.config.get("schedule") is not None else "")
            config = {**{k: p.config.get(k) for k in CONFIG_KEYS}, **p.differs}
            out.append(Group(name, config, [r["path"] for r in records], bands, records[0]["lr_curve"], notes, short))
        return Result(opts.split, band, out)

    def table(self, result: Result) -> str:
        rows = []
        for g in result.groups:
            for n, b in g.nets.items():
                s = _last(b)
                rows.append([g.label or "-", label(n), s["runs"], s["last_epoch"], output.fmt(s["last_mean"]),
                             output.fmt(s["last_lo"]), output.fmt(s["last_hi"]), output.fmt(s["best_mean"]),
                             s["best_epoch"]])
        head = ["runs of", "network", "runs", "last epoch", "accuracy", "band lo", "band hi", "best", "at epoch"]
        notes = {_last(b)["note"] for g in result.groups for b in g.nets.values()} - {None}
        said = [f"\nnote: {n}" for g in result.groups for n in g.notes]
        return (f"{result.split} accuracy, mean over seeds (band: {result.band})\n" + output.text_table(head, rows)
                + "".join(f"\n—: {note}" for note in sorted(notes)) + "".join(said))

    def records(self, result: Result):
        cols = ["group", "network", "epoch", "mean", "lo", "hi", "runs"]
        rows = [{"group": g.label, "network": n, "epoch": int(e), "mean": m, "lo": lo, "hi": hi, "runs": b.n_runs}
                for g in result.groups for n, b in g.nets.items()
                for e, m, lo, hi in zip(b.epochs, b.mean, b.lo, b.hi)]
        return cols, rows

    def document(self, result: Result) -> dict:
        return {"analysis": "accuracy", "split": result.split, "groups": [{
            "label": g.label, "config": g.config, "runs": g.paths, "notes": g.notes,
            "networks": {n: {"epochs": b.epochs, "mean": b.mean, "lo": b.lo, "hi": b.hi, "runs": b.n_runs,
                             "band": b.kind, **_last(b)} for n, b in g.nets.items()},
            "lr": None if g.lr is None else {"epochs": g.lr[0], "lr": g.lr[1]}} for g in result.groups]}

    def frame(self, result: Result):
        """The records as a DataFrame (dyn.analyze.accuracy); split, band and lr curves in attrs."""
        lrs = {g.label or f"runs {i + 1}": g.lr for i, g in enumerate(result.groups) if g.lr is not None}
        return dataframe(*self.records(result), split=result.split, band=result.band, lr=lrs,
                         groups={g.label: {"config": g.config, "runs": g.paths, "short": g.short}
                                 for g in result.groups})

    def draw(self, result: Result, out) -> list:
        """One figure, a panel per group."""
        from dyn.analyze.figures import plot_accuracy
        from dyn.analyze.plot.save import save

        df = self.frame(result)
        return [output.draw(lambda p: save(plot_accuracy(df), p), out)]


@click.command("accuracy")
@common
@click.option("--band", type=click.Choice(BANDS), default="minmax", show_default=True,
              help="Band over seeds: min..max, or mean +- sample std.")
@click.option("--lr", "with_lr", is_flag=True, help="Add a panel with each schedule's lr over epochs "
                                                    "(from the runs' metrics).")
def accuracy_cmd(band, with_lr, **kw):
    """Accuracy over epochs for every network (Figures 1a-f).

    Counted from the per-sample correctness bits. Runs whose configs differ only in the seed
    are drawn as their mean with a band, one panel per group, titled by what differs between
    the groups (runs without a seed, model or data set in their config: one panel each, named
    by file). A run not yet complete is left out of a group that has complete runs; seeds of
    different lengths are cut to the epochs they share; the panel title and the table say so.

    \b
    Examples:
      dyn analyze accuracy runs/table1/*.h5 --out fig1.pdf --lr
      dyn analyze accuracy runs/x.h5 --split test --csv acc.csv
    """
    AccuracyCommand().run(kw, band=band, lr=with_lr)

