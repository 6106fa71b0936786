"""Figures 2 and 6: prediction stability over epochs, with accuracy for reference."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def stability_figure(path, stability: Mapping, accuracy: Mapping | None = None, *,
                     title: str | None = None, width="single", dpi: int = DPI, fig=None):
    """stability, accuracy: {network: (epochs, values)} with networks named "sgd",
    "ema-<decay>". Accuracy, when given, is drawn in a panel below. Returns the path,
    or with path None the figure (drawn on `fig`, a Figure or SubFigure, when given)."""
    curves = [_curves(stability, "stability")] + ([_curves(accuracy, "accuracy")] if accuracy else [])
    with style.context():
        fig = style.canvas(fig, width, 1.0 + 1.35 * len(curves))
        axes = fig.subplots(len(curves), 1, sharex=True, squeeze=False)[:, 0]
        for ax, data, ylabel in zip(axes, curves, ["Stability", "Accuracy"]):
            for net in style.order(data):
                e, v = data[net]
                style.series(ax, e, v, color=style.color(net, data), label=style.label(net))
            ax.set_ylabel(ylabel)
            if not any(np.isfinite(v).any() for _, v in data.values()):
                style.empty_note(ax, f"no {ylabel.lower()} to draw: the window has no values")
        axes[0].legend(loc="lower right")
        style.epoch_axis(axes[-1])
        if title:
            axes[0].set_title(title)
        fig.align_ylabels(axes)
        return style.finish(fig, path, dpi)


def _curves(data: Mapping, what: str) -> dict:
    out = {}
    for net, (e, v) in data.items():
        e, v = np.asarray(e), np.asarray(v, dtype=float)
        if e.shape != v.shape or e.ndim != 1:
            raise ValueError(f"{what} of {net}: {v.shape} values for epochs {e.shape}")
        out[net] = (e, v)
    if not out:
        raise ValueError(f"no {what} curves to draw")
    return out
