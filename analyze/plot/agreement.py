"""Agreement of two networks: per-epoch mismatch and the per-sample mismatch histogram."""

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI


def agreement_figure(path, epochs, correct_mismatch, label_mismatch=None, histogram=None, *,
                     names=("sgd", "ema"), title: str | None = None, width="double", dpi: int = DPI,
                     fig=None):
    """epochs, correct_mismatch (and label_mismatch): per-epoch fractions of samples
    where the two networks' correctness (predicted labels) differ; histogram:
    (edges, counts) of the per-sample mismatch, drawn in a second panel. The title always
    names the two networks (`title` is added after them). Returns the path, or with path None
    the figure (drawn on `fig`, a Figure or SubFigure, when given)."""
    e = np.asarray(epochs)
    lines = {"correctness differs": np.asarray(correct_mismatch, dtype=float)}
    if label_mismatch is not None:
        lines["predicted label differs"] = np.asarray(label_mismatch, dtype=float)
    for what, v in lines.items():
        if v.shape != e.shape or e.ndim != 1:
            raise ValueError(f"{what}: {v.shape} values for epochs {e.shape}")
    if histogram is not None:
        edges, counts = (np.asarray(x, dtype=float) for x in histogram)
        if edges.shape != (counts.size + 1,):
            raise ValueError(f"histogram: {counts.size} counts need {counts.size + 1} edges")
    pair = f"{style.label(names[0])} vs {style.label(names[1])}"
    with style.context():
        new = fig is None
        fig = style.canvas(fig, width, 2.2)
        axes = fig.subplots(1, 2 if histogram is not None else 1, squeeze=False)[0]
        ax = axes[0]
        for (what, v), ls in zip(lines.items(), ["-", "--"]):
            style.series(ax, e, v, color=style.BLACK, linestyle=ls, label=what)
        style.epoch_axis(ax)
        ax.set_ylabel("Fraction of samples")
        ax.legend()
        ax.set_title(f"Mismatch, {pair}" + (f" ({title})" if title else ""))
        if histogram is not None:
            total = counts.sum()
            ax = axes[1]
            # grey: a pair's histogram, not one network's, so no network's colour
            ax.stairs(counts / total if total else counts, edges, fill=True, color=style.GREY, alpha=0.6)
            ax.set_xlim(0, 1)
            ax.set_xlabel("Fraction of epochs where correctness differs")
            ax.set_ylabel("Fraction of samples")
            ax.set_title("Per-sample mismatch")
        if new:
            fig.tight_layout()  # the right panel's y label clear of the left panel
        return style.finish(fig, path, dpi)
