"""Agreement of two networks: per-epoch mismatch and the per-sample mismatch histogram."""

import numpy as np

from dyn.analyze.plot import style
from dyn.analyze.plot.save import DPI, save


def agreement_figure(path, epochs, correct_mismatch, label_mismatch=None, histogram=None, *,
                     names=("sgd", "ema"), title: str | None = None, width="double", dpi: int = DPI):
    """epochs, correct_mismatch (and label_mismatch): per-epoch fractions of samples
    where the two networks' correctness (predicted labels) differ; histogram:
    (edges, counts) of the per-sample mismatch, drawn in a second panel. Returns the path."""
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
        fig = style.figure(width, 2.2)
        axes = fig.subplots(1, 2 if histogram is not None else 1, squeeze=False)[0]
        ax = axes[0]
        for (what, v), ls in zip(lines.items(), ["-", "--"]):
            ax.plot(e, v, color=style.BLACK, linestyle=ls, label=what)
        ax.set_xlabel("Epoch")
        ax.set_ylabel("Fraction of samples")
        ax.legend()
        ax.set_title(title or f"Mismatch, {pair}")
        if histogram is not None:
            total = counts.sum()
            ax = axes[1]
            ax.stairs(counts / total if total else counts, edges, fill=True, color=style.BLUE, alpha=0.6)
            ax.set_xlim(0, 1)
            ax.set_xlabel("Fraction of epochs where correctness differs")
            ax.set_ylabel("Fraction of samples")
            ax.set_title("Per-sample mismatch")
        return save(fig, path, dpi)
