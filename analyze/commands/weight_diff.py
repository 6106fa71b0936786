"""`dyn analyze weight-diff`: ||theta_EMA - theta_SGD|| / ||theta_SGD|| over epochs (Figure 5).

Streams epochs: for each recorded epoch the SGD weights are read once, then each EMA
network's in turn; memory holds two weight vectors, whatever the number of epochs.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import output, source
from dyn.analyze.networks import label
from dyn.analyze.options import common, execute
from dyn.analyze.measures.weight_diff import WeightDifference, relative_difference
from dyn.errors import RunFileError, UsageError


@dataclass
class RunResult:
    info: source.RunInfo
    buffers: tuple  # names of the buffers in the norms; () without --include-buffers
    nets: dict  # {ema network: WeightDifference}


def compute(runs, opts, include_buffers: bool = False) -> list[RunResult]:
    out = []
    for run, info in zip(runs, source.describe(runs)):
        source.need_weights(run, "weight-diff")
        if "sgd" not in run.networks:
            raise RunFileError(f"{run.path}: has no 'sgd' network (networks: {', '.join(run.networks)}); "
                                      "weight-diff compares EMA networks with it")
        emas = [n for n in source.networks(run, opts.nets) if n != "sgd"]
        if not emas:
            raise UsageError(f"{run.path}: weight-diff needs an EMA network (networks: {', '.join(run.networks)})")
        epochs = _window(run, opts.first, opts.last)
        keep = float_buffers(run) if include_buffers else None
        acc = {n: [] for n in emas}
        for e in epochs:
            sgd = _weights(run, "sgd", e, keep)
            for n in emas:
                try:
                    acc[n].append((int(e),) + relative_difference(sgd, _weights(run, n, e, keep)))
                except ValueError as err:  # vectors of different lengths: a damaged or odd import
                    raise RunFileError(f"{run.path}: {n} at epoch {e}: {err}") from None
        names = tuple(float_buffer_names(run)) if include_buffers else ()
        out.append(RunResult(info, names, {n: _collect(v) for n, v in acc.items()}))
    return out


def _window(run, first, last) -> np.ndarray:
    ep = run.weight_epochs()
    e0, e1 = int(ep[0]), int(ep[-1])
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from-epoch {first} is after --to-epoch {last}")
    for flag, v in (("--from-epoch", first), ("--to-epoch", last)):
        if v is not None and not e0 <= v <= e1:
            raise UsageError(f"{flag} {v} is outside the epochs {e0}..{e1} with weights in {run.path}")
    sel = ep[(ep >= (e0 if first is None else first)) & (ep <= (e1 if last is None else last))]
    if not len(sel):
        raise UsageError(f"no weights recorded between epochs {first} and {last} in {run.path}")
    return sel


def float_buffers(run) -> np.ndarray:
    """Positions in the buffers row of the floating-point buffers (BatchNorm running means and
    variances). Integer and bool buffers (num_batches_tracked) are counters, not weights: a
    step count in the thousands would swamp ||SGD|| and make every EMA look like SGD."""
    t = run.param_rows
    buf = t[t["kind"] == b"buffer"]
    keep = [np.arange(int(o), int(o) + int(n)) for o, n, d in zip(buf["offset"], buf["size"], buf["dtype"])
            if _is_float(d.decode(errors="replace"))]
    return np.concatenate(keep).astype(np.int64) if keep else np.zeros(0, np.int64)


def _is_float(dtype: str) -> bool:
    try:
        return np.dtype(dtype).kind in "fc"
    except TypeError:  # bfloat16 and other names numpy lacks are floats in torch
        return "float" in dtype


def float_buffer_names(run) -> list[str]:
    t = run.param_rows
    return [n.decode() for n, k, d in zip(t["name"], t["kind"], t["dtype"])
            if k == b"buffer" and _is_float(d.decode(errors="replace"))]


def _weights(run, net, epoch, keep):
    p = run.params(net, int(epoch))
    if keep is None:
        return p
    b = run.buffers(net, int(epoch))
    if len(keep) and int(keep.max()) >= len(b):  # a damaged file: the table lists buffers it lacks
        raise RunFileError(f"{run.path}: {net} at epoch {epoch}: the parameter table lists buffer values up to "
                           f"{int(keep.max()) + 1:,}, the file holds {len(b):,}")
    return np.concatenate([p, b[keep]])


def _collect(items) -> WeightDifference:
    e, r, d, s, why = zip(*items)
    f = lambda x: np.asarray(x, dtype=np.float64)  # noqa: E731
    return WeightDifference(np.asarray(e, np.int64), f(r), f(d), f(s), tuple(why))


def _reasons(w: WeightDifference) -> str:
    bad = [(int(e), why) for e, why in zip(w.epochs, w.reasons) if why]
    if not bad:
        return ""
    first = bad[0]
    return f"undefined at {len(bad)} epochs (first {first[0]}: {first[1]})"


def table(results) -> str:
    many = len(results) > 1
    rows = []
    for r in results:
        for n, w in r.nets.items():
            ok = np.isfinite(w.relative)
            v = w.relative[ok]
            rows.append(([r.info.label] if many else []) + [
                label(n), f"{w.epochs[0]}..{w.epochs[-1]}", len(w.epochs),
                output.fmt(v.min() if v.size else np.nan), output.fmt(v.max() if v.size else np.nan),
                output.fmt(w.relative[-1]), _reasons(w)])
    head = (["run"] if many else []) + ["network", "epochs", "records", "lowest", "highest", "last", "note"]
    named = sorted({b for r in results for b in r.buffers})
    what = f"parameters and {len(named)} float buffers ({_short(named)})" if named else "parameters"
    where = "" if many else f" ({results[0].info.path})"
    return f"||EMA - SGD|| / ||SGD|| over {what}{where}\n" + output.text_table(head, rows)


def _short(names, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


def records(results):
    cols = ["run", "network", "epoch", "relative", "diff_norm", "sgd_norm", "reason", "buffers"]
    rows = [{"run": r.info.path, "network": n, "epoch": int(e), "relative": rel, "diff_norm": d,
             "sgd_norm": s, "reason": why, "buffers": " ".join(r.buffers)}
            for r in results for n, w in r.nets.items()
            for e, rel, d, s, why in zip(w.epochs, w.relative, w.diff_norm, w.sgd_norm, w.reasons)]
    return cols, rows


def document(results) -> dict:
    return {"analysis": "weight-diff", "runs": [{
        "path": r.info.path, "label": r.info.label, "buffers": list(r.buffers),
        "networks": {n: {"epochs": w.epochs, "relative": w.relative, "diff_norm": w.diff_norm,
                         "sgd_norm": w.sgd_norm, "reasons": list(w.reasons)} for n, w in r.nets.items()}}
        for r in results]}


def frame(results):
    """The records as a DataFrame (dyn.analyze.weight_difference), run names in attrs."""
    from dyn.analyze.api import dataframe, run_attrs

    return dataframe(*records(results), runs=run_attrs(results), buffers=results[0].buffers)


def draw(results, out, logy: bool = False) -> list:
    from dyn.analyze.figures import plot_weight_difference
    from dyn.analyze.plot.save import save

    df = frame(results)
    return [output.draw(lambda p: save(plot_weight_difference(df, logy=logy), p), out)]


@click.command("weight-diff")
@common
@click.option("--include-buffers", is_flag=True,
              help="Include the floating-point buffers (BatchNorm running means and variances) in the "
                   "norms. Integer buffers (num_batches_tracked) are step counters, not weights, and "
                   "stay out; the CSV's `buffers` column names those that are in.")
@click.option("--log", "logy", is_flag=True, help="Logarithmic y axis.")
def weight_diff(include_buffers, logy, **kw):
    """Relative difference of EMA and SGD weights over epochs (Figure 5).

    ||theta_EMA - theta_SGD||_2 / ||theta_SGD||_2 over the parameters, for every epoch with
    weights and every EMA network; several runs share one figure, labelled by what differs
    between them (e.g. the schedule). Undefined ratios are shown with their reason. --split
    does not apply.

    \b
    Examples:
      dyn analyze weight-diff runs/constant.h5 runs/cosine.h5 --net ema-0.9995 --out fig5.png
      dyn analyze weight-diff runs/x.h5 --include-buffers --csv wd.csv
    """
    execute(sys.modules[__name__], kw, draw_kw={"logy": logy}, include_buffers=include_buffers)
