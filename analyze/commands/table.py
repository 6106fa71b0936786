"""`dyn table`: the paper's Tables 1, 2 and 3 from any set of runs (dyn.analyze.tables over run records).

A run's record is its config and the accuracy of every network at the last recorded epoch of
the test and train splits, counted from the correctness bits. Runs are pooled as seeds by the
one rule of dyn.analyze.runs.pool: only runs whose configs differ in nothing but the seed.
Runs that differ elsewhere get rows of their own, labelled by what differs; runs of unknown
identity (no seed, model or data set in the config: imported runs) get a row each, named by
file. Whatever was left out or stood in for something is said under the table itself.
"""

from __future__ import annotations

import json

import click

from dyn.analyze import runs as pooling
from dyn.analyze.networks import decay as name_decay
from dyn.errors import DynError, UsageError

MISSING = "—"
RUN = "run"  # the row level naming runs of unknown identity
SPLITS = ("test", "train")
TRAIN_SPLITS = {"clean": "train", "augmented": "train-augmented"}
TRAIN_SAYS = {"train": "clean training images", "train-augmented": "augmented training images (one fixed-seed "
              "crop and flip per image, the same for every network), as the paper measured"}


def train_split(runs, choice: str | None, notes: list) -> str:
    """The split behind the Train columns: 'train-augmented' (the paper's) unless --train-split
    clean; runs that lack it (older or imported runs) fall back to the clean 'train', said in notes."""
    if choice == "clean":
        return "train"
    lacking = [str(r.path) for r in runs if "train-augmented" not in r.splits]
    if not lacking:
        return "train-augmented"
    if choice == "augmented":
        raise UsageError(f"--train-split augmented: {', '.join(lacking[:3])} record no 'train-augmented' split "
                         "(older or imported runs); use --train-split clean")
    notes.append(f"Train is measured on clean training images, not augmented ones as in the paper: "
                 f"{', '.join(lacking[:3])}{' and others' if len(lacking) > 3 else ''} "
                 f"record{'s' if len(lacking) == 1 else ''} no "
                 "'train-augmented' split")
    return "train"


def run_record(run, keys, train: str) -> dict:
    """{row keys..., "seed", "path", "final": {network: {"test": acc, "train": acc}}} of one run."""
    cfg = run.config
    rec = {k: _cell(cfg.get(k)) for k in keys}
    rec["seed"] = cfg.get("seed", str(run.path)) if pooling.known(cfg) else str(run.path)
    rec["path"] = str(run.path)
    final = {}
    for name, split in (("test", "test"), ("train", train)):
        if split not in run.splits or not len(run.epochs(split)):
            continue
        last = slice(len(run.epochs(split)) - 1, None)
        for net in (n for n in run.networks if run.has(split, n, "correct")):  # post-hoc ones may lack it
            final.setdefault(net, {})[name] = float(run.accuracy(split, net, last)[0])
    rec["final"] = final
    return rec


def _cell(value):
    """A config value as a row key: numbers and text as they are, lists as "0.9,0.99"."""
    if value is None:
        return MISSING
    if isinstance(value, (list, tuple)):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return value


def row_keys(pools, layout, group_by) -> tuple:
    """The row levels: --group-by (default schedule, or lr), the other keys it takes to tell the
    experiments apart, and `run` when a run's identity is unknown. Table 3's layout shows only schedules:
    runs that differ in anything else are refused, naming the key."""
    group = tuple(group_by or (("lr",) if layout == "lr" else ("schedule",)))
    extra = pooling.distinguishing_keys(pools, group)
    extra += [RUN] if any(not p.known for p in pools) else []
    if layout == "table3" and (extra or group != ("schedule",)):
        if group != ("schedule",):
            raise UsageError("--layout table3 has one row per schedule, as the paper prints it; drop --group-by")
        key = extra[0]
        if key == RUN:
            who = [p.name for p in pools if not p.known]
            raise UsageError(f"--layout table3: {', '.join(who[:3])} have no seed, model or data set in their config, "
                             "so they cannot be placed in a row per schedule; use --layout lr --group-by schedule")
        values = ", ".join(dict.fromkeys(pooling.value_label(key, p.config.get(key)) for p in pools if p.known))
        raise UsageError(f"--layout table3 has one row per schedule, but the runs also differ in {key} ({values}); "
                         f"select runs of one {key}, or use --layout lr --group-by schedule,{key}")
    return (*group, *extra)


