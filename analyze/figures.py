"""One plotting function per figure, over the DataFrames of dyn.analyze's functions.

Each takes the DataFrame, an optional `fig=` (a matplotlib Figure or SubFigure: compose the
paper's figures with your own, e.g. fig.subfigures(1, 2)) or, for one-panel figures, `ax=`,
and returns the figure. The `dyn analyze` commands draw through these same functions, so a
figure drawn here is the one `--out` writes. Figures that show one run (stability,
misclassification, flips, agreement) take `run=` when the DataFrame holds several.
"""

from __future__ import annotations

import numpy as np

__all__ = ["plot_stability", "plot_misclassification", "plot_flips", "plot_weight_difference",
           "plot_accuracy", "plot_agreement", "plot_forgetting", "plot_datamap", "plot_aum", "plot_settling"]


def _one_run(df, run):
    runs = list(dict.fromkeys(df["run"]))
    if run is None:
        if len(runs) != 1:
            raise ValueError(f"the DataFrame holds {len(runs)} runs; choose one with run= ({', '.join(runs)})")
        run = runs[0]
    elif str(run) not in runs:
        raise ValueError(f"run {run!r} is not in the DataFrame ({', '.join(runs)})")
    run = str(run)
    return run, df[df["run"] == run], df.attrs.get("runs", {}).get(run, {})


def _titled(title, split) -> str:
    """A figure's title naming the split: `--split test` must not look like val."""
    where = f"{split} split" if split else ""
    return ", ".join(t for t in (title, where) if t)


def _networks(df, column="network") -> list:
    return list(dict.fromkeys(df[column]))


def plot_stability(df, *, run=None, fig=None):
    """Stability above accuracy, one curve per network (`dyn analyze stability --out`)."""
    from dyn.analyze.plot.stability import stability_figure

    run, d, meta = _one_run(df, run)
    stab, acc = {}, {}
    for net in _networks(d):
        rows = d[d["network"] == net]
        e, s, a = rows["epoch"].to_numpy(), rows["stability"].to_numpy(float), rows["accuracy"].to_numpy(float)
        stab[net], acc[net] = (e[1:], s[1:]), (e, a)  # no stability at the window's first epoch
    return stability_figure(None, stab, acc, title=_titled(meta.get("title"), meta.get("split")), fig=fig)


def plot_misclassification(df, *, run=None, logy: bool = False, fig=None, ax=None):
    """Per-sample misclassification ratio histograms, overlaid (`dyn analyze histogram --out`)."""
    from dyn.analyze.plot.misclassification import misclassification_figure

    run, d, meta = _one_run(df, run)
    hists = {}
    for net in _networks(d):
        rows = d[d["network"] == net]
        edges = np.r_[rows["bin_lo"].to_numpy(float), rows["bin_hi"].to_numpy(float)[-1:]]
        hists[net] = (edges, rows["samples"].to_numpy())
    span = f"{int(d['first_epoch'].iloc[0])}..{int(d['last_epoch'].iloc[0])}"
    return misclassification_figure(None, hists, logy=logy, title=_titled(meta.get("title"), meta.get("split")),
                                    xlabel=f"Misclassification ratio, epochs {span}", fig=fig, ax=ax)


def plot_flips(df, *, run=None, fig=None):
    """Barcodes of the least stable samples, one row per network (`dyn analyze flips --out`)."""
    from dyn.analyze.plot.barcode import barcode_figure

    run, d, meta = _one_run(df, run)
    if d.empty:
        raise ValueError(f"{run}: no samples to draw (top 0)")
    nets = _networks(d)
    first = d[d["network"] == nets[0]].sort_values("rank")
    samples = first["sample"].to_numpy()
    codes = {}
    for net in nets:
        rows = d[d["network"] == net].set_index("sample").loc[samples]
        codes[net] = np.array([[c == "1" for c in b] for b in rows["barcode"]], dtype=bool)
    return barcode_figure(None, codes, np.asarray(meta["epochs"]), samples, images=meta.get("images"),
                          title=_titled(meta.get("title"), meta.get("split")), fig=fig)


