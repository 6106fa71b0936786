"""`dyn analyze aum`: the area under the margin (Pleiss et al., NeurIPS 2020) per example, for
SGD and every EMA network: its ranking (lowest first: the likeliest mislabelled) and its
distribution."""

from __future__ import annotations


import click
import numpy as np

from dyn.analyze import output, per_sample
from dyn.analyze.measures.dynamics import AUMAccumulator
from dyn.analyze.networks import label
from dyn.analyze.per_sample import PerSampleAnalysis




def summary(df) -> dict:
    a = np.asarray(df["aum"])
    ok = np.isfinite(a)
    return {"examples": int(len(df)), "mean_aum": float(a[ok].mean()) if ok.any() else float("nan"),
            "median_aum": float(np.median(a[ok])) if ok.any() else float("nan"),
            "negative": int(np.sum(a[ok] < 0))}


def _lowest(d, k: int):
    """The k lowest-AUM rows, by rank (without sorting all N)."""
    rank = np.asarray(d["rank"])
    rows = np.flatnonzero(rank <= k)
    return d.iloc[rows[np.argsort(rank[rows])]]


class AUMCommand(PerSampleAnalysis):
    name = "aum"

    def compute(self, runs, opts, top: int = 10) -> dict:
        def one(run, split, net, win):
            acc = AUMAccumulator(run.split_size(split))
            for _, margin, _ in per_sample.chunks(run, split, net, win, "margin", correct=False):
                acc.add(margin)
            return acc.result(ranked=True)  # rank 1 = lowest AUM; ties by sample; NaN last

        return {"runs": self.feed_examples(runs, opts, one, what="AUM", kind="margin"), "top": top}

    def table(self, result) -> str:
        parts = []
        for r in result["runs"]:
            rows = [[label(n), s["examples"], output.fmt(s["mean_aum"], 3), output.fmt(s["median_aum"], 3), s["negative"]]
                    for n, s in ((n, summary(d)) for n, d in r.nets.items())]
            parts.append(f"area under the margin ({r.info.path}: split {r.split}, epochs {r.window.span})\n"
                         + output.text_table(["network", "examples", "mean AUM", "median AUM", "AUM < 0"], rows))
            for net, d in r.nets.items():
                t = _lowest(d, result["top"])
                if len(t):
                    parts.append(f"lowest AUM, {label(net)}\n" + output.text_table(
                        ["rank", "sample", "dataset index", "label", "AUM"],
                        [[int(k), int(s), int(r.dataset_index[s]), int(r.labels[s]), output.fmt(a, 3)]
                         for k, s, a in zip(t["rank"], t["sample"], t["aum"])]))
        return "\n\n".join(parts)

    def records(self, result):
        cols = ["run", "network", "sample", "dataset_index", "label", "aum", "measurements", "rank"]
        return cols, self.frame(result).to_dict("records")

    def document(self, result) -> dict:
        k = result["top"]
        return {"analysis": "aum", "runs": [{
            **r.header(),
            "networks": {n: {**summary(d), "lowest": [int(r.dataset_index[s]) for s in _lowest(d, k)["sample"]]}
                         for n, d in r.nets.items()}} for r in result["runs"]]}

    def plot(self, df, r):
        from dyn.analyze.figures import plot_aum

        return plot_aum(df, run=r.info.path)


@click.command()
@per_sample.common
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, metavar="K",
              help="How many of the lowest-AUM examples to list.")
def aum(top, **kw):
    """Area under the margin per example (AUM, Pleiss 2020), SGD and every EMA network.

    Per example: the mean over the window's epochs of its margin, the true-class logit minus
    the largest other logit (an epoch in which it was not presented is left out). Low or
    negative AUM marks examples the network fits against their label: the likeliest
    mislabelled. The figure is the distribution of AUM per network. Margins need logits: a
    split records them only with dyn train --record-train (train-presented) or
    --record-train-every K (train), or from an import of aum/cartography records.

    \b
    Examples:
      dyn analyze aum runs/x.h5 --out aum.png
      dyn analyze aum runs/x.h5 --split train --csv aum.csv
    """
    AUMCommand().run(kw, top=top)