def build(runs, layout="decay", group_by=None, split="test", decay=None, notes=None, train=None):
    """The dyn.analyze.tables.Table of the runs; notes collects what the table must say under it."""
    from dataclasses import replace

    from dyn.analyze.tables import paper_table

    notes = [] if notes is None else notes
    if split not in SPLITS:
        raise UsageError(f"--split {split}: the tables show final accuracies on test (or train), as the paper's "
                         f"tables do; {split} is not used")
    for key in group_by or ():
        if not any(key in run.config for run in runs):
            raise UsageError(f"--group-by {key}: no run's config has {key!r}")
    shows_train = layout != "decay" or split == "train"
    train_name = train_split(runs, train, notes) if shows_train else "train"
    try:
        pools = pooling.pool(runs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    keys = row_keys(pools, layout, group_by)
    records = []
    for p in pools:
        for run in p.members:
            rec = run_record(run, [k for k in keys if k != RUN], train_name)
            if all(q.known for q in pools):  # for the title: model and data set, when all runs share them
                rec.update({k: run.config[k] for k in pooling.IDENTITY if k not in keys})
            if RUN in keys:
                rec[RUN] = "" if p.known else p.name
            records.append(rec)
            if run.state != "complete":
                notes.append(f"{run.path} is {run.state}: its last recorded epoch "
                             f"({int(run.epochs('test')[-1]) if 'test' in run.splits and len(run.epochs('test')) else '—'}) "
                             "is used")
        for run, why in p.left_out:
            notes.append(f"left out {run.path} ({why})")
        if not p.known:
            notes.append(f"{p.members[0].path}: its config has no seed, model or data set, so it is not pooled: a row of "
                         f"its own, named {p.name!r}")
        for net in p.members[0].networks:
            if net != "sgd" and name_decay(net) is None:
                notes.append(f"{p.members[0].path}: network {net!r} has no decay in its name; it has no column")
    want = "train" if split == "train" else "test"
    if not any(want in net for r in records for net in r["final"].values()):
        name = train_name if want == "train" else "test"
        where = "; ".join(f"{run.path}: {', '.join(run.splits) or 'none'}" for run in runs[:3])
        raise DynError(f"no run records the {name!r} split (splits of {where}); the table needs its "
                       "final accuracies")
    try:
        t = paper_table(records, layout=layout, group_by=keys if layout != "table3" else None,
                        split=want, decay=decay, keys=keys)
    except ValueError as e:
        raise UsageError(str(e).replace("pass decay=", "choose one with --decay")) from None
    if shows_train:
        t = replace(t, title=f"{t.title}. Train: {TRAIN_SAYS[train_name]}")
    return t


def parse_group_by(value):
    if not value:
        return None
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    if not keys or len(set(keys)) < len(keys) or pooling.SEED in keys:
        raise UsageError(f"--group-by {value}: give distinct config keys (not seed), comma-separated")
    return keys


@click.command("table")
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...", type=click.Path(dir_okay=True))
@click.option("--layout", type=click.Choice(["decay", "lr", "table3"]), default="decay", show_default=True,
              help="decay: Table 1 (rows schedules, a column per decay); lr: Table 2 (rows lr, train/test "
                   "of SGD and EMA, Increase); table3: Table 3 as printed (rows schedules in the paper's "
                   "order; No EMA Train, No EMA Test, EMA Train, EMA Test; nothing else).")
@click.option("--group-by", metavar="KEYS", help="Config keys that make rows, comma-separated (default: "
                                                "schedule, or lr for --layout lr): any key of the runs' "
                                                "configs, e.g. model, epochs, batch_size, decays.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex", "json"]), default="markdown",
              show_default=True)
@click.option("--detail", type=click.Choice(["mean", "std", "full"]), default="full", show_default=True,
              help="Cells: mean; mean ± std; mean ± std (n=runs). CSV and JSON always hold all three.")
@click.option("--digits", type=click.IntRange(0, 6), default=1, show_default=True)
@click.option("--split", default="test", show_default=True,
              help="Accuracy of --layout decay: test or train (the tables use test and train, never val).")
@click.option("--train-split", type=click.Choice(["augmented", "clean"]), default=None,
              help="What the Train columns measure: augmented (default; the paper's: each training image "
                   "with one fixed-seed crop and flip, split 'train-augmented') or clean (split 'train'). "
                   "Runs without 'train-augmented' fall back to clean, and the table says so.")
@click.option("--decay", type=float, help="The EMA network of --layout lr or table3 (default: the only decay).")
def table(runs, layout, group_by, fmt, detail, digits, split, train_split, decay):
    """The paper's tables from a set of runs: final accuracy (%), mean over seeds.

    Runs whose configs differ in nothing but the seed are seeds of one experiment: their
    accuracies at the last recorded epoch are averaged (std and number of runs too). Runs that
    differ in anything else (model, epochs, warm-up, batch size, ...) get rows of their own,
    labelled by what differs; runs without a seed, model or data set in their config (imported
    runs) get a row each, named by file. A run still being written is left out when complete
    seeds of it exist. The best cell of each column is bold in Markdown and LaTeX, as in the
    paper. What was left out or replaced is said under the table.

    \b
    Examples:
      dyn table runs/table1/*.h5
      dyn table runs/table2/*.h5 --layout lr --format latex
      dyn table runs/table3/*.h5 --layout table3
      dyn table runs/*.h5 --group-by schedule,epochs --format csv
    """
    from dyn.analyze.inputs import open_runs
    from dyn.analyze.tables import render

    keys = parse_group_by(group_by)
    notes = []
    with open_runs(runs) as opened:
        t = build(opened, layout, keys, split, decay, notes, train_split)
    notes = list(dict.fromkeys(notes))
    for note in notes:
        click.echo(f"note: {note}", err=True)
    click.echo(with_notes(render(t, fmt, detail, digits), t.title, notes, fmt), nl=False)


def with_notes(text: str, title: str, notes: list, fmt: str) -> str:
    """The rendered table with its caption and notes on the output itself (CSV: stderr only)."""
    if fmt == "markdown":
        return text + f"\nTable: {title}\n" + "".join(f"\nNote: {n}" for n in notes) + ("\n" if notes else "")
    if fmt == "latex":
        return "".join(f"% {line}\n" for line in [f"Table: {title}", *(f"Note: {n}" for n in notes)]) + text
    if fmt == "json":
        import json

        doc = json.loads(text)
        doc["notes"] = notes
        return json.dumps(doc, indent=2, allow_nan=False) + "\n"
    return text
