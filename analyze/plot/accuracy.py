"""Figure 1: accuracy over epochs per schedule, mean over seeds with a band,
and optionally a panel with each schedule's learning rate."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI, save


def accuracy_figure(path, panels: Mapping, lr: Mapping | None = None, *, ncols: int = 3,
                    ylim=None, ylabel: str = "Validation accuracy", width="double", dpi: int = DPI):
    """panels: {panel title (e.g. schedule): {network: band}}, where a band is an
    dyn.analyze.measures.accuracy.Band (mean line and lo..hi band) or a plain (epochs, values).
    lr: {schedule: (epochs, lr)} for a last panel (see dyn.analyze.measures.accuracy.lr_at).
    Returns the path."""
    data = {title: {net: _band(title, net, b) for net, b in nets.items()} for title, nets in panels.items()}
    lrs = {name: tuple(np.asarray(a, dtype=float) for a in c) for name, c in (lr or {}).items()}
    if not data and not lrs:
        raise ValueError("nothing to draw")
    n = len(data) + (1 if lrs else 0)
    cols = max(1, min(ncols, n))
    rows = -(-n // cols)
    with style.context():
        fig = style.figure(width, 1.9 * rows)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (title, nets) in zip(axes, data.items()):
            for net in style.order(nets):
                e, mean, lo, hi = nets[net]
                c = style.color(net, nets)
                if lo is not None and np.isfinite(lo).any():
                    ax.fill_between(e, lo, hi, color=c, alpha=0.2, linewidth=0)
                ax.plot(e, mean, color=c, label=style.label(net))
            ax.set_title(str(title))
            ax.set_xlabel("Epoch")
            ax.set_ylabel(ylabel)
            if ylim is not None:
                ax.set_ylim(*ylim)
        if data:
            axes[0].legend(loc="lower right")
        if lrs:
            ax = axes[len(data)]
            for i, (name, (e, v)) in enumerate(lrs.items()):
                ax.plot(e, v, color=style.CYCLE[i % len(style.CYCLE)], label=str(name))
            ax.set_title("Learning rate")
            ax.set_xlabel("Epoch")
            ax.set_ylabel("lr")
            ax.legend()
        for ax in axes[n:]:
            ax.set_visible(False)
        fig.tight_layout()
        return save(fig, path, dpi)


def _band(title, net, b):
    if hasattr(b, "mean") and hasattr(b, "epochs"):
        e, mean, lo, hi = (np.asarray(x, dtype=float) for x in (b.epochs, b.mean, b.lo, b.hi))
    else:
        e, mean = (np.asarray(x, dtype=float) for x in b)
        lo = hi = None
    if e.shape != mean.shape or e.ndim != 1:
        raise ValueError(f"{title}/{net}: {mean.shape} values for epochs {e.shape}")
    return e, mean, lo, hi
