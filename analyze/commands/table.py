"""`dyn table`: the paper's Tables 1 and 2 from any set of runs (dyn.analyze.tables over run records).

A run's record is its config (model, dataset, schedule, lr, seed) and the accuracy of every
network at the last recorded epoch of the test and train splits, counted from the
correctness bits. Runs from `dyn import` may lack config keys: a key no run has takes one
placeholder value ("?") and the table says so on stderr; a run without a seed counts as a
seed of its own.
"""

from __future__ import annotations

import click

from dyn.analyze.networks import decay as name_decay
from dyn.analyze.runs import CONFIG_KEYS
from dyn.errors import DynError, UsageError

MISSING = "?"


def run_record(run, notes: list) -> dict:
    """{config keys..., "seed", "path", "final": {network: {split: accuracy}}} of one run."""
    cfg = run.config
    rec = {k: cfg.get(k, MISSING) for k in CONFIG_KEYS}
    rec["seed"] = cfg.get("seed", f"({run.path})")
    rec["path"] = str(run.path)
    if "seed" not in cfg:
        notes.append(f"{run.path} has no seed in its config: counted as a seed of its own")
    if run.state != "complete":
        notes.append(f"{run.path} is {run.state}: its last recorded epoch is used")
    final = {}
    for split in ("test", "train"):
        if split not in run.splits or not len(run.epochs(split)):
            continue
        last = slice(len(run.epochs(split)) - 1, None)
        for net in (n for n in run.networks if run.has(split, n, "correct")):
            final.setdefault(net, {})[split] = float(run.accuracy(split, net, last)[0])
    for net in run.networks:
        if net != "sgd" and name_decay(net) is None:
            notes.append(f"{run.path}: network {net!r} has no decay in its name; it has no column")
    rec["final"] = final
    return rec


def check_keys(records, group_by, notes: list) -> None:
    """Refuse to average runs that differ in a config key the rows do not separate."""
    for key in CONFIG_KEYS:
        values = list(dict.fromkeys(str(r[key]) for r in records))
        if values == [MISSING]:
            notes.append(f"no run's config has {key!r}: the runs are grouped without it")
        elif key not in group_by and len(values) > 1:
            lacking = [r["path"] for r in records if r[key] == MISSING]
            if lacking:
                raise UsageError(f"{', '.join(lacking[:3])} lack {key!r} in the config while other runs "
                                 f"have it ({', '.join(v for v in values if v != MISSING)}); select the runs")
            raise UsageError(f"the runs mix {key} values {', '.join(values)}: add --group-by "
                             f"{','.join([*group_by, key])}, or select runs of one {key}")


def build(runs, layout="decay", group_by=None, split="test", decay=None, notes=None):
    """The dyn.analyze.tables.Table of the runs; notes collects what the reader should be told."""
    from dyn.analyze.tables import paper_table

    notes = [] if notes is None else notes
    records = [run_record(run, notes) for run in runs]
    if not any(split in net for r in records for net in r["final"].values()):
        where = "; ".join(f"{run.path}: {', '.join(run.splits) or 'none'}" for run in runs[:3])
        raise DynError(f"no run records the {split!r} split (splits of {where}); the table needs its "
                       "final accuracies")
    group = tuple(group_by or (("schedule",) if layout == "decay" else ("lr",)))
    check_keys(records, group, notes)
    seen = {}
    for r in records:
        key = (*(str(r[k]) for k in CONFIG_KEYS), str(r["seed"]))
        if key in seen:
            raise UsageError(f"{seen[key]} and {r['path']} are the same experiment and seed ({r['seed']}); "
                             "give each run once")
        seen[key] = r["path"]
    try:
        return paper_table(records, layout=layout, group_by=group, split=split, decay=decay)
    except ValueError as e:
        raise UsageError(str(e).replace("pass decay=", "choose one with --decay")) from None


def parse_group_by(value):
    if not value:
        return None
    keys = tuple(k.strip() for k in value.split(",") if k.strip())
    bad = [k for k in keys if k not in CONFIG_KEYS]
    if bad or not keys:
        raise UsageError(f"--group-by {value}: keys are among {', '.join(CONFIG_KEYS)}")
    return keys


@click.command("table")
@click.argument("runs", nargs=-1, required=True, metavar="RUNS...", type=click.Path(dir_okay=True))
@click.option("--layout", type=click.Choice(["decay", "lr"]), default="decay", show_default=True,
              help="decay: Table 1 (rows schedules, a column per decay); lr: Table 2 (rows lr, train/test "
                   "of SGD and EMA, Increase).")
@click.option("--group-by", metavar="KEYS", help="Config keys that make rows, comma-separated (default: "
                                                "schedule, or lr for --layout lr): model, dataset, schedule, lr.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex", "json"]), default="markdown",
              show_default=True)
@click.option("--detail", type=click.Choice(["mean", "std", "full"]), default="full", show_default=True,
              help="Cells: mean; mean ± std; mean ± std (n=runs). CSV and JSON always hold all three.")
@click.option("--digits", type=click.IntRange(0, 6), default=1, show_default=True)
@click.option("--split", default="test", show_default=True, help="Accuracy of --layout decay: test or train.")
@click.option("--decay", type=float, help="The EMA network of --layout lr (default: the only decay).")
def table(runs, layout, group_by, fmt, detail, digits, split, decay):
    """The paper's tables from a set of runs: final accuracy (%), mean over seeds.

    Runs with the same model, dataset, schedule and lr are seeds of one experiment: their
    accuracies at the last recorded epoch are averaged (std and number of runs too). Runs of
    different models or data sets are refused unless --group-by separates them.

    \b
    Examples:
      dyn table runs/table1/*.h5
      dyn table runs/table2/*.h5 --layout lr --format latex
      dyn table runs/*.h5 --group-by schedule,model --format csv
    """
    from dyn.analyze.source import open_runs
    from dyn.analyze.tables import render

    keys = parse_group_by(group_by)
    notes = []
    with open_runs(runs) as opened:
        t = build(opened, layout, keys, split, decay, notes)
    for note in dict.fromkeys(notes):
        click.echo(f"note: {note}", err=True)
    text = render(t, fmt, detail, digits)
    if fmt == "markdown":
        text += f"\nTable: {t.title}\n"
    click.echo(text, nl=False)