def plot_weight_difference(df, *, logy: bool = False, fig=None, ax=None):
    """Relative weight difference of each EMA network and SGD over epochs, every run in one
    panel (`dyn analyze weight-diff --out`): each network in its own colour (the same as in
    every other figure), each run in its own line style."""
    from dyn.analyze.plot import style
    from dyn.analyze.plot.weight_diff import weight_diff_figure

    runs = list(dict.fromkeys(df["run"]))
    meta = df.attrs.get("runs", {})
    dashes = ["-", "--", ":", "-."]
    curves, colors, styles, notes = {}, {}, {}, {}
    for i, run in enumerate(runs):
        d = df[df["run"] == run]
        nets = _networks(d)
        m = meta.get(run, {})
        name = m.get("label") if len(runs) > 1 else m.get("title")
        for net in nets:
            rows = d[d["network"] == net]
            parts = ([name] if name else []) + ([style.label(net)] if len(nets) > 1 or not name else [])
            key = ", ".join(parts)
            curves[key] = (rows["epoch"].to_numpy(), rows["relative"].to_numpy(float))
            colors[key], styles[key] = style.color(net, nets), dashes[i % len(dashes)]
            why = [r for r in rows["reason"] if r]
            if why:
                notes[key] = why[0]
    return weight_diff_figure(None, curves, logy=logy, colors=colors, linestyles=styles, notes=notes,
                              fig=fig, ax=ax)


def plot_accuracy(df, *, fig=None):
    """Accuracy over epochs, one panel per group of seeds with its band, and the lr panel when
    the DataFrame carries it (`dyn analyze accuracy --out`)."""
    from dyn.analyze.measures.accuracy import Band
    from dyn.analyze.plot.accuracy import accuracy_figure

    panels = {}
    for i, group in enumerate(dict.fromkeys(df["group"])):
        d = df[df["group"] == group]
        nets = {}
        for net in _networks(d):
            r = d[d["network"] == net]
            nets[net] = Band(r["epoch"].to_numpy(), r["mean"].to_numpy(float), r["lo"].to_numpy(float),
                             r["hi"].to_numpy(float), int(r["runs"].iloc[0]), df.attrs.get("band", "minmax"))
        short = (df.attrs.get("groups") or {}).get(group, {}).get("short")  # what was cut or left out
        panels[(group or f"runs {i + 1}") + (f"\n({short})" if short else "")] = nets
    lrs = df.attrs.get("lr") or None
    split = df.attrs.get("split", "val")
    ylabel = {"val": "Validation accuracy", "test": "Test accuracy",
              "train": "Train accuracy"}.get(split, f"{split} accuracy")
    return accuracy_figure(None, panels, lr=lrs, ylabel=ylabel, fig=fig)


def plot_agreement(df, *, run=None, pair=None, fig=None):
    """Per-epoch mismatch of two networks and the per-sample histogram
    (`dyn analyze agreement --out`); pair=(a, b) picks one where the frame holds several."""
    from dyn.analyze.plot.agreement import agreement_figure

    run, d, meta = _one_run(df, run)
    pairs = list(dict.fromkeys(zip(d["network_a"], d["network_b"])))
    if pair is None:
        if len(pairs) != 1:
            raise ValueError(f"the DataFrame holds {len(pairs)} pairs of {run}; choose one with pair=")
        pair = pairs[0]
    d = d[(d["network_a"] == pair[0]) & (d["network_b"] == pair[1])]
    lab = d["label_differs"].to_numpy(float)
    hist = (meta.get("histograms") or {}).get("{} vs {}".format(*pair))
    title = _titled(meta.get("title"), meta.get("split"))
    return agreement_figure(None, d["epoch"].to_numpy(), d["correct_differs"].to_numpy(float),
                            None if np.isnan(lab).all() else lab, hist,
                            names=tuple(pair), title=title or None, fig=fig)


def _panel(fig, ax, title, width="single", height=None):
    """The axes to draw one panel on: the caller's ax, else one on fig or a new figure."""
    from dyn.analyze.plot import style

    if ax is not None:
        return ax.figure, ax
    fig = style.canvas(fig, width, height)
    ax = fig.subplots()
    if title:
        ax.set_title(title)
    return fig, ax


