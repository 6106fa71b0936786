"""Figure 5: relative difference of EMA and SGD weights over epochs, one curve per run."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI, save


def weight_diff_figure(path, curves: Mapping, *, logy: bool = False, title: str | None = None,
                       width="single", dpi: int = DPI):
    """curves: {label (e.g. the schedule): (epochs, relative difference)}. NaN values
    (undefined ratios) are left as gaps. Returns the path."""
    data = {}
    for name, (e, v) in curves.items():
        e, v = np.asarray(e), np.asarray(v, dtype=float)
        if e.shape != v.shape or e.ndim != 1:
            raise ValueError(f"curve {name}: {v.shape} values for epochs {e.shape}")
        data[name] = (e, v)
    if not data:
        raise ValueError("no curves to draw")
    with style.context():
        fig = style.figure(width)
        ax = fig.subplots()
        for i, (name, (e, v)) in enumerate(data.items()):
            ax.plot(e, v, color=style.CYCLE[i % len(style.CYCLE)], label=str(name))
        if logy:
            ax.set_yscale("log")
        ax.set_xlabel("Epoch")
        ax.set_ylabel(r"$\|\theta_\mathrm{EMA}-\theta_\mathrm{SGD}\|\,/\,\|\theta_\mathrm{SGD}\|$")
        ax.legend()
        if title:
            ax.set_title(title)
        return save(fig, path, dpi)
