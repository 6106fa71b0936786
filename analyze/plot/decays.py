"""Accuracy, stability and the synthesis residual against the EMA decay (dyn analyze decays)."""

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI, save


# decays labelled on the x axis (those within the table's range); evenly spread in log memory
TICKS = (0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.998, 0.999, 0.9995, 0.9998, 0.9999, 0.99995, 0.99998, 0.99999)


def memory(decay):
    """1 / (1 - decay): the EMA's memory in optimizer steps, the figure's x axis."""
    return 1.0 / (1.0 - np.asarray(decay, dtype=float))


def decays_panel(table, column: str, *, ax, sgd: float | None = None, label: str | None = None):
    """One quantity against the decay on `ax`: recorded EMAs as points, post-hoc ones as a curve,
    SGD (decay 0) as a dashed line."""
    rec = table[table["kind"] == "ema"]
    ph = table[table["kind"] == "posthoc"]
    if len(ph):
        ax.plot(memory(ph["decay"]), ph[column], "-", color=style.BLUE, marker=".", ms=3, label="post-hoc")
    if len(rec) and rec[column].notna().any():
        ax.plot(memory(rec["decay"]), rec[column], "o", color=style.VERMILLION, ms=4, label="trained", zorder=3)
    if sgd is not None and np.isfinite(sgd):
        ax.axhline(sgd, color=style.BLACK, ls="--", lw=0.8, label="SGD")
    ax.set_xscale("log")
    ax.set_ylabel(label or column)


def decays_figure(path, table, *, title: str | None = None, sgd: dict | None = None, bound: float = 0.05,
                  width="single", dpi: int = DPI):
    """Accuracy and stability (and the residual of post-hoc networks) against the decay."""
    if not len(table):
        raise ValueError("no networks to draw")
    ph = table[table["kind"] == "posthoc"]
    panels = [("accuracy", "Accuracy"), ("stability", "Mean stability")]
    if len(ph):
        panels.append(("residual", "Profile residual"))
    with style.context():
        fig = style.figure(width, height=1.2 * len(panels) + 0.5)
        axes = fig.subplots(len(panels), 1, sharex=True)
        for ax, (col, lab) in zip(axes, panels):
            decays_panel(table, col, ax=ax, sgd=(sgd or {}).get(col), label=lab)
        if len(ph):
            axes[-1].set_yscale("log")
        axes[0].legend(loc="best")
        if len(ph):
            axes[-1].axhline(bound, color=style.BLACK, ls=":", lw=0.8, label="refusal bound")
            axes[-1].legend(loc="best")
        lo, hi = table["decay"].min(), table["decay"].max()
        ticks = [d for d in TICKS if lo <= d <= hi] or sorted(set(table["decay"]))
        axes[-1].set_xticks(memory(ticks), [f"{d:g}" for d in ticks], rotation=45, ha="right")
        axes[-1].minorticks_off()
        axes[-1].set_xlabel("EMA decay (log scale of the memory 1/(1-decay))")
        if title:
            axes[0].set_title(title)
        return save(fig, path, dpi)
