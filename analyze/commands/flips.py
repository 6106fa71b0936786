"""`dyn analyze flips`: correctness flips per sample, the least stable samples and their
barcodes (Figures 4 and 7)."""

from __future__ import annotations

from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import inputs, networks, output, stream, window
from dyn.analyze.command import Analysis, RunResult, dataframe, run_attrs
from dyn.analyze.measures.flips import RANK_BY, Flips, FlipsAccumulator, barcode, top_flips
from dyn.analyze.naming import name_runs
from dyn.analyze.networks import label
from dyn.analyze.options import common
from dyn.analyze.stream import map_parallel
from dyn.errors import UsageError

MAX_BARCODES = 100  # more rows than a page holds


@dataclass(kw_only=True)
class FlipsResult(RunResult):  # nets: {network: Flips}
    rank_by: str
    top: np.ndarray             # (k,) sample indices, least stable first
    dataset_index: np.ndarray
    labels: np.ndarray
    barcodes: dict | None       # {network: (k, T) bool}; None when not read (see compute)
    images: np.ndarray | None


def _key_networks(run, nets, rank_by) -> list:
    """The networks whose flips are summed to rank samples."""
    emas = [n for n in nets if n in networks.ema_networks(run)]
    if rank_by == "sgd" and "sgd" not in nets:
        raise UsageError(f"--rank-by sgd: no sgd network among {', '.join(nets)} in {run.path}")
    if rank_by == "ema" and not emas:
        raise UsageError(f"--rank-by ema: no EMA network among {', '.join(nets)} in {run.path}")
    return {"sgd": ["sgd"], "ema": emas}.get(rank_by, nets)


class BarcodeColumns:
    """The window's rows of a network's packed correctness, read by column (byte) only,
    as dyn.analyze.measures.flips.barcode asks for them."""

    def __init__(self, run, split, net, win):
        self.args = (run, split, net, win.lo, win.hi)
        self.shape = (win.hi - win.lo, run.record_dataset(split, net, "correct").shape[1])

    def __getitem__(self, key):
        return stream.columns(*self.args, key[1])


def summary(f: Flips) -> dict:
    return {"transitions": f.transitions, "mean_flips": float(f.flips.mean()),
            "never_flipped": float(np.mean(f.flips == 0)), "max_flips": int(f.flips.max())}


