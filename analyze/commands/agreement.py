"""`dyn analyze agreement`: where two networks' correctness (and predicted labels) differ, per
epoch and per sample (the "mismatch" plots of the authors' code)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import click
import numpy as np

from dyn.analyze import inputs, networks, output, stream, window
from dyn.analyze.command import Analysis, dataframe, run_attrs
from dyn.analyze.measures.agreement import Agreement, AgreementAccumulator
from dyn.analyze.naming import RunName, name_runs, slug
from dyn.analyze.networks import label
from dyn.analyze.options import common

LABEL_BYTES = 16 << 20  # predicted labels read per step, per network


@dataclass
class AgreementResult:  # one pair of networks of one run
    info: RunName
    split: str
    window: window.EpochWindow
    pair: tuple
    bins: int
    result: Agreement


def _agreement(run, split, a, b, win) -> Agreement:
    n = run.split_size(split)
    acc = AgreementAccumulator(n, win.epochs)
    labels = run.has(split, a, "predicted") and run.has(split, b, "predicted")
    step = max(1, LABEL_BYTES // max(1, 4 * n))
    row = win.lo
    for ca, cb in stream.aligned([stream.chunks(run, split, net, win.lo, win.hi) for net in (a, b)]):
        for s in range(0, len(ca), step):  # predicted labels take 16x the bits' memory: smaller steps
            t = min(len(ca), s + step)
            rows = slice(row + s, row + t)
            la, lb = (run.predicted(split, a, rows), run.predicted(split, b, rows)) if labels else (None, None)
            acc.add(ca[s:t], cb[s:t], la, lb)
        row += len(ca)
    return acc.result()


def summary(g: Agreement) -> dict:
    lab = g.label_mismatch
    return {"mean_correct_mismatch": float(g.epoch_mismatch.mean()),
            "last_correct_mismatch": float(g.epoch_mismatch[-1]),
            "mean_label_mismatch": None if lab is None else float(lab.mean()),
            "last_label_mismatch": None if lab is None else float(lab[-1]),
            "never_differ": float(np.mean(g.mismatch == 0)),
            "always_differ": float(np.mean(g.mismatch == len(g.epochs)))}


class AgreementCommand(Analysis):
    name = "agreement"

    def compute(self, runs, opts, bins: int = 20, pair=None) -> list[AgreementResult]:
        out = []
        for run, info in zip(runs, name_runs(runs)):
            inputs.need_correctness(run, opts.split, "agreement")
            chosen = [pair(run)] if callable(pair) else networks.pairs(run, opts.nets)
            win = window.select(run, opts.split, opts.first, opts.last, what="agreement")
            for a, b in chosen:
                if len(chosen) > 1:  # one figure per pair: the run's name and the EMA network's
                    info_ab = replace(info, name=slug(f"{info.name}-{b}"))
                else:
                    info_ab = info
                out.append(AgreementResult(info_ab, opts.split, win, (a, b), bins, _agreement(run, opts.split, a, b, win)))
        return out

    def table(self, results) -> str:
        many = len({r.info.path for r in results}) > 1
        rows = []
        for r in results:
            s = summary(r.result)
            rows.append(([r.info.label] if many else []) + [
                f"{label(r.pair[0])} vs {label(r.pair[1])}", output.fmt(s["mean_correct_mismatch"]),
                output.fmt(s["last_correct_mismatch"]), output.fmt(s["mean_label_mismatch"]),
                output.fmt(s["last_label_mismatch"]), output.fmt(s["never_differ"]), output.fmt(s["always_differ"])])
        head = (["run"] if many else []) + ["networks", "correctness differs: mean", "last",
                                            "label differs: mean", "last", "samples never differ", "always differ"]
        r0 = results[0]
        one_run = len({r.info.path for r in results}) == 1
        where = f"{r0.info.path}: split {r0.split}, epochs {r0.window.span}" if one_run else f"split {r0.split}"
        note = ("" if all(r.result.label_differs is not None for r in results)
                else "\n(— : no predicted labels recorded)")
        return f"agreement ({where}); fractions of samples\n" + output.text_table(head, rows) + note

    def records(self, results):
        cols = ["run", "network_a", "network_b", "epoch", "correct_differs", "label_differs"]
        rows = []
        for r in results:
            g = r.result
            lab = g.label_mismatch if g.label_mismatch is not None else np.full(len(g.epochs), np.nan)
            rows += [{"run": r.info.path, "network_a": r.pair[0], "network_b": r.pair[1], "epoch": int(e),
                      "correct_differs": c, "label_differs": x} for e, c, x in zip(g.epochs, g.epoch_mismatch, lab)]
        return cols, rows

    def document(self, results) -> dict:
        docs = []
        for r in results:
            g = r.result
            edges, counts = g.histogram(r.bins)
            docs.append({"path": r.info.path, "label": r.info.label, "split": r.split, "networks": list(r.pair),
                         "epochs": g.epochs, "correct_differs": g.epoch_mismatch, "label_differs": g.label_mismatch,
                         "sample_mismatch_histogram": {"bin_edges": edges, "counts": counts}, **summary(g)})
        return {"analysis": "agreement", "runs": docs}

    def frame(self, results):
        """The records as a DataFrame (dyn.analyze.agreement); each run's per-sample mismatch
        histogram of each pair in attrs["runs"][run]["histograms"]["a vs b"]."""
        attrs = run_attrs(results)
        for r in results:  # a run compared pair by pair (SGD with each EMA): one histogram per pair
            attrs[r.info.path].setdefault("histograms", {})["{} vs {}".format(*r.pair)] = r.result.histogram(r.bins)
        return dataframe(*self.records(results), runs=attrs)

    def plot(self, df, r):
        from dyn.analyze.figures import plot_agreement

        return plot_agreement(df, run=r.info.path, pair=r.pair)


@click.command()
@common
@click.option("--bins", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="Bins of the per-sample histogram.")
def agreement(bins, **kw):
    """Mismatch of two networks: where their correctness and predicted labels differ.

    Per epoch, the fraction of samples whose correctness differs between the two networks
    (and, when predictions are recorded, whose predicted labels differ); per sample, the
    fraction of epochs in which correctness differs, as a histogram. --net names the two
    networks; without it, sgd is compared with each EMA network (the paper's comparison), one
    figure per pair (the EMA network's name added to --out's).

    \b
    Examples:
      dyn analyze agreement runs/x.h5 --out mismatch.png
      dyn analyze agreement runs/x.h5 --net sgd,ema-0.9995 --out mismatch.png
    """
    AgreementCommand().run(kw, bins=bins)
