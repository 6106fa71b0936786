"""`dyn analyze weight-diff`: ||theta_EMA - theta_SGD|| / ||theta_SGD|| over epochs (Figure 5).

Streams epochs: for each recorded epoch the SGD weights are read once, then each EMA
network's in turn; memory holds two weight vectors, whatever the number of epochs.
"""

from __future__ import annotations

from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import inputs, networks, output, window
from dyn.analyze.command import Analysis, dataframe, run_attrs
from dyn.analyze.measures.weight_diff import WeightDifference, collect, relative_difference
from dyn.analyze.naming import RunName, name_runs
from dyn.analyze.networks import label
from dyn.analyze.options import common
from dyn.errors import RunFileError, UsageError


@dataclass
class WeightDiffResult:
    info: RunName
    buffers: tuple  # names of the buffers in the norms; () without --include-buffers
    nets: dict  # {ema network: WeightDifference}


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


def _reasons(w: WeightDifference) -> str:
    bad = [(int(e), why) for e, why in zip(w.epochs, w.reasons) if why]
    if not bad:
        return ""
    first = bad[0]
    return f"undefined at {len(bad)} epochs (first {first[0]}: {first[1]})"


def _short(names, n: int = 3) -> str:
    return ", ".join(names[:n]) + (f", ... {len(names) - n} more" if len(names) > n else "")


class WeightDiffCommand(Analysis):
    name = "weight-diff"

    def compute(self, runs, opts, include_buffers: bool = False) -> list[WeightDiffResult]:
        out = []
        for run, info in zip(runs, name_runs(runs)):
            inputs.need_weights(run, "weight-diff")
            if "sgd" not in run.networks:
                raise RunFileError(f"{run.path}: has no 'sgd' network (networks: {', '.join(run.networks)}); "
                                          "weight-diff compares EMA networks with it")
            emas = [n for n in networks.choose(run, opts.nets) if n != "sgd"]
            if not emas:
                raise UsageError(f"{run.path}: weight-diff needs an EMA network (networks: {', '.join(run.networks)})")
            epochs = window.select_weights(run, opts.first, opts.last)
            keep = float_buffers(run) if include_buffers else False
            weights = {n: run.iter_params(n, epochs, buffers=keep) for n in ["sgd"] + emas}
            rows = {n: [] for n in emas}
            for e, sgd in weights["sgd"]:  # SGD read once per epoch, then each EMA network
                for n in emas:
                    try:
                        rows[n].append((e,) + relative_difference(sgd, next(weights[n])[1]))
                    except ValueError as err:  # vectors of different lengths: a damaged or odd import
                        raise RunFileError(f"{run.path}: {n} at epoch {e}: {err}") from None
            names = tuple(float_buffer_names(run)) if include_buffers else ()
            out.append(WeightDiffResult(info, names, {n: collect(v) for n, v in rows.items()}))
        return out

    def table(self, results) -> str:
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

    def records(self, results):
        cols = ["run", "network", "epoch", "relative", "diff_norm", "sgd_norm", "reason", "buffers"]
        rows = [{"run": r.info.path, "network": n, "epoch": int(e), "relative": rel, "diff_norm": d,
                 "sgd_norm": s, "reason": why, "buffers": " ".join(r.buffers)}
                for r in results for n, w in r.nets.items()
                for e, rel, d, s, why in zip(w.epochs, w.relative, w.diff_norm, w.sgd_norm, w.reasons)]
        return cols, rows

    def document(self, results) -> dict:
        return {"analysis": "weight-diff", "runs": [{
            "path": r.info.path, "label": r.info.label, "buffers": list(r.buffers),
            "networks": {n: {"epochs": w.epochs, "relative": w.relative, "diff_norm": w.diff_norm,
                             "sgd_norm": w.sgd_norm, "reasons": list(w.reasons)} for n, w in r.nets.items()}}
            for r in results]}

    def frame(self, results):
        """The records as a DataFrame (dyn.analyze.weight_difference), run names in attrs."""
        return dataframe(*self.records(results), runs=run_attrs(results), buffers=results[0].buffers)

    def draw(self, results, out, logy: bool = False) -> list:
        """One figure for all runs."""
        from dyn.analyze.figures import plot_weight_difference
        from dyn.analyze.plot.save import save

        df = self.frame(results)
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
    WeightDiffCommand().run(kw, draw_kw={"logy": logy}, include_buffers=include_buffers)