def plot_forgetting(df, *, run=None, fig=None, ax=None):
    """Forgetting events per example, a bar group per count and one for the never learned,
    per network (`dyn analyze forgetting --out`)."""
    from dyn.analyze.plot import style
    from dyn.analyze.plot.dynamics import forgetting_axes

    run, d, meta = _one_run(df, run)
    events, never = {}, {}
    for net in _networks(d):
        rows = d[d["network"] == net]
        events[net] = rows["forgetting_events"].to_numpy(np.int64)
        never[net] = int(rows["never_learned"].sum())
    with style.context():
        fig, ax = _panel(fig, ax, _titled(meta.get("title"), meta.get("split")))
        forgetting_axes(ax, events, never)
    return fig


def plot_datamap(df, *, run=None, network=None, fig=None, ax=None):
    """Data maps (`dyn analyze datamap --out`): variability x, confidence y, colour
    correctness; one panel per network, or on `ax` the one `network` names."""
    from dyn.analyze.plot import style
    from dyn.analyze.plot.dynamics import datamap_axes

    run, d, meta = _one_run(df, run)
    nets = _networks(d) if network is None else [network]
    if ax is not None and len(nets) != 1:
        raise ValueError(f"ax= draws one network; choose one with network= ({', '.join(nets)})")
    split = _titled(meta.get("title"), meta.get("split"))
    with style.context():
        if ax is None:
            fig = style.canvas(fig, "double" if len(nets) > 1 else "single",
                               2.6 * ((len(nets) + 2) // 3) if len(nets) > 1 else None)
            cols = min(len(nets), 3)
            axes = fig.subplots((len(nets) + cols - 1) // cols, cols, squeeze=False, sharey=True).ravel()
            for extra in axes[len(nets):]:
                extra.set_visible(False)
        else:
            fig, axes = ax.figure, [ax]
        several = len(nets) > 1
        if several and split:  # one title for the run and split; each panel names its network
            fig.suptitle(split, y=1.04)  # above the panels' own titles (the saved box is tight)
        for a, net in zip(axes, nets):
            rows = d[d["network"] == net]
            sc = datamap_axes(a, rows["variability"], rows["confidence"], rows["correctness"],
                              title=style.label(net) if several else
                              ", ".join(t for t in (style.label(net), split) if t))
            if not a.get_subplotspec().is_first_col():
                a.set_ylabel("")
        fig.colorbar(sc, ax=list(axes[: len(nets)]), label="Correctness", shrink=0.8)
    return fig


def plot_aum(df, *, run=None, fig=None, ax=None):
    """The distribution of the area under the margin per network (`dyn analyze aum --out`)."""
    from dyn.analyze.plot import style
    from dyn.analyze.plot.dynamics import aum_axes

    run, d, meta = _one_run(df, run)
    values = {net: d.loc[d["network"] == net, "aum"].to_numpy(float) for net in _networks(d)}
    with style.context():
        fig, ax = _panel(fig, ax, _titled(meta.get("title"), meta.get("split")))
        aum_axes(ax, values)
    return fig


def plot_settling(df, *, run=None, fig=None, ax=None):
    """Fraction of samples settled by each epoch (solid) and settled right (dashed), one colour
    per network (`dyn analyze settling --out`)."""
    from dyn.analyze.plot import style
    from dyn.analyze.plot.save import DPI

    run, d, meta = _one_run(df, run)
    nets = _networks(d)
    with style.context():
        if ax is None:
            ax = style.canvas(fig).subplots()
        for net in style.order(nets):
            rows = d[d["network"] == net]
            e = rows["epoch"].to_numpy()
            c = style.color(net, nets)
            style.series(ax, e, rows["settled"].to_numpy(float), color=c, label=style.label(net))
            style.series(ax, e, rows["settled_right"].to_numpy(float), color=c, linestyle="--")
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("Fraction of samples settled")
        ax.plot([], [], color="#555555", linestyle="--", label="settled right")
        ax.legend(loc="best")
        style.epoch_axis(ax)
        title = _titled(meta.get("title"), meta.get("split"))
        if title:
            ax.set_title(title)
        return style.finish(ax.figure, None, DPI)
