"""`dyn analyze stability`: per epoch, the fraction of samples whose correctness did not change
(Figures 2 and 6), with each network's accuracy."""

from __future__ import annotations

import click
import numpy as np

from dyn.analyze import output
from dyn.analyze.command import Analysis, RunResult
from dyn.analyze.measures.stability import Stability, StabilityAccumulator
from dyn.analyze.networks import label
from dyn.analyze.options import common


def summary(s: Stability) -> dict:
    """The figures that matter: mean, lowest (and when) and last stability; last accuracy."""
    i = int(np.argmin(s.stability))
    return {"mean_stability": float(s.stability.mean()), "min_stability": float(s.stability[i]),
            "min_epoch": int(s.stability_epochs[i]), "last_stability": float(s.stability[-1]),
            "last_accuracy": float(s.accuracy[-1])}


class StabilityCommand(Analysis):
    name = "stability"

    def compute(self, runs, opts) -> list[RunResult]:
        return [RunResult(info, opts.split, win, nets) for _, info, win, nets in
                self.feed_runs(runs, opts, lambda n, win: StabilityAccumulator(n, win.epochs), need=2)]

    def table(self, results) -> str:
        many = len(results) > 1
        rows = []
        for r in results:
            for net, s in r.nets.items():
                m = summary(s)
                rows.append(([r.info.label] if many else []) + [
                    label(net), output.fmt(m["mean_stability"]), output.fmt(m["min_stability"]), m["min_epoch"],
                    output.fmt(m["last_stability"]), output.fmt(m["last_accuracy"])])
        head = (["run"] if many else []) + ["network", "mean stability", "lowest", "at epoch", "last",
                                            "last accuracy"]
        spans = "; ".join(f"{r.info.label}: epochs {r.window.span}" for r in results) if many else \
            f"{results[0].info.path}: split {results[0].split}, epochs {results[0].window.span}"
        return f"stability ({spans})\n" + output.text_table(head, rows)

    def records(self, results):
        cols = ["run", "network", "epoch", "stability", "accuracy"]
        rows = []
        for r in results:
            for net, s in r.nets.items():
                stab = np.concatenate([[np.nan], s.stability])  # none at the window's first epoch
                rows += [{"run": r.info.path, "network": net, "epoch": int(e), "stability": st, "accuracy": a}
                         for e, st, a in zip(s.epochs, stab, s.accuracy)]
        return cols, rows

    def document(self, results) -> dict:
        return {"analysis": "stability", "runs": [{
            **r.header(),
            "networks": {net: {"samples": s.n, "epochs": s.epochs, "accuracy": s.accuracy,
                               "stability_epochs": s.stability_epochs, "stability": s.stability,
                               **summary(s)} for net, s in r.nets.items()}} for r in results]}

    def plot(self, df, r):
        from dyn.analyze.figures import plot_stability

        return plot_stability(df, run=r.info.path)


@click.command()
@common
def stability(**kw):
    """Prediction stability over epochs (Figures 2 and 6).

    For each epoch t after the first of the window: the fraction of samples whose
    correctness at t equals that at the previous recorded epoch, per network, with each
    network's accuracy. Prints mean, lowest and last stability and the last accuracy.

    \b
    Examples:
      dyn analyze stability runs/x.h5
      dyn analyze stability runs/x.h5 --net sgd,ema-0.9995 --out fig2.pdf
      dyn analyze stability runs/*.h5 --from-epoch 90 --csv stability.csv
    """
    StabilityCommand().run(kw)
