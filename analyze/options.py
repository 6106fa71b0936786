"""Options every `dyn analyze` command shares, and what is done with them before any analysis.

The decorators only declare flags; `SharedOptions.from_kwargs` turns them into one object whose
checks (figure suffix, writable paths, --net syntax) run before a run file is read.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import click

from dyn.analyze import output
from dyn.errors import UsageError


def runs_argument(fn):
    return click.argument("runs", nargs=-1, required=True, metavar="RUNS...",
                          type=click.Path(dir_okay=True))(fn)


def net_option(fn):
    return click.option("--net", "nets", multiple=True, metavar="NAMES",
                        help="Networks, comma-separated or repeated: sgd, ema-0.9995, a decay (0.9995), "
                             "or ema for a run's only EMA network. Default: sgd and every EMA network.")(fn)


def split_option(fn):
    return click.option("--split", default="val", show_default=True, metavar="SPLIT",
                        help="Evaluation split: val or test (or any split the run records).")(fn)


def window_options(fn):
    fn = click.option("--to-epoch", type=int, metavar="E", help="Last epoch of the window (inclusive).")(fn)
    return click.option("--from-epoch", type=int, metavar="E", help="First epoch of the window.")(fn)


def output_options(fn):
    fn = click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON on stdout.")(fn)
    fn = click.option("--csv", "csv_path", type=click.Path(), metavar="FILE",
                      help="Write the numbers to a CSV file (a folder: <analysis>.csv inside it).")(fn)
    return click.option("--out", type=click.Path(), metavar="FILE",
                        help="Draw the figure: .png, .pdf or .svg by the extension (several runs: "
                             "one file per run, the run's name added; a folder: <analysis>.png inside it).")(fn)


def common(fn):
    """RUNS..., --net, --split, --from-epoch/--to-epoch, --out, --csv, --json."""
    for deco in (output_options, window_options, split_option, net_option, runs_argument):
        fn = deco(fn)
    return fn


@dataclass
class SharedOptions:
    """The options every analysis command takes; `first`/`last` are --from-epoch/--to-epoch."""

    runs: tuple
    nets: list | None
    split: str
    first: int | None
    last: int | None
    out: Path | None
    csv: Path | None
    as_json: bool

    @classmethod
    def from_kwargs(cls, kw: dict) -> "SharedOptions":
        """Pop the shared options from a command's keyword arguments and check them."""
        out = kw.pop("out", None)
        csv_path = kw.pop("csv_path", None)
        ctx = click.get_current_context(silent=True)
        name = ctx.info_name if ctx and ctx.info_name else "figure"
        out, csv_path = in_folder(out, f"{name}.png"), in_folder(csv_path, f"{name}.csv")
        return cls(runs=kw.pop("runs"), nets=parse_nets(kw.pop("nets", ())), split=kw.pop("split", "val"),
                   first=kw.pop("from_epoch", None), last=kw.pop("to_epoch", None),
                   out=output.check_figure(out) if out else None,
                   csv=output.check_writable(csv_path, "--csv") if csv_path else None,
                   as_json=kw.pop("as_json", False))


def in_folder(path, name: str):
    """A folder given as --out or --csv (an existing one, or any path ending in a separator)
    gets the analysis's file inside it, `<analysis>.png` or `<analysis>.csv`: the same rule
    for both flags, so `--out figs/` never writes figs.png beside the folder."""
    if path is None:
        return None
    s = str(path)
    if Path(s).is_dir() or s.endswith(("/", os.sep)):
        return Path(s) / name
    return path


def parse_nets(values) -> list | None:
    """("sgd,ema-0.9", "ema") -> ["sgd", "ema-0.9", "ema"]; None when not given."""
    names = [n.strip() for v in values for n in v.split(",")]
    if any(not n for n in names):
        raise UsageError("--net: empty network name in " + repr(",".join(values)))
    return names or None
