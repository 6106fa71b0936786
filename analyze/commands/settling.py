"""`dyn analyze settling`: when each sample's prediction settles (its last flip), per network."""

from __future__ import annotations

import click
import numpy as np

from dyn.analyze import output
from dyn.analyze.command import Analysis, RunResult
from dyn.analyze.measures.settling import Settling, SettlingAccumulator
from dyn.analyze.networks import label
from dyn.analyze.options import common


def summary(s: Settling) -> dict:
    """Median settling epoch; fractions settled by the window's middle epoch, and right at its end."""
    mid = len(s.epochs) // 2
    return {"median_epoch": float(np.median(s.settled)) if len(s.settled) else float("nan"),
            "middle_epoch": int(s.epochs[mid]), "settled_by_middle": float(s.settled_by()[mid]),
            "settled_right_by_middle": float(s.settled_right_by()[mid]),
            "never_flipped": float(np.mean(s.settled == s.epochs[0])) if len(s.settled) else float("nan")}


class SettlingCommand(Analysis):
    name = "settling"

    def compute(self, runs, opts) -> list[RunResult]:
        return [RunResult(info, opts.split, win, nets) for _, info, win, nets in
                self.feed_runs(runs, opts, lambda n, win: SettlingAccumulator(n, win.epochs), need=2)]

    def table(self, results) -> str:
        parts = []
        for r in results:
            rows = [[label(net), output.fmt(m["median_epoch"], 1), output.fmt(m["settled_by_middle"]),
                     output.fmt(m["settled_right_by_middle"]), output.fmt(m["never_flipped"])]
                    for net, m in ((net, summary(s)) for net, s in r.nets.items())]
            mid = summary(next(iter(r.nets.values())))["middle_epoch"]
            parts.append(f"settling ({r.info.path}: split {r.split}, epochs {r.window.span}); fractions of samples\n"
                         + output.text_table(["network", "median epoch", f"settled by {mid}",
                                              f"settled right by {mid}", "never flipped"], rows))
        return "\n\n".join(parts)

    def records(self, results):
        cols = ["run", "network", "epoch", "settled", "settled_right"]
        rows = [{"run": r.info.path, "network": net, "epoch": int(e), "settled": a, "settled_right": b}
                for r in results for net, s in r.nets.items()
                for e, a, b in zip(s.epochs, s.settled_by(), s.settled_right_by())]
        return cols, rows

    def document(self, results) -> dict:
        return {"analysis": "settling", "runs": [{
            **r.header(),
            "networks": {net: {"epochs": s.epochs, "settled": s.settled_by(), "settled_right": s.settled_right_by(),
                               **summary(s)} for net, s in r.nets.items()}} for r in results]}

    def plot(self, df, r):
        from dyn.analyze.figures import plot_settling

        return plot_settling(df, run=r.info.path)


@click.command()
@common
def settling(**kw):
    """When predictions settle: the fraction of samples whose correctness no longer changes.

    A sample settles at the first epoch of the window from which its correctness never
    changes again (the epoch of its last flip; the window's first epoch if it never flips).
    Per network, the fraction of samples settled by each epoch (solid) and of those settled
    right (dashed). Every sample has settled at the window's last epoch: what matters is how
    early. Prints the median settling epoch and the fractions settled by the window's middle.

    \b
    Examples:
      dyn analyze settling runs/x.h5 --out settling.png
      dyn analyze settling runs/x.h5 --from-epoch 90 --csv settling.csv
    """
    SettlingCommand().run(kw)
