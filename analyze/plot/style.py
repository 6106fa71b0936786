"""Paper-like style: sizes for a two-column paper, 8-9 pt serif text, the
Okabe-Ito colour-blind-safe palette, and fixed colours and labels per network.

Network names are those of the run file: "sgd" and "ema-<decay>". SGD is always
black; the paper's decays keep one colour each in every figure, so a reader can
match curves across figures; other decays take the remaining colours in order.
"""

from contextlib import contextmanager

from dyn.analyze.networks import decay, label, order  # noqa: F401  (re-exported for the figures)

SINGLE = 3.3   # inches, one column
DOUBLE = 6.9   # inches, full width

# Okabe & Ito (2008)
BLACK, ORANGE, SKY, GREEN, YELLOW, BLUE, VERMILLION, PURPLE = (
    "#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
SGD_COLOR = BLACK
DECAY_COLORS = {0.9: ORANGE, 0.99: SKY, 0.999: GREEN, 0.9995: BLUE, 0.9997: VERMILLION}
EXTRA_COLORS = (PURPLE, "#999999", YELLOW)
CYCLE = (BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY, BLACK, YELLOW)  # non-network curves
RIGHT_COLOR, WRONG_COLOR = BLUE, ORANGE   # barcodes
GREY = "#777777"                          # what belongs to no one network

RC = {
    "font.family": "serif",
    "font.serif": ["DejaVu Serif"],     # ships with matplotlib: no font warnings anywhere
    "mathtext.fontset": "dejavuserif",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.linewidth": 0.6,
    "lines.linewidth": 1.0,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.linewidth": 0.4,
    "grid.alpha": 0.4,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.02,
    "svg.fonttype": "none",   # text stays text in SVG
    "pdf.fonttype": 42,       # TrueType in PDF, editable and accepted by publishers
}


@contextmanager
def context():
    """Apply the style for one figure without touching the caller's rcParams."""
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def figure(width="single", height: float | None = None):
    """A new matplotlib Figure (no pyplot), width "single", "double" or inches."""
    from matplotlib.figure import Figure

    w = {"single": SINGLE, "double": DOUBLE}.get(width, width)
    return Figure(figsize=(float(w), float(height if height is not None else 0.75 * float(w))))


def color(network: str, networks=()) -> str:
    """SGD black, the paper's decays fixed, others from EXTRA_COLORS by their rank in `networks`."""
    if network == "sgd":
        return SGD_COLOR
    d = decay(network)
    if d in DECAY_COLORS:
        return DECAY_COLORS[d]
    others = [n for n in order(networks) if n != "sgd" and decay(n) not in DECAY_COLORS]
    i = others.index(network) if network in others else 0
    return EXTRA_COLORS[i % len(EXTRA_COLORS)]


# ---------------------------------------------------------------- shared drawing choices

SHORT = 20  # a series of at most this many epochs gets markers: one epoch alone is a point, not a line


def canvas(fig=None, width="single", height: float | None = None):
    """The figure to draw on: the caller's (a Figure or a SubFigure, e.g. one of
    fig.subfigures(1, 2) in a notebook), else a new one."""
    return fig if fig is not None else figure(width, height)


def finish(fig, path, dpi: int):
    """Save to `path` and return it; without a path return the figure (the Python API)."""
    if path is None:
        return fig
    from dyn.analyze.plot.save import save

    return save(fig, path, dpi)


def series(ax, e, v, **kw):
    """ax.plot with markers where a line alone would hide points: short series, lone values."""
    import numpy as np

    v = np.asarray(v, dtype=float)
    ok = np.isfinite(v)
    lone = ok & ~np.r_[False, ok[:-1]] & ~np.r_[ok[1:], False]  # a finite value with no finite neighbour
    if len(v) <= SHORT or lone.any():
        kw.setdefault("marker", "o")
        kw.setdefault("markersize", 2.5)
    return ax.plot(e, v, **kw)


def epoch_axis(ax, label: str = "Epoch") -> None:
    """Epochs are whole numbers: integer ticks only (a 3-epoch run got 0.5, 1.5...)."""
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    lo, hi = ax.dataLim.intervalx
    if np.isfinite([lo, hi]).all() and hi - lo < 2:  # one or two epochs: show whole epochs around them
        mid = (lo + hi) / 2
        ax.set_xlim(min(lo, mid - 1), max(hi, mid + 1))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel(label)


def empty_note(ax, text: str) -> None:
    """Say in the panel why it has nothing to draw (a diverged run, say), instead of an empty box."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=7,
            wrap=True, color="#555555")


def spans_decades(values, decades: float = 1.0) -> bool:
    """True when positive values span more than `decades` powers of ten (then a log axis)."""
    import numpy as np

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v) & (v > 0)]
    return v.size > 1 and np.log10(v.max() / v.min()) > decades