class FlipsCommand(Analysis):
    name = "flips"

    def compute(self, runs, opts, top: int = 10, rank_by: str = "sum", barcodes: bool | None = None) -> list[FlipsResult]:
        """barcodes: read the top samples' barcodes; by default only for what shows them (a
        figure, --json). They are a second read, of a few bytes per epoch and network scattered
        over the file: on 10**6 samples a quarter of the time counting the flips takes."""
        if barcodes is None:
            barcodes = bool(opts.out or opts.as_json)
        out = []
        for run, info in zip(runs, name_runs(runs)):
            inputs.need_correctness(run, opts.split, "flips")
            nets = networks.choose(run, opts.nets)
            key = _key_networks(run, nets, rank_by)
            win = window.select(run, opts.split, opts.first, opts.last, need=2, what="flips")
            n = run.split_size(opts.split)
            res = stream.feed(run, opts.split, nets, win.lo, win.hi, lambda net: [FlipsAccumulator(n, win.epochs)])
            flips = {net: r[0] for net, r in res.items()}
            # Summing flips over the ranked networks orders samples as the sum of their per-sample
            # stabilities does (1 - flips / transitions each): the authors' "stability" ranking.
            chosen = top_flips(sum(flips[k].flips for k in key), k=top)
            codes = None
            if barcodes:
                codes = dict(zip(nets, map_parallel(
                    lambda net: barcode(BarcodeColumns(run, opts.split, net, win), chosen, n), nets)))
            out.append(FlipsResult(info, opts.split, win, flips, rank_by=rank_by, top=chosen,
                                   dataset_index=run.dataset_index(opts.split, chosen),
                                   labels=run.labels(opts.split, chosen), barcodes=codes,
                                   images=run.images(opts.split, chosen) if len(chosen) else None))
        return out

    def table(self, results) -> str:
        parts = []
        for r in results:
            nets = list(r.nets)
            rows = [[i + 1, int(s), int(d), int(y)] + [int(r.nets[n].flips[s]) for n in nets]
                    for i, (s, d, y) in enumerate(zip(r.top, r.dataset_index, r.labels))]
            t = next(iter(r.nets.values())).transitions
            parts.append(f"flips per sample ({r.info.label if len(results) > 1 else r.info.path}: split {r.split}, "
                         f"epochs {r.window.span}, {t} transitions), top {len(r.top)} by {r.rank_by}\n"
                         + output.text_table(["rank", "sample", "dataset index", "label"]
                                             + [f"flips {label(n)}" for n in nets], rows))
            sums = [[label(n), output.fmt(s["mean_flips"], 2), output.fmt(s["never_flipped"]), s["max_flips"]]
                    for n, s in ((n, summary(f)) for n, f in r.nets.items())]
            parts.append(output.text_table(["network", "mean flips", "never flipped", "most flips"], sums))
        return "\n\n".join(parts)

    def records(self, results):
        nets = list(dict.fromkeys(n for r in results for n in r.nets))
        cols = ["run", "rank", "sample", "dataset_index", "label"] + [f"flips_{n}" for n in nets]
        rows = []
        for r in results:
            for i, (s, d, y) in enumerate(zip(r.top, r.dataset_index, r.labels)):
                rows.append({"run": r.info.path, "rank": i + 1, "sample": int(s), "dataset_index": int(d),
                             "label": int(y), **{f"flips_{n}": int(f.flips[s]) for n, f in r.nets.items()}})
        return cols, rows

    def document(self, results) -> dict:
        return {"analysis": "flips", "runs": [{
            **r.header(), "rank_by": r.rank_by, "epochs": r.window.epochs,
            "networks": {n: summary(f) for n, f in r.nets.items()},
            "top": [{"rank": i + 1, "sample": int(s), "dataset_index": int(d), "label": int(y),
                     "flips": {n: int(f.flips[s]) for n, f in r.nets.items()},
                     "barcodes": {n: "".join("1" if b else "0" for b in r.barcodes[n][i]) for n in r.nets}}
                    for i, (s, d, y) in enumerate(zip(r.top, r.dataset_index, r.labels))]} for r in results]}

    def frame(self, results):
        """dyn.analyze.flips's DataFrame: the records long (one row per run, network and sample),
        with each sample's barcode; the window's epochs and the images in attrs."""
        cols = ["run", "network", "rank", "sample", "dataset_index", "label", "flips", "transitions", "barcode"]
        rows = [{"run": r.info.path, "network": n, "rank": i + 1, "sample": int(s), "dataset_index": int(d),
                 "label": int(y), "flips": int(f.flips[s]), "transitions": f.transitions,
                 "barcode": None if r.barcodes is None else "".join("1" if b else "0" for b in r.barcodes[n][i])}
                for r in results for n, f in r.nets.items()
                for i, (s, d, y) in enumerate(zip(r.top, r.dataset_index, r.labels))]
        attrs = run_attrs(results)
        for r in results:
            attrs[r.info.path]["images"] = r.images
        return dataframe(cols, rows, runs=attrs)

    def has_figure(self, r) -> bool:
        return len(r.top) > 0

    def plot(self, df, r):
        from dyn.analyze.figures import plot_flips

        return plot_flips(df, run=r.info.path)


@click.command()
@common
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, metavar="K",
              help="How many of the least stable samples to list and draw.")
@click.option("--rank-by", type=click.Choice(RANK_BY), default="sum", show_default=True,
              help="Rank by SGD's flips, the EMA networks', or all chosen networks' (sum; stability "
                   "orders the same way, as the authors' code does).")
def flips(top, rank_by, **kw):
    """Correctness flips per sample and barcodes of the least stable samples (Figures 4, 7).

    A flip is a change of a sample's correctness between consecutive recorded epochs of the
    window. The top K samples are drawn as barcodes, one row per network and one cell per
    epoch, with the samples' images beside them when the run stores them. --csv lists sample
    index, dataset index, label and flip counts.

    \b
    Examples:
      dyn analyze flips runs/x.h5 --net sgd,ema-0.9995 --out fig4.png
      dyn analyze flips runs/x.h5 --top 50 --rank-by ema --csv flips.csv
    """
    if kw.get("out") and top == 0:  # the figure is the barcodes: with none, it would be nothing
        raise UsageError("--top 0 with --out: no barcodes to draw; give --top K of at least 1, "
                         "or leave out --out for the flip counts alone")
    if kw.get("out") and top > MAX_BARCODES:
        raise UsageError(f"--top {top}: too many barcodes to draw (at most {MAX_BARCODES}); use --csv for the numbers")
    FlipsCommand().run(kw, top=top, rank_by=rank_by)
