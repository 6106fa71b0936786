"""Figures of per-sample training dynamics: forgetting events, data maps, AUM."""

from collections.abc import Mapping

import numpy as np

from dyn.analyze.plot import style

MAX_POINTS = 20000  # a data map of more examples draws a random sample of them (said in the panel)
# cartography's region labels, at fixed places in axes coordinates (their plot_data_map)
REGION_LABELS = {"ambiguous": (0.85, 0.5), "easy-to-learn": (0.27, 0.85), "hard-to-learn": (0.35, 0.25)}


def forgetting_axes(ax, events: Mapping, never: Mapping) -> None:
    """events: {network: (N,) forgetting events per example}; never: {network: never-learned count}.
    A bar group per count (0, 1, 2, ...) and one for the never learned, as fractions of examples."""
    nets = style.order(events)
    top = int(max((int(np.max(e)) if len(e) else 0) for e in events.values()))
    x = np.r_[np.arange(top + 1), top + 2]  # a gap before the never-learned bar: it is no count
    width = 0.8 / max(len(nets), 1)
    for i, net in enumerate(nets):
        e = np.asarray(events[net])
        n = max(len(e), 1)
        learned = np.bincount(e, minlength=top + 1)[: top + 1].astype(float)
        learned[0] -= never[net]  # never-learned examples have 0 events: they get their own bar
        ax.bar(x + (i - (len(nets) - 1) / 2) * width, np.r_[learned, never[net]] / n, width,
               color=style.color(net, nets), label=style.label(net))
    step = max(1, int(np.ceil((top + 1) / 10)))  # at most ~10 count labels: 14 15 16 ran together
    counts = np.arange(0, top + 1, step)
    ax.set_xticks(np.r_[counts, top + 2], [str(k) for k in counts] + ["never\nlearned"])
    ax.set_xlabel("Forgetting events per example")
    ax.set_ylabel("Fraction of examples")
    ax.legend(loc="upper right")


def datamap_axes(ax, variability, confidence, correctness, *, title=None, seed: int = 0):
    """Cartography's data map on one axes: x variability, y confidence, colour correctness."""
    v, c, k = (np.asarray(a, dtype=float) for a in (variability, confidence, correctness))
    ok = np.isfinite(v) & np.isfinite(c) & np.isfinite(k)
    v, c, k = v[ok], c[ok], k[ok]
    note = None
    if len(v) > MAX_POINTS:
        pick = np.random.default_rng(seed).choice(len(v), MAX_POINTS, replace=False)
        note = f"{MAX_POINTS:,} of {len(v):,} examples drawn"
        v, c, k = v[pick], c[pick], k[pick]
    sc = ax.scatter(v, c, c=k, cmap="coolwarm", vmin=0, vmax=1, s=4, linewidths=0, alpha=0.7, rasterized=True)
    for text, (x, y) in REGION_LABELS.items():
        ax.text(x, y, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.3", "fc": "white", "ec": "#888888", "alpha": 0.8})
    ax.set_xlim(0, max(0.5, float(v.max()) * 1.05 if len(v) else 0.5))
    ax.set_ylim(0, 1)
    ax.set_xlabel("Variability")
    ax.set_ylabel("Confidence")
    if title:
        ax.set_title(title)
    if note:
        ax.text(0.99, 0.01, note, transform=ax.transAxes, ha="right", va="bottom", fontsize=6, color="#555555")
    return sc


def aum_axes(ax, values: Mapping, bins: int | None = None) -> None:
    """values: {network: (N,) AUM}; one step histogram per network, shared bins, 0 marked."""
    nets = style.order(values)
    allv = np.concatenate([np.asarray(values[n], float) for n in nets])
    allv = allv[np.isfinite(allv)]
    if not allv.size:
        style.empty_note(ax, "no AUM to draw: no example has a margin")
        return
    per_net = allv.size / max(len(nets), 1)
    edges = np.histogram_bin_edges(allv, bins=bins or int(np.clip(np.sqrt(per_net), 10, 80)))
    for net in nets:
        a = np.asarray(values[net], float)
        a = a[np.isfinite(a)]
        ax.hist(a, bins=edges, histtype="step", color=style.color(net, nets), label=style.label(net),
                weights=np.full(a.size, 1 / max(a.size, 1)))
    ax.axvline(0, color="#888888", lw=0.6, ls=":")
    ax.set_xlabel("Area under the margin")
    ax.set_ylabel("Fraction of examples")
    ax.legend(loc="upper left")
