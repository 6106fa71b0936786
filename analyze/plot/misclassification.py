"""Figure 3: histograms of per-sample misclassification ratios, overlaid."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def misclassification_figure(path, histograms: Mapping, *, density: bool = True, logy: bool = False,
                             title: str | None = None, width="single", dpi: int = DPI,
                             xlabel: str = "Misclassification ratio", fig=None, ax=None):
    """histograms: {network: (edges (B+1,), counts (B,))} as from Misclassification.histogram().
    density: show fractions of samples rather than counts. Returns the path, or with path
    None the figure (drawn on `ax`, or on `fig`, when given)."""
    hists = {}
    for net, (edges, counts) in histograms.items():
        edges, counts = np.asarray(edges, dtype=float), np.asarray(counts, dtype=float)
        if edges.shape != (counts.size + 1,):
            raise ValueError(f"histogram of {net}: {counts.size} counts need {counts.size + 1} edges")
        total = counts.sum()
        hists[net] = (edges, counts / total if density and total else counts)
    if not hists:
        raise ValueError("no histograms to draw")
    with style.context():
        if ax is None:
            ax = style.canvas(fig, width).subplots()
        fig = ax.figure
        for net in style.order(hists):
            edges, values = hists[net]
            c = style.color(net, hists)
            ax.stairs(values, edges, fill=True, color=c, alpha=0.25, linewidth=0)
            ax.stairs(values, edges, color=c, label=style.label(net))
        if logy:
            ax.set_yscale("log")
        ax.set_xlim(0, 1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Fraction of samples" if density else "Samples")
        ax.legend(loc="upper center")
        if title:
            ax.set_title(title)
        return style.finish(fig, path, dpi)
