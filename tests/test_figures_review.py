"""Figures as a paper's reviewer reads them (issue 19 point 11, issue 13 point 4): each drawn
by its command, caught as it is saved, and checked by its artists: titles, legend entries,
markers, axis scales, tick positions, line colours. One colour per network in every figure."""

from dataclasses import dataclass

import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("matplotlib")

from matplotlib.figure import Figure  # noqa: E402

from dyn.analyze.cli import analyze  # noqa: E402
from dyn.synthetic import Synthetic  # noqa: E402


@dataclass
class Diverged(Synthetic):
    """A run whose weights are NaN at every recorded epoch, as after a divergence."""

    def records(self):
        for epoch, kw in super().records():
            if "weights" in kw:
                kw["weights"] = {n: (np.full_like(p, np.nan), b) for n, (p, b) in kw["weights"].items()}
            yield epoch, kw


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    d = tmp_path_factory.mktemp("figs")
    short = dict(epochs=4, samples=200, decays=(0.9, 0.99), weights_every=1)
    return {
        "short": Synthetic(**short).write(d / "short.h5", config={"schedule": "constant", "seed": 0}),
        "constant": Synthetic(epochs=12, samples=200, decays=(0.9,), seed=1).write(
            d / "constant.h5", config={"schedule": "constant", "seed": 1}),
        "cosine": Synthetic(epochs=12, samples=200, decays=(0.99,), seed=2).write(
            d / "cosine.h5", config={"schedule": "cosine", "seed": 2}),
        "diverged": Diverged(**short).write(d / "diverged.h5", config={"schedule": "constant", "seed": 0}),
    }


def drawn(monkeypatch, tmp_path, *args) -> list:
    """The figures a command saves (every figure is saved through Figure.savefig)."""
    figs, save = [], Figure.savefig

    def grab(self, *a, **k):
        figs.append(self)
        return save(self, *a, **k)

    monkeypatch.setattr(Figure, "savefig", grab)
    r = CliRunner().invoke(analyze, [*map(str, args), "--out", str(tmp_path / "fig.png")])
    assert r.exit_code == 0, r.output
    assert figs, "nothing drawn"
    return figs


def titles(fig) -> str:
    return " | ".join([a.get_title() for a in fig.axes] + ([fig._suptitle.get_text()] if fig._suptitle else []))


def legend(ax) -> list:
    return [t.get_text() for t in ax.get_legend().get_texts()] if ax.get_legend() else []


def colour_of(fig, text):
    """The colour of the legend entry whose label is, or ends with, `text` (one per figure)."""
    from matplotlib.colors import to_hex

    found = set()
    for ax in fig.axes:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab == text or lab.endswith(", " + text):
                c = h.get_color() if hasattr(h, "get_color") else h.get_edgecolor()
                found.add(to_hex(c))
    assert len(found) == 1, (text, found, titles(fig))
    return found.pop()


def test_agreement_figure_names_its_two_networks(runs, monkeypatch, tmp_path):
    (fig,) = drawn(monkeypatch, tmp_path, "agreement", runs["short"], "--net", "sgd,ema-0.99")
    assert "SGD vs EMA 0.99" in titles(fig)


@pytest.mark.parametrize("cmd", ["stability", "histogram", "agreement", "flips"])
def test_per_run_figures_name_the_split(runs, monkeypatch, tmp_path, cmd):
    extra = ["--net", "sgd,ema-0.9"] if cmd == "agreement" else []
    (fig,) = drawn(monkeypatch, tmp_path, cmd, runs["short"], "--split", "test", *extra)
    assert "test split" in titles(fig)


def test_a_one_epoch_series_is_drawn_with_markers(runs, monkeypatch, tmp_path):
    # a window of epochs 1..2: one stability value per network; accuracy of one epoch
    (fig,) = drawn(monkeypatch, tmp_path, "stability", runs["short"], "--from-epoch", "1", "--to-epoch", "2")
    lines = fig.axes[0].get_lines()
    assert len(lines) == 3 and all(len(ln.get_xdata()) == 1 and ln.get_marker() not in ("None", "", None)
                                   for ln in lines)
    (fig,) = drawn(monkeypatch, tmp_path, "accuracy", runs["short"], "--split", "test", "--from-epoch", "3")
    ax = fig.axes[0]
    assert all(ln.get_marker() not in ("None", "", None) for ln in ax.get_lines())
    lo, hi = ax.get_xlim()  # around the one epoch, whole epochs only (not 2.975, 3.0, 3.025)
    assert lo < 3 < hi and all(float(t).is_integer() for t in ax.get_xticks() if lo <= t <= hi)


def test_short_runs_get_whole_epoch_ticks(runs, monkeypatch, tmp_path):
    for cmd in ("stability", "accuracy", "weight-diff"):
        (fig,) = drawn(monkeypatch, tmp_path, cmd, runs["short"])
        ax = fig.axes[-1] if cmd == "stability" else fig.axes[0]
        lo, hi = ax.get_xlim()
        ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
        assert ticks and all(float(t).is_integer() for t in ticks), (cmd, ticks)


