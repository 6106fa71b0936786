"""`dyn analyze histogram`: per-sample misclassification ratios over a window (Figure 3), and
the fractions of samples always right, always wrong and in between."""

from __future__ import annotations

from dataclasses import dataclass

import click

from dyn.analyze import output
from dyn.analyze.command import Analysis, RunResult
from dyn.analyze.measures.misclassification import Misclassification, MisclassificationAccumulator
from dyn.analyze.networks import label
from dyn.analyze.options import common
from dyn.analyze.window import second_half


@dataclass(kw_only=True)
class HistogramResult(RunResult):  # nets: {network: Misclassification}
    bins: int


def summary(m: Misclassification) -> dict:
    return {"always_right": m.always_right, "always_wrong": m.always_wrong, "in_between": m.in_between,
            "mean_ratio": float(m.ratio.mean()) if m.correct.size else float("nan")}


class HistogramCommand(Analysis):
    name = "histogram"

    def compute(self, runs, opts, bins: int = 20) -> list[HistogramResult]:
        def make(n, win):  # the window's ends given: the accumulator's default would halve it again
            return MisclassificationAccumulator(n, win.epochs, (int(win.epochs[0]), int(win.epochs[-1])))

        return [HistogramResult(info, opts.split, win, nets, bins=bins) for _, info, win, nets in
                self.feed_runs(runs, opts, make, what="the misclassification histogram", default=second_half)]

    def table(self, results) -> str:
        many = len(results) > 1
        rows = []
        for r in results:
            for net, m in r.nets.items():
                s = summary(m)
                rows.append(([r.info.label] if many else []) + [label(net)] + [
                    output.fmt(s[k]) for k in ("always_right", "always_wrong", "in_between", "mean_ratio")])
        head = (["run"] if many else []) + ["network", "always right", "always wrong", "in between", "mean ratio"]
        r0 = results[0]
        where = (f"{r0.info.path}: split {r0.split}, epochs {r0.window.span} ({len(r0.window.epochs)} epochs)"
                 if not many else "; ".join(f"{r.info.label}: epochs {r.window.span}" for r in results))
        return f"misclassification ratio ({where}); fractions of samples\n" + output.text_table(head, rows)

    def records(self, results):
        cols = ["run", "network", "first_epoch", "last_epoch", "bin_lo", "bin_hi", "samples", "fraction"]
        rows = []
        for r in results:
            for net, m in r.nets.items():
                edges, counts = m.histogram(r.bins)
                total = counts.sum()
                rows += [{"run": r.info.path, "network": net, "first_epoch": int(r.window.epochs[0]),
                          "last_epoch": int(r.window.epochs[-1]), "bin_lo": lo, "bin_hi": hi,
                          "samples": int(c), "fraction": c / total if total else float("nan")}
                         for lo, hi, c in zip(edges[:-1], edges[1:], counts)]
        return cols, rows

    def document(self, results) -> dict:
        docs = []
        for r in results:
            nets = {}
            for net, m in r.nets.items():
                edges, counts = m.histogram(r.bins)
                nets[net] = {"samples": int(m.correct.size), **summary(m), "bin_edges": edges, "counts": counts}
            docs.append({**r.header(), "epochs_in_window": len(r.window.epochs), "networks": nets})
        return {"analysis": "histogram", "runs": docs}

    def plot(self, df, r, logy: bool = False):
        from dyn.analyze.figures import plot_misclassification

        return plot_misclassification(df, run=r.info.path, logy=logy)


@click.command()
@common
@click.option("--bins", type=click.IntRange(1, 1000), default=20, show_default=True, help="Histogram bins on [0, 1].")
@click.option("--log", "logy", is_flag=True, help="Logarithmic y axis.")
def histogram(bins, logy, **kw):
    """Histograms of per-sample misclassification ratios (Figure 3).

    A sample's ratio is the fraction of the window's epochs in which it was wrong. The
    default window is the second half of the recorded epochs (90..180 for 0..180, the
    paper's). Prints the fractions of samples always right, always wrong and in between.

    \b
    Examples:
      dyn analyze histogram runs/x.h5 --out fig3.png
      dyn analyze histogram runs/x.h5 --from-epoch 150 --net sgd,ema --json
    """
    HistogramCommand().run(kw, draw_kw={"logy": logy}, bins=bins)
