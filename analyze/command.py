"""The shape of a `dyn analyze` command: fill in one `Analysis` subclass.

    class StabilityCommand(Analysis):
        name = "stability"
        def compute(self, runs, opts): ...   # numbers only, from open runs
        def table(self, result): ...         # the short text table printed
        def records(self, result): ...       # (CSV columns, rows): also the DataFrame's
        def document(self, result): ...      # --json
        def plot(self, df, r): ...           # one run's figure, from the DataFrame

    @click.command()
    @common
    def stability(**kw):
        '''The command's help.'''
        StabilityCommand().run(kw)

`run` checks the shared options before any file is read, opens the runs, computes, then
writes --csv, draws --out and prints the table (or --json). `dyn analyze report` and the
Python API (dyn.analyze.api) call the same methods, so every output holds the same numbers.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import click

from dyn.analyze import output
from dyn.analyze.naming import RunName
from dyn.analyze.options import SharedOptions
from dyn.analyze.window import EpochWindow


@dataclass
class RunResult:
    """What most analyses compute per run: per network, on one split, over one window."""

    info: RunName
    split: str
    window: EpochWindow
    nets: dict  # {network: the analysis's result}

    def header(self) -> dict:
        """How --json opens the run's entry: its path, label, split and window."""
        return {"path": self.info.path, "label": self.info.label, "split": self.split,
                "window": [int(self.window.epochs[0]), int(self.window.epochs[-1])]}


class Analysis(abc.ABC):
    name: str  # the command's name (`dyn analyze NAME`): default file names (<name>.png, <name>.csv)
    _by_name: dict = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if "name" in cls.__dict__:
            Analysis._by_name[cls.name] = cls

    @abc.abstractmethod
    def compute(self, runs, opts: SharedOptions, **params):
        """The result, from open runs: numbers only (no files written, nothing printed)."""

    @abc.abstractmethod
    def table(self, result) -> str:
        """The short text table the command prints."""

    @abc.abstractmethod
    def records(self, result) -> tuple[list, list]:
        """(columns, rows as dicts): --csv, and the DataFrame of the Python API."""

    @abc.abstractmethod
    def document(self, result) -> dict:
        """--json (numpy arrays allowed: output.json_text converts them)."""

    def feed_runs(self, runs, opts: SharedOptions, make, *, what: str | None = None, need: int = 1,
                  default=None) -> list[tuple]:
        """What most compute()s do: per run, each chosen network's packed correctness on --split
        over the window (need: at least that many epochs; default: dyn.analyze.window.select's),
        streamed into make(n, win), an accumulator. [(run, name, window, {network: result})]."""
        from dyn.analyze import inputs, networks, stream, window
        from dyn.analyze.naming import name_runs

        what = what or self.name
        out = []
        for run, info in zip(runs, name_runs(runs)):
            inputs.need_correctness(run, opts.split, what)
            nets = networks.choose(run, opts.nets)
            win = window.select(run, opts.split, opts.first, opts.last, need=need, what=what, default=default)
            n = run.split_size(opts.split)
            res = stream.feed(run, opts.split, nets, win.lo, win.hi, lambda net: [make(n, win)])
            out.append((run, info, win, {net: r[0] for net, r in res.items()}))
        return out

    def run_results(self, result) -> list:
        """The per-run results inside `result` (figures are drawn one per run)."""
        return result

    def frame(self, result):
        """The records as a DataFrame, with what the figures need in attrs."""
        return dataframe(*self.records(result), runs=run_attrs(self.run_results(result)))

    def plot(self, df, r, **kw):
        """One run's figure (r: its RunResult) from frame()'s DataFrame."""
        raise NotImplementedError(f"{self.name} draws no figure")

    def has_figure(self, r) -> bool:
        """Whether run result r has anything to draw."""
        return True

    def draw(self, result, out, **kw) -> list:
        """--out: one figure per run (several runs: the run's name added to the file name)."""
        from dyn.analyze.plot.save import save

        df, results = self.frame(result), self.run_results(result)
        paths = output.figure_paths(out, [r.info.name for r in results])
        return [output.draw(lambda p, r=r: save(self.plot(df, r, **kw), p), path)
                for r, path in zip(results, paths) if self.has_figure(r)]

    def run(self, kw: dict, draw_kw: dict | None = None, **params):
        """The command: check the options, compute over the runs, then write the CSV and the
        figures and print the table (or JSON)."""
        from dyn.analyze.inputs import open_runs

        opts = SharedOptions.from_kwargs(kw)
        with open_runs(opts.runs) as runs:
            result = self.compute(runs, opts, **params)
        if opts.csv:
            columns, rows = self.records(result)
            output.write_text(opts.csv, output.csv_text(rows, columns), "--csv")
            click.echo(f"wrote {opts.csv}", err=True)
        if opts.out:
            for p in self.draw(result, opts.out, **(draw_kw or {})):
                click.echo(f"wrote {p}", err=True)
        if opts.as_json:
            click.echo(output.json_text(self.document(result)), nl=False)
        else:
            click.echo(self.table(result))
        return result


def load(name: str) -> Analysis:
    """The analysis behind `dyn analyze NAME`, its module imported on first use."""
    import importlib

    from dyn.analyze.cli import ANALYSES

    importlib.import_module(ANALYSES[name][0].split(":")[0])
    return Analysis._by_name[name]()


def dataframe(columns, rows, **attrs):
    """The DataFrame of a command's records, with `attrs` for the figures."""
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=columns)
    df.attrs.update(attrs)
    return df


def run_attrs(results) -> dict:
    """{run path: how figures name it, its split and window} from a command's per-run results."""
    out = {}
    for r in results:
        win = getattr(r, "window", None)
        out[r.info.path] = {"label": r.info.label, "name": r.info.name, "title": r.info.title,
                            "split": getattr(r, "split", None),
                            "epochs": None if win is None else [int(e) for e in win.epochs]}
    return out