def test_a_diverged_runs_empty_panel_says_why(runs, monkeypatch, tmp_path):
    (fig,) = drawn(monkeypatch, tmp_path, "weight-diff", runs["diverged"])
    ax = fig.axes[0]
    said = " ".join(t.get_text() for t in ax.texts)
    assert "nothing to draw" in said and "NaN" in said
    assert all("NaN" in t for t in legend(ax))  # each curve's legend entry says why it is empty


def test_weight_diff_log_draws_no_drop_at_epoch_zero(runs, monkeypatch, tmp_path):
    (fig,) = drawn(monkeypatch, tmp_path, "weight-diff", runs["short"], "--log")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    for ln in ax.get_lines():
        x, y = np.asarray(ln.get_xdata(), float), np.asarray(ln.get_ydata(), float)
        assert x[0] == 0 and np.isnan(y[0])  # EMA = SGD at epoch 0: a ratio of 0, not drawn on a log axis
        assert (y[1:] > 0).all()


def test_every_accuracy_panel_has_a_legend_of_its_networks(runs, monkeypatch, tmp_path):
    (fig,) = drawn(monkeypatch, tmp_path, "accuracy", runs["constant"], runs["cosine"])
    panels = [a for a in fig.axes if a.get_visible()]
    assert [legend(a) for a in panels] == [["SGD", "EMA 0.9"], ["SGD", "EMA 0.99"]]


def test_lr_panel_is_logarithmic_when_lrs_span_decades(monkeypatch, tmp_path):
    from dyn.analyze.plot.accuracy import accuracy_figure

    figs, save = [], Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: (figs.append(self), save(self, *a, **k))[1])
    e = np.arange(10)
    band = (e, np.linspace(0.1, 0.9, 10))
    for lrs, scale in (({"a": 0.01, "b": 3.0}, "log"), ({"a": 0.05, "b": 0.1}, "linear")):
        accuracy_figure(tmp_path / "a.png", {"p": {"sgd": band}}, lr={k: (e, np.full(10, v)) for k, v in lrs.items()})
        lr_ax = [a for a in figs[-1].axes if a.get_title() == "Learning rate"][0]
        assert lr_ax.get_yscale() == scale, lrs


def test_one_colour_per_network_in_every_figure(runs, monkeypatch, tmp_path):
    figs = {cmd: drawn(monkeypatch, tmp_path, cmd, runs["short"])[0]
            for cmd in ("stability", "histogram", "accuracy", "weight-diff")}
    for net in ("EMA 0.9", "EMA 0.99"):
        colours = {cmd: colour_of(f, net) for cmd, f in figs.items()}
        assert len(set(colours.values())) == 1, (net, colours)
    assert colour_of(figs["stability"], "EMA 0.9") != colour_of(figs["stability"], "EMA 0.99")
    assert colour_of(figs["stability"], "SGD") == "#000000"


def test_datamap_panels_name_their_network_and_one_title_names_the_split():
    """Three panels titled "SGD, constant, train split" ran into each other: each panel names its
    network, the figure's title the run and split, and no two titles overlap."""
    import pandas as pd
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from dyn.analyze.figures import plot_datamap

    rng = np.random.default_rng(0)
    rows = [{"run": "r.h5", "network": net, "index": i, "confidence": c, "variability": v, "correctness": k}
            for net in ("sgd", "ema-0.9", "ema-0.99")
            for i, (c, v, k) in enumerate(zip(rng.random(50), rng.random(50) / 2, rng.random(50)))]
    df = pd.DataFrame(rows)
    df.attrs["runs"] = {"r.h5": {"title": "constant", "split": "train"}}
    fig = plot_datamap(df)
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    panels = [a for a in fig.axes if a.get_title()]
    assert [a.get_title() for a in panels] == ["SGD", "EMA 0.9", "EMA 0.99"]
    assert fig._suptitle is not None and fig._suptitle.get_text() == "constant, train split"
    boxes = [a.title.get_window_extent() for a in panels] + [fig._suptitle.get_window_extent()]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)


def test_forgetting_histogram_labels_stay_apart_at_many_counts():
    """17 count labels ran into "never learned": at most ~10 count labels, and a gap before
    the never-learned bar, which is no count."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from dyn.analyze.plot.dynamics import forgetting_axes

    fig = Figure()
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    events = {"sgd": np.r_[np.arange(17), np.zeros(20, int)]}
    forgetting_axes(ax, events, {"sgd": 3})
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[-1] == "never\nlearned" and len(labels) <= 11, labels
    ticks = ax.get_xticks()
    assert ticks[-1] - 16 >= 2, ticks  # not at 17, right after the last count
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in ax.get_xticklabels()]
    assert not any(a.overlaps(b) for a, b in zip(boxes, boxes[1:]))
