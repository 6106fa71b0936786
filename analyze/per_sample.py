"""What the per-sample training-dynamics commands (forgetting, datamap, aum) read from a run.

Their default split is `train-presented` (the training forward pass, SGD only) where the run
records it, else `train`; any split works. Where a split lacks the true-class probability but
records per-sample losses (val, test), prob = exp(-loss) (the cross-entropy loss is -log p).
Margins need logits, which only `prob`/`margin` records keep: AUM says so in one line.
Records are read in chunks of epochs: memory O(N) per network, not O(E N).
"""

from __future__ import annotations

from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import inputs, networks
from dyn.analyze.command import Analysis, RunResult, run_attrs
from dyn.analyze.options import net_option, output_options, runs_argument, window_options
from dyn.errors import RunFileError, UsageError

CHUNK_VALUES = 1 << 22  # values per chunk read: 16 MB as float32 whatever N (one per network thread)


def common(fn):
    """RUNS..., --net, --split (default train-presented, else train), the window, --out, --csv, --json."""
    fn = output_options(fn)
    fn = window_options(fn)
    fn = click.option("--split", default=None, metavar="SPLIT",
                      help="Split: default train-presented (the training forward pass) where the run "
                           "records it, else train (clean, every network); val or test work too.")(fn)
    fn = net_option(fn)
    return runs_argument(fn)


def split_of(run, split: str | None) -> str:
    if split is not None:
        inputs.need_correctness(run, split, "this analysis")
        return split
    for s in ("train-presented", "train"):
        if s in run.splits:
            return s
    raise UsageError(f"{run.path}: records neither train-presented nor train (splits: "
                     f"{', '.join(run.splits) or 'none'}); record them with dyn train --record-train or "
                     f"--record-train-every K, or choose a split with --split")


def networks_on(run, split: str, wanted) -> list[str]:
    """The chosen networks (default sgd and every EMA network) that have records on `split`."""
    has = set(run.recorded_networks(split))
    if wanted:
        nets = networks.choose(run, wanted)
        for n in nets:
            if n not in has:
                hint = (" (train-presented holds SGD's training forward pass only; the train split, "
                        "recorded with --record-train-every K, holds every network)"
                        if split == "train-presented" else "")
                raise UsageError(f"--net {n}: {run.path} has no records of {n} on split {split!r}{hint}")
        return nets
    nets = [n for n in networks.choose(run) if n in has]
    if not nets:
        raise RunFileError(f"{run.path}: no network has records on split {split!r}")
    return nets


def value_kind(run, split: str, net: str, kind: str) -> str | None:
    """Where `kind` ("prob" or "margin") comes from: "prob"/"margin" (recorded), "loss"
    (prob = exp(-loss)), or None (the analysis cannot run; lacking() says why)."""
    if run.has(split, net, kind):
        return kind
    if kind == "prob" and run.has(split, net, "loss"):
        return "loss"
    return None


def lacking(run, split: str, net: str, kind: str, what: str) -> RunFileError:
    need = ("the true-class probability (or the per-sample loss)" if kind == "prob"
            else "margins (true-class logit minus the largest other), which need logits")
    return RunFileError(f"{run.path}: split {split!r} records no {kind} for {net}; {what} needs {need}, "
                        f"recorded by dyn train --record-train (train-presented) or --record-train-every K (train)")


def chunks(run, split: str, net: str, win, kind: str | None, correct: bool | str = True, raw_presence=False):
    """(correct, values (t, N) or None, presented bool (t, N) or None) over the window, in
    chunks of epochs. correct: True: bool (t, N); "packed": the stored uint8 rows; False: None.
    values: as stored (float16; converted where they are summed, analyze/half.py), or float32
    exp(-loss). kind None: no values, but on train-presented which examples were presented,
    from the prob (or margin) records (NaN: not presented), tested on the float16 bits."""
    n = run.split_size(split)
    step = max(1, CHUNK_VALUES // max(n, 1))
    src = value_kind(run, split, net, kind) if kind else next(
        (k for k in ("prob", "margin") if run.has(split, net, k)), None)
    if kind is None and split != "train-presented":
        src = None  # elsewhere every example is evaluated at every recorded epoch
    ds = None
    if src is not None:
        ds = run.record_dataset(split, net, src)  # the float16 rows as stored: converted once, below
    for a in range(win.lo, win.hi, step):
        rows = slice(a, min(a + step, win.hi))
        bits = (run.correct_packed(split, net, rows) if correct == "packed"
                else run.correct(split, net, rows) if correct else None)
        values = presented = None
        if ds is not None:
            raw = ds[rows.start:rows.stop]
            if kind is None:
                presented = raw if raw_presence else _not_nan(raw)  # raw: the float16 rows, NaN = absent
            elif src == "loss":
                values = raw.astype(np.float32)
                np.exp(np.negative(values, out=values), out=values)  # cross-entropy = -log p
            else:
                values = raw
        yield bits, values, presented


def _not_nan(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == np.float16:  # numpy's float16 isnan is ~10x slower than this bit test
        return (raw.view(np.uint16) & 0x7FFF) <= 0x7C00
    return ~np.isnan(raw)


@dataclass(kw_only=True)
class PerSampleResult(RunResult):  # nets: {network: DataFrame, one row per example}
    dataset_index: np.ndarray
    labels: np.ndarray


class PerSampleAnalysis(Analysis):
    """forgetting, datamap, aum: compute() returns {"runs": [PerSampleResult], ...}."""

    def run_results(self, result) -> list:
        return result["runs"]

    def frame_attrs(self, result) -> dict:
        """What joins the runs' in df.attrs."""
        return {}

    def frame(self, result):
        """One row per run, network and example (its columns after run, network, sample:
        dataset_index, label)."""
        import pandas as pd

        parts = []
        for r in result["runs"]:
            for net, d in r.nets.items():
                d = d.copy()
                d.insert(0, "network", net)
                d.insert(0, "run", r.info.path)
                d.insert(3, "dataset_index", r.dataset_index)
                d.insert(4, "label", r.labels)
                parts.append(d)
        df = pd.concat(parts, ignore_index=True)
        df.attrs.update(runs=run_attrs(result["runs"]), **self.frame_attrs(result))
        return df
