"""Figure 1: accuracy over epochs per schedule, mean over seeds with a band,
and optionally a panel with each schedule's learning rate."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def accuracy_figure(path, panels: Mapping, lr: Mapping | None = None, *, ncols: int = 3,
                    ylim=None, ylabel: str = "Validation accuracy", width="double", dpi: int = DPI,
                    fig=None):
    """panels: {panel title (e.g. schedule): {network: band}}, where a band is an
    dyn.analyze.measures.accuracy.Band (mean line and lo..hi band) or a plain (epochs, values).
    lr: {schedule: (epochs, lr)} for a last panel (see dyn.analyze.measures.accuracy.lr_at),
    on a log axis when the lrs span more than a decade. Every panel has its own legend (a
    network missing from the first panel is still named). Returns the path, or with path
    None the figure (drawn on `fig`, a Figure or SubFigure, when given)."""
    data = {title: {net: _band(title, net, b) for net, b in nets.items()} for title, nets in panels.items()}
    lrs = {name: tuple(np.asarray(a, dtype=float) for a in c) for name, c in (lr or {}).items()}
    if not data and not lrs:
        raise ValueError("nothing to draw")
    n = len(data) + (1 if lrs else 0)
    cols = max(1, min(ncols, n))
    rows = -(-n // cols)
    with style.context():
        new = fig is None
        fig = style.canvas(fig, width, 1.9 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (title, nets) in zip(axes, data.items()):
            for net in style.order(nets):
                e, mean, lo, hi = nets[net]
                c = style.color(net, nets)
                if lo is not None and np.isfinite(lo).any():
                    ax.fill_between(e, lo, hi, color=c, alpha=0.2, linewidth=0)
                style.series(ax, e, mean, color=c, label=style.label(net))
            ax.set_title(str(title))
            style.epoch_axis(ax)
            ax.set_ylabel(ylabel)
            if ylim is not None:
                ax.set_ylim(*ylim)
            if nets:
                ax.legend(loc="lower right")
            if not any(np.isfinite(m).any() for _, m, _, _ in nets.values()):
                style.empty_note(ax, "no accuracy to draw")
        if lrs:
            ax = axes[len(data)]
            for i, (name, (e, v)) in enumerate(lrs.items()):
                style.series(ax, e, v, color=style.CYCLE[i % len(style.CYCLE)], label=str(name))
            if style.spans_decades(np.concatenate([v for _, v in lrs.values()])):
                ax.set_yscale("log")  # one large lr must not flatten the others
            ax.set_title("Learning rate")
            style.epoch_axis(ax)
            ax.set_ylabel("lr")
            ax.legend()
        for ax in axes[n:]:
            ax.set_visible(False)
        if new:
            fig.tight_layout()
        return style.finish(fig, path, dpi)


def _band(title, net, b):
    if hasattr(b, "mean") and hasattr(b, "epochs"):
        e, mean, lo, hi = (np.asarray(x, dtype=float) for x in (b.epochs, b.mean, b.lo, b.hi))
    else:
        e, mean = (np.asarray(x, dtype=float) for x in b)
        lo = hi = None
    if e.shape != mean.shape or e.ndim != 1:
        raise ValueError(f"{title}/{net}: {mean.shape} values for epochs {e.shape}")
    return e, mean, lo, hi
