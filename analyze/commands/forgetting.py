"""`dyn analyze forgetting`: forgetting events per example (Toneva et al., ICLR 2019), for SGD
and every EMA network, and the examples ordered by forgetting as order_examples_by_forgetting.py
orders them."""

from __future__ import annotations


import click
import numpy as np

from dyn.analyze import output, per_sample
from dyn.analyze.measures.dynamics import NEVER_LEARNED, ForgettingAccumulator, order_by_forgetting, smallest
from dyn.analyze.networks import label
from dyn.analyze.per_sample import PerSampleAnalysis




def _summed(results) -> dict:
    """Per network: (data-set indices, forgetting counts summed over the runs (seeds), number
    of runs), matched by data-set index; an example missing from a run is left out."""
    nets = list(dict.fromkeys(n for r in results for n in r.nets))
    summed = {}
    for net in nets:
        have = [r for r in results if net in r.nets]
        if len(have) == 1:
            common, counts = have[0].dataset_index, [have[0].nets[net]["forgetting"]]
        else:
            common = have[0].dataset_index
            for r in have[1:]:
                common = np.intersect1d(common, r.dataset_index)
            counts = []
            for r in have:
                pos = np.argsort(r.dataset_index, kind="stable")
                at = pos[np.searchsorted(r.dataset_index[pos], common)]
                counts.append(r.nets[net]["forgetting"][at])
        summed[net] = (common, counts[0] if len(counts) == 1 else np.sum(counts, axis=0, dtype=float), len(have))
    return summed


def _ranking(result) -> dict:
    """Per network, the examples ordered by their summed forgetting count (order_by_forgetting),
    made on first use: only --csv and --json need the whole order (1.3 M examples: ~30 ms a network)."""
    if "ranking" not in result:
        result["ranking"] = {}
        for net, (index, total, runs) in result["summed"].items():
            result["ranking"][net] = order_by_forgetting(total, index)
            result["ranking"][net].attrs["runs"] = runs
    return result["ranking"]


def summary(df) -> dict:
    ev = np.asarray(df["forgetting_events"])
    never = np.asarray(df["never_learned"])
    return {"examples": int(len(df)), "mean_events": float(ev.mean()) if len(ev) else float("nan"),
            "unforgettable": int(np.sum((ev == 0) & ~never)), "never_learned": int(never.sum()),
            "forgotten_at_least_once": int(np.sum(ev > 0)), "max_events": int(ev.max()) if len(ev) else 0}


def _nl(choice, epochs) -> str:
    return {"E": f"E = {epochs}", "inf": "inf", "skip": "skipped (left out of the ranking)"}[choice]


class ForgettingCommand(PerSampleAnalysis):
    name = "forgetting"

    def compute(self, runs, opts, never_learned: str = "E", top: int = 10) -> dict:
        def one(run, split, net, win):
            acc = ForgettingAccumulator(run.split_size(split), win.epochs)
            for packed, _, presence in per_sample.chunks(run, split, net, win, None, correct="packed",
                                                        raw_presence=True):
                acc.add_packed(packed, presence)
            return acc.result(never_learned)

        out = self.feed_examples(runs, opts, one, what="forgetting")
        return {"runs": out, "summed": _summed(out), "never_learned": never_learned, "top": top}

    def table(self, result) -> str:
        parts = []
        for r in result["runs"]:
            rows = [[label(n)] + [s[k] if isinstance(s[k], int) else output.fmt(s[k], 3) for k in
                                  ("examples", "mean_events", "unforgettable", "never_learned", "max_events")]
                    for n, s in ((n, summary(d)) for n, d in r.nets.items())]
            parts.append(f"forgetting events per example ({r.info.path}: split {r.split}, epochs {r.window.span}; "
                         f"never learned counted as {_nl(result['never_learned'], len(r.window.epochs))})\n"
                         + output.text_table(["network", "examples", "mean events", "unforgettable",
                                              "never learned", "most events"], rows))
        k = result["top"]
        for net, (index, total, runs) in result["summed"].items():
            ranked = ~np.isnan(total)  # NaN: skipped (--never-learned skip)
            if k and ranked.any():
                top = smallest(-total[ranked], index[ranked], k)  # the k most forgotten, ties by index
                parts.append(f"most forgotten, {label(net)} (summed over {runs} run(s); "
                             f"unforgettable: {int(np.sum(total == 0))})\n"
                             + output.text_table(["dataset index", "forgetting count"],
                                                 [[int(i), output.fmt(c, 0)] for i, c in
                                                  zip(index[ranked][top], total[ranked][top])]))
        return "\n\n".join(parts)

    def records(self, result):
        """--csv: the data-set indices ordered as order_examples_by_forgetting.py writes them
        ('indices' by 'forgetting counts', ascending), one block per network."""
        cols = ["network", "rank", "index", "forgetting_counts"]
        rows = [{"network": net, "rank": int(k), "index": int(i), "forgetting_counts": c}
                for net, order in _ranking(result).items()
                for k, i, c in zip(order["rank"], order["index"], order["forgetting_counts"])]
        return cols, rows

    def document(self, result) -> dict:
        return {"analysis": "forgetting", "never_learned": result["never_learned"], "runs": [{
            **r.header(),
            "networks": {n: summary(d) for n, d in r.nets.items()}} for r in result["runs"]],
            "ranking": {net: {"runs": o.attrs["runs"], "unforgettable": o.attrs["unforgettable"],
                              "indices": o["index"].to_numpy(), "forgetting counts": o["forgetting_counts"].to_numpy()}
                        for net, o in _ranking(result).items()}}

    def frame_attrs(self, result) -> dict:
        return {"never_learned": result["never_learned"]}

    def plot(self, df, r):
        from dyn.analyze.figures import plot_forgetting

        return plot_forgetting(df, run=r.info.path)


@click.command()
@per_sample.common
@click.option("--never-learned", type=click.Choice(NEVER_LEARNED), default="E", show_default=True,
              help="How an example never learned (never correct) counts: E, the number of epochs in "
                   "the window, per run (Toneva et al.'s code); inf (the paper's 'infinitely "
                   "forgotten'); skip (left out of the ranking).")
@click.option("--top", type=click.IntRange(0), default=10, show_default=True, metavar="K",
              help="How many of the most forgotten examples to list.")
def forgetting(never_learned, top, **kw):
    """Forgetting events per example (Toneva 2019), for SGD and every EMA network.

    A forgetting event is a 1 -> 0 change of an example's correctness between consecutive
    presentations (an example not presented in an epoch is skipped over). Also: the first
    epoch at which it was learned, and how many examples were never forgotten
    (unforgettable). With several runs (seeds) the counts are summed per example, matched by
    data-set index, as the reference code sums over its runs.

    --csv writes the data-set indices sorted by forgetting count, ascending, with the counts
    (network, rank, index, forgetting_counts): the 'indices' and 'forgetting counts' of
    order_examples_by_forgetting.py, for data-pruning scripts (filter one network).

    \b
    Examples:
      dyn analyze forgetting runs/x.h5 --out forgetting.png
      dyn analyze forgetting runs/seed*.h5 --net sgd --csv order.csv
    """
    ForgettingCommand().run(kw, never_learned=never_learned, top=top)
