"""`dyn analyze decays`: accuracy and stability against the EMA decay, from one run: the decays
it trained as points, those `dyn posthoc --evaluate` synthesized as a curve, with the residual."""

from __future__ import annotations

from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import inputs, networks, output, window
from dyn.analyze.command import Analysis
from dyn.analyze.measures.decays import decay_table
from dyn.analyze.options import common
from dyn.analyze.posthoc import MAX_RESIDUAL
from dyn.errors import RunFileError, UsageError


@dataclass
class DecaysResult:
    path: str
    split: str
    epoch: int
    window: tuple
    table: object      # DataFrame (dyn.analyze.measures.decays.decay_table)
    sgd: dict          # SGD's accuracy and stability, for reference
    skipped: list      # post-hoc networks without records on the split


def _residual(run, net: str, epoch: int) -> float:
    residual = run.network_values(net, "residual")
    if residual is None:
        return np.nan
    row = np.flatnonzero(run.weight_epochs() == epoch)
    return float(residual[row[0]]) if len(row) else np.nan


class DecaysCommand(Analysis):
    name = "decays"

    def compute(self, runs, opts, epoch: int | None = None) -> list:
        out = []
        for run in runs:
            inputs.need_correctness(run, opts.split, "decays")
            win = window.select(run, opts.split, opts.first, opts.last, what="decays")
            rows, epochs = win.rows, win.epochs
            at = len(epochs) - 1 if epoch is None else int(np.searchsorted(epochs, epoch))
            if at >= len(epochs) or epochs[at] != (epochs[-1] if epoch is None else epoch):
                raise UsageError(f"--epoch {epoch}: not a recorded epoch of {run.path} in the window "
                                 f"{epochs[0]}..{epochs[-1]}")
            nets, decays, kinds, correct, residual, skipped = [], [], [], [], [], []
            wanted = networks.choose(run, opts.nets) if opts.nets else run.networks
            for n in wanted:
                info = run.network_info(n)
                if info["kind"] not in ("ema", "posthoc") or info["decay"] is None:
                    continue
                if not run.has(opts.split, n, "correct"):
                    skipped.append(n)
                    continue
                nets.append(n), decays.append(info["decay"]), kinds.append(info["kind"])
                correct.append(run.correct(opts.split, n, rows))
                residual.append(_residual(run, n, int(epochs[at])) if info["kind"] == "posthoc" else np.nan)
            if not nets:
                raise RunFileError(f"{run.path}: no EMA network with records on split {opts.split!r}")
            table = decay_table(nets, decays, kinds, correct, residual, at=at)
            sgd = {}
            if run.has(opts.split, "sgd", "correct"):
                s = decay_table(["sgd"], [0.0], ["sgd"], [run.correct(opts.split, "sgd", rows)], at=at)
                sgd = {"accuracy": float(s["accuracy"][0]), "stability": float(s["stability"][0])}
            out.append(DecaysResult(str(run.path), opts.split, int(epochs[at]), (int(epochs[0]), int(epochs[-1])),
                                 table, sgd, skipped))
        return out

    def records(self, result):
        cols = ["run", "split", "epoch", "network", "kind", "decay", "accuracy", "stability", "residual"]
        rows = [{"run": r.path, "split": r.split, "epoch": r.epoch, **row}
                for r in result for row in r.table.to_dict("records")]
        return cols, rows

    def document(self, result) -> dict:
        return {"analysis": "decays", "runs": [
            {"path": r.path, "split": r.split, "epoch": r.epoch, "window": list(r.window), "sgd": r.sgd,
             "skipped": r.skipped, "networks": r.table.to_dict("records")} for r in result]}

    def table(self, result) -> str:
        parts = []
        for r in result:
            rows = [[row.network, row.kind, f"{row.decay:g}", output.fmt(row.accuracy), output.fmt(row.stability),
                     "" if np.isnan(row.residual) else f"{row.residual:.2g}"] for row in r.table.itertuples()]
            head = f"decays ({r.path}: split {r.split}, accuracy at epoch {r.epoch}, stability over epochs " \
                   f"{r.window[0]}..{r.window[1]})"
            parts.append(head + "\n" + output.text_table(["network", "kind", "decay", "accuracy", "stability",
                                                          "residual"], rows)
                         + (f"\nnot evaluated (dyn posthoc --evaluate): {', '.join(r.skipped)}" if r.skipped else ""))
        return "\n\n".join(parts)

    def draw(self, result, out) -> list:
        """One figure per run, titled by the run's file (several runs: its name added)."""
        from dyn.analyze.plot.decays import decays_figure

        from pathlib import Path

        paths = []
        for r, target in zip(result, output.figure_paths(Path(out), [Path(r.path).stem for r in result])):
            title = (f"{Path(r.path).name}, {r.split}: accuracy at epoch {r.epoch},\n"
                     f"stability over epochs {r.window[0]}..{r.window[1]}")
            paths.append(output.draw(lambda p, r=r, title=title: decays_figure(p, r.table, title=title, sgd=r.sgd, bound=MAX_RESIDUAL),
                                     target))
        return paths


@click.command("decays")
@common
@click.option("--epoch", type=int, metavar="E", help="Accuracy at this epoch. Default: the window's last.")
def decays(epoch, **kw):
    """Accuracy and stability against the EMA decay (the paper's question, as a curve).

    One run trains a few decays (points); `dyn posthoc RUN --decay ... --evaluate` adds any other
    (curve). Accuracy is taken at --epoch, stability (the fraction of samples whose correctness
    is unchanged from one recorded epoch to the next) is averaged over the epoch window. The
    residual panel shows how closely each post-hoc network's profile matched its target.

    \b
    Examples:
      dyn posthoc runs/x.h5 --decay 0.95,0.97,0.98,0.995 --evaluate
      dyn analyze decays runs/x.h5 --split test --out decays.png
    """
    DecaysCommand().run(kw, epoch=epoch)
