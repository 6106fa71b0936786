"""`dyn analyze datamap`: dataset cartography (Swayamdipta et al., EMNLP 2020) for SGD and every
EMA network: confidence, variability and correctness per example, the data-map scatter and the
easy-to-learn / ambiguous / hard-to-learn examples."""

from __future__ import annotations

import click
import numpy as np

from dyn.analyze import output, per_sample
from dyn.analyze.measures.dynamics import REGIONS, DataMapAccumulator, region_top
from dyn.analyze.networks import label
from dyn.analyze.per_sample import PerSampleAnalysis


def summary(df) -> dict:
    return {"examples": int(len(df)), "mean_confidence": _mean(df["confidence"]),
            "mean_variability": _mean(df["variability"]), "mean_correctness": _mean(df["correctness"])}


def _mean(x) -> float:
    """The mean over the examples that have a value (NaN: never presented), as pandas' mean."""
    x = np.asarray(x, dtype=float)
    missing = np.isnan(x)
    count = x.size - int(missing.sum())
    return float(np.where(missing, 0.0, x).sum() / count) if count else float("nan")  # pandas' nanmean


def _src(kind) -> str:
    return "recorded" if kind == "prob" else "exp(-loss)"


class DataMapCommand(PerSampleAnalysis):
    name = "datamap"

    def compute(self, runs, opts, top: int = 10) -> dict:
        def one(run, split, net, win):
            acc = DataMapAccumulator(run.split_size(split))
            for packed, prob, _ in per_sample.chunks(run, split, net, win, "prob", correct="packed"):
                acc.add(prob, packed=packed)
            return acc.result()

        return {"runs": self.feed_examples(runs, opts, one, what="a data map", kind="prob"), "top": top}

    def table(self, result) -> str:
        parts = []
        for r in result["runs"]:
            rows = [[label(n), s["examples"], output.fmt(s["mean_confidence"], 3), output.fmt(s["mean_variability"], 3),
                     output.fmt(s["mean_correctness"], 3), _src(r.sources[n])]
                    for n, s in ((n, summary(d)) for n, d in r.nets.items())]
            parts.append(f"data map ({r.info.path}: split {r.split}, epochs {r.window.span}; variability is the "
                         f"population std, ddof 0, as cartography)\n"
                         + output.text_table(["network", "examples", "confidence", "variability", "correctness",
                                              "probability from"], rows))
            for net, d in r.nets.items():
                for region in REGIONS:
                    t = region_top(d, region, result["top"])
                    if len(t):
                        parts.append(f"{region}, {label(net)}: top {len(t)}\n" + output.text_table(
                            ["sample", "dataset index", "label", "confidence", "variability", "correctness"],
                            [[int(s), int(r.dataset_index[s]), int(r.labels[s]), output.fmt(c, 3), output.fmt(v, 3),
                              output.fmt(k, 3)] for s, c, v, k in
                             zip(t["sample"], t["confidence"], t["variability"], t["correctness"])]))
        return "\n\n".join(parts)

    def records(self, result):
        cols = ["run", "network", "sample", "dataset_index", "label", "confidence", "variability", "correctness",
                "correct_epochs", "presentations"]
        return cols, self.frame(result).to_dict("records")

    def document(self, result) -> dict:
        k = result["top"]
        return {"analysis": "datamap", "variability": "population std (ddof 0)", "runs": [{
            **r.header(),
            "networks": {n: {**summary(d), "probability_from": _src(r.sources[n]),
                             **{reg: [int(r.dataset_index[s]) for s in region_top(d, reg, k)["sample"]] for reg in REGIONS}}
                         for n, d in r.nets.items()}} for r in result["runs"]]}

    def plot(self, df, r):
        from dyn.analyze.figures import plot_datamap

        return plot_datamap(df, run=r.info.path)


@click.command()
@per_sample.common
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, metavar="K",
              help="How many examples of each region to list.")
def datamap(top, **kw):
    """Data maps: confidence, variability, correctness (cartography), SGD and every EMA.

    Per example, over the window's epochs: confidence = mean softmax probability of the true
    class; variability = its standard deviation (population, ddof 0, as cartography's
    code); correctness = fraction of epochs correct. The figure is cartography's scatter
    (variability x, confidence y, colour by correctness), one panel per network. As
    cartography does, the regions are chosen by sorting, not thresholds: easy-to-learn = the
    highest confidence, ambiguous = the highest variability, hard-to-learn = the lowest
    confidence; the top K of each are listed. On val/test without recorded probabilities the
    probability is exp(-loss) from the per-sample cross-entropy loss.

    \b
    Examples:
      dyn analyze datamap runs/x.h5 --out datamap.png
      dyn analyze datamap runs/x.h5 --split train --net sgd,ema-0.9999 --csv datamap.csv
    """
    DataMapCommand().run(kw, top=top)
