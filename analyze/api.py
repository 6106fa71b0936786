"""The analyses from Python, for notebooks: one function per analysis, over one run or several,
each returning a tidy pandas DataFrame, and one plotting function per figure that takes it.

    >>> import dyn.analyze as da
    >>> df = da.stability("runs/x.h5", split="test")      # one row per run, network and epoch
    >>> fig = da.plot_stability(df)                       # the figure `dyn analyze stability --out` draws

Each function takes the choices its command takes, with the same defaults, and computes
through the command's own class (dyn.analyze.commands.<name>: its compute and frame), so a
DataFrame holds the numbers the command's --csv holds. `runs`: a path, an open run (dyn.open_run), or a list of
either; paths are opened and closed here, open runs are left open. What a figure needs beyond
the rows (a run's title, its window, a histogram's per-sample counts) rides in `df.attrs`.
docs/python-api.md lists every function and column.
"""

from __future__ import annotations

import contextlib
import os

__all__ = ["stability", "misclassification", "flips", "weight_difference", "accuracy", "agreement",
           "forgetting", "datamap", "aum", "settling"]


@contextlib.contextmanager
def _open(runs):
    """Open runs: paths opened here (and closed after), open runs passed through."""
    from dyn.reader import open_run

    items = [runs] if isinstance(runs, (str, os.PathLike)) or hasattr(runs, "networks") else list(runs)
    if not items:
        raise ValueError("no runs given")
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(open_run(r)) if isinstance(r, (str, os.PathLike)) else r for r in items]


def _opts(networks, split, from_epoch, to_epoch, figure=False):  # split None: the command's default
    from dyn.analyze.options import SharedOptions, parse_nets

    nets = [networks] if isinstance(networks, (str, float)) else list(networks or ())
    nets = [str(n) for n in nets]  # a decay may be given as a number: 0.9995
    return SharedOptions(runs=(), nets=parse_nets(nets), split=split, first=from_epoch, last=to_epoch,
                  out="figure" if figure else None, csv=None, as_json=False)


def _run(command, runs, opts, **params):
    from dyn.analyze.command import load

    analysis = load(command)
    with _open(runs) as opened:
        return analysis.frame(analysis.compute(opened, opts, **params))


def stability(runs, networks=None, split: str = "val", from_epoch: int | None = None,
              to_epoch: int | None = None):
    """Prediction stability (Figures 2, 6): one row per run, network and window epoch.

    Columns: run, network, epoch, stability (fraction of samples whose correctness equals
    that at the previous recorded epoch; NaN at the window's first epoch), accuracy.
    """
    return _run("stability", runs, _opts(networks, split, from_epoch, to_epoch))


def misclassification(runs, networks=None, split: str = "val", from_epoch: int | None = None,
                      to_epoch: int | None = None, bins: int = 20):
    """Histogram of per-sample misclassification ratios over the window (Figure 3; the command
    `dyn analyze histogram`); default window the second half of the recorded epochs.

    One row per run, network and bin: run, network, first_epoch, last_epoch, bin_lo, bin_hi,
    samples (in the bin), fraction (of the split's samples).
    """
    return _run("histogram", runs, _opts(networks, split, from_epoch, to_epoch), bins=bins)


def flips(runs, networks=None, split: str = "val", from_epoch: int | None = None,
          to_epoch: int | None = None, top: int = 10, rank_by: str = "sum"):
    """The `top` least stable samples by correctness flips (Figures 4, 7).

    One row per run, network and sample: run, network, rank (1 = most flips), sample,
    dataset_index, label, flips (within the window), transitions (window epochs - 1), barcode
    (the sample's correctness at each window epoch, "1" right, "0" wrong).
    """
    return _run("flips", runs, _opts(networks, split, from_epoch, to_epoch, figure=True),
                top=top, rank_by=rank_by)


def weight_difference(runs, networks=None, from_epoch: int | None = None, to_epoch: int | None = None,
                      include_buffers: bool = False):
    """||theta_EMA - theta_SGD|| / ||theta_SGD|| (Figure 5; the command `dyn analyze weight-diff`).

    One row per run, EMA network and epoch with weights: run, network, epoch, relative,
    diff_norm, sgd_norm, reason (why `relative` is NaN; empty where it is defined).
    """
    return _run("weight-diff", runs, _opts(networks, "val", from_epoch, to_epoch),
                include_buffers=include_buffers)


def accuracy(runs, networks=None, split: str = "val", from_epoch: int | None = None,
             to_epoch: int | None = None, band: str = "minmax", lr: bool = False):
    """Accuracy over epochs (Figure 1), runs that differ only in seed as mean and band.

    One row per group of runs, network and epoch: group (what tells the group from the
    others, e.g. the schedule; empty for one group), network, epoch, mean, lo, hi (the band:
    min..max or mean +- std over seeds), runs (how many). With lr=True, attrs["lr"] holds each
    group's (epochs, lr) for the figure's last panel.
    """
    return _run("accuracy", runs, _opts(networks, split, from_epoch, to_epoch), band=band, lr=lr)


def agreement(runs, networks=None, split: str = "val", from_epoch: int | None = None,
              to_epoch: int | None = None, bins: int = 20):
    """Where two networks differ (networks: the pair; default SGD with each EMA network).

    One row per run and epoch: run, network_a, network_b, epoch, correct_differs (fraction
    of samples whose correctness differs), label_differs (predicted labels; NaN when not
    recorded). attrs["runs"][run]["histograms"]["a vs b"] holds each pair's per-sample mismatch histogram.
    """
    return _run("agreement", runs, _opts(networks, split, from_epoch, to_epoch), bins=bins)


def forgetting(runs, networks=None, split: str | None = None, from_epoch: int | None = None,
               to_epoch: int | None = None, never_learned: str = "E"):
    """Forgetting events per example (Toneva et al. 2019); split default train-presented, else train.

    One row per run, network and example: run, network, sample, dataset_index, label,
    presentations, forgetting_events, first_learned (epoch; NaN: never), never_learned,
    forgetting (the count ranked on: events, or for never-learned examples E, inf or NaN as
    never_learned says). dyn.analyze.measures.dynamics.order_by_forgetting orders them.
    """
    return _run("forgetting", runs, _opts(networks, split, from_epoch, to_epoch), never_learned=never_learned)


def datamap(runs, networks=None, split: str | None = None, from_epoch: int | None = None,
            to_epoch: int | None = None):
    """Data-map coordinates (Swayamdipta et al. 2020); split default train-presented, else train.

    One row per run, network and example: run, network, sample, dataset_index, label,
    confidence, variability (population std), correctness (fraction), correct_epochs,
    presentations.
    """
    return _run("datamap", runs, _opts(networks, split, from_epoch, to_epoch))


def aum(runs, networks=None, split: str | None = None, from_epoch: int | None = None,
        to_epoch: int | None = None):
    """Area under the margin (Pleiss et al. 2020); split default train-presented, else train.

    One row per run, network and example: run, network, sample, dataset_index, label, aum,
    measurements, rank (1 = lowest AUM).
    """
    return _run("aum", runs, _opts(networks, split, from_epoch, to_epoch))


def settling(runs, networks=None, split: str = "val", from_epoch: int | None = None,
             to_epoch: int | None = None):
    """When predictions settle: the fraction of samples whose correctness no longer changes.

    One row per run, network and window epoch: run, network, epoch, settled (fraction of
    samples whose last flip is at or before the epoch), settled_right (and right from then on).
    """
    return _run("settling", runs, _opts(networks, split, from_epoch, to_epoch))
