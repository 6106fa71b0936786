"""Figure 5: relative difference of EMA and SGD weights over epochs, one curve per run."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def weight_diff_figure(path, curves: Mapping, *, logy: bool = False, title: str | None = None,
                       width="single", dpi: int = DPI, colors: Mapping | None = None,
                       linestyles: Mapping | None = None, notes: Mapping | None = None, fig=None, ax=None):
    """curves: {label (e.g. the schedule): (epochs, relative difference)}. NaN values
    (undefined ratios) are left as gaps; notes: {label: why a curve has no values}, said in
    its legend entry. colors, linestyles: {label: ...} (default: one colour per curve).
    Returns the path, or with path None the figure (drawn on `ax` or `fig` when given)."""
    data = {}
    for name, (e, v) in curves.items():
        e, v = np.asarray(e), np.asarray(v, dtype=float)
        if e.shape != v.shape or e.ndim != 1:
            raise ValueError(f"curve {name}: {v.shape} values for epochs {e.shape}")
        data[name] = (e, v)
    if not data:
        raise ValueError("no curves to draw")
    with style.context():
        if ax is None:
            ax = style.canvas(fig, width).subplots()
        fig = ax.figure
        colors, linestyles, notes = colors or {}, linestyles or {}, notes or {}
        for i, (name, (e, v)) in enumerate(data.items()):
            if logy:  # epoch 0 has EMA = SGD, a ratio of 0: on a log axis it is not a point but a drop
                v = np.where(v > 0, v, np.nan)
            text = str(name) if np.isfinite(v).any() or name not in notes else f"{name} (none: {notes[name]})"
            style.series(ax, e, v, color=colors.get(name, style.CYCLE[i % len(style.CYCLE)]),
                         linestyle=linestyles.get(name, "-"), label=text)
        if not any(np.isfinite(v).any() for _, v in data.values()):
            why = "; ".join(dict.fromkeys(notes.values())) or "every ratio is undefined"
            style.empty_note(ax, f"nothing to draw: {why}")
        if logy:
            ax.set_yscale("log")
        style.epoch_axis(ax)
        ax.set_ylabel(r"$\|\theta_\mathrm{EMA}-\theta_\mathrm{SGD}\|\,/\,\|\theta_\mathrm{SGD}\|$")
        if len(data) > 4:  # many runs: beside the panel, not over the curves
            ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
        else:
            ax.legend()
        if title:
            ax.set_title(title)
        return style.finish(fig, path, dpi)
