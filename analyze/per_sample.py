"""What the per-sample training-dynamics commands (forgetting, datamap, aum) read from a run.

Their default split is `train-presented` (the training forward pass, SGD only) where the run
records it, else `train`; any split works. Where a split lacks the true-class probability but
records per-sample losses (val, test), prob = exp(-loss) (the cross-entropy loss is -log p).
Margins need logits, which only `prob`/`margin` records keep: AUM says so in one line.
Records are read in chunks of epochs: memory O(N) per network, not O(E N).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import click
import numpy as np

from dyn.analyze import fileio, half, inputs, networks, window
from dyn.analyze.command import Analysis, RunResult, run_attrs
from dyn.analyze.naming import name_runs
from dyn.analyze.options import net_option, output_options, runs_argument, window_options
from dyn.analyze.stream import map_parallel
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
    chunks of epochs, each valid until the next is asked for (the buffers are reused).
    correct: True: bool (t, N); "packed": the stored uint8 rows; False: None.
    values: as stored (float16; converted where they are summed, analyze/half.py), or float32
    exp(-loss). kind None: no values, but on train-presented which examples were presented,
    from the prob (or margin) records (NaN: not presented), tested on the float16 bits."""
    n = run.split_size(split)
    step = max(1, CHUNK_VALUES // max(n, 1))
    src = value_kind(run, split, net, kind) if kind else next(
        (k for k in ("prob", "margin") if run.has(split, net, k)), None)
    if kind is None and split != "train-presented":
        src = None  # elsewhere every example is evaluated at every recorded epoch
    with contextlib.ExitStack() as stack:
        readers = []
        if correct:
            readers.append(stack.enter_context(RowReader(run, run.record_dataset(split, net, "correct"),
                                                         win.lo, win.hi, step)))
        if src is not None:
            readers.append(stack.enter_context(RowReader(run, run.record_dataset(split, net, src),
                                                         win.lo, win.hi, step)))
        for a in range(win.lo, win.hi, step):
            b = min(a + step, win.hi)
            got = [r.read(a, b) for r in readers]
            bits = got.pop(0) if correct else None
            if correct is True:
                bits = np.unpackbits(bits, axis=1, count=n).astype(bool)
            values = presented = None
            if src is not None:
                raw = got.pop(0)
                if kind is None:
                    presented = raw if raw_presence else _not_nan(raw)  # raw: the float16 rows, NaN = absent
                elif src == "loss":
                    values = raw.astype(np.float32)
                    np.exp(np.negative(values, out=values), out=values)  # cross-entropy = -log p
                else:
                    values = raw
            yield bits, values, presented


class RowReader:
    """Rows lo..hi-1 of a 2-D dataset, read a few at a time into one buffer (the thread's
    scratch, analyze/half.py), as a context manager.

    Straight from the file where the chunks allow (stored without filters, every chunk of the
    window allocated, the first row identical to h5py's read of it): one os.preadv per chunk
    row (analyze/fileio.py), which lets go of the GIL, so that networks are read in parallel
    threads (h5py holds the GIL while it reads, analyze/stream.py). Else through h5py."""

    def __init__(self, run, ds, lo: int, hi: int, step: int):
        """ds: the dataset as Run.record_dataset checked it."""
        self.ds, self.path, self.offsets = ds, run.path, run.addresses_are_offsets
        self.lo, self.hi = lo, hi
        self.shape = (max(0, min(step, hi - lo)),) + self.ds.shape[1:]
        self.fd = self.plan = None

    def __enter__(self):
        with contextlib.ExitStack() as stack:
            self.buf = stack.enter_context(half.scratch(self.shape, self.ds.dtype))
            stack.callback(self._close)
            self.plan = self._plan(self.lo, self.hi)
            self._stack = stack.pop_all()  # given back on __exit__ (or here, if _plan raised)
        return self

    def __exit__(self, *exc):
        self._stack.close()

    def _plan(self, lo: int, hi: int):
        ds = self.ds
        if (hi <= lo or ds.ndim != 2 or ds.chunks is None or not self.offsets
                or ds.id.get_create_plist().get_nfilters() != 0 or not len(self.buf)):
            return None
        crows, ccols = ds.chunks
        size = crows * ccols * ds.dtype.itemsize
        plan = {}
        try:
            def take(info):
                r0, c0 = info.chunk_offset
                if info.filter_mask == 0 and info.size == size and r0 + crows > lo and r0 < hi:
                    plan[r0, c0] = info.byte_offset
            ds.id.chunk_iter(take)
        except Exception:  # an HDF5 without chunk_iter, or anything unexpected: h5py reads
            return None
        if any((r0, c0) not in plan for r0 in range(lo - lo % crows, hi, crows) for c0 in range(0, ds.shape[1], ccols)):
            return None
        self.plan, self.fd = plan, fileio.open_binary(self.path)
        try:  # trust the addresses only if they give what HDF5 gives (the first row: every column chunk)
            same = self.read(lo, lo + 1).tobytes() == ds[lo:lo + 1].tobytes()
        except (OSError, RunFileError):
            same = False
        if not same:
            self._close()
        return plan if same else None

    def read(self, a: int, b: int) -> np.ndarray:
        out = self.buf[:b - a]
        if self.plan is None:
            return self.ds[a:b]
        crows, ccols = self.ds.chunks
        width, item = self.ds.shape[1], self.ds.dtype.itemsize
        for r0 in range(a - a % crows, b, crows):
            ra, rb = max(a, r0), min(b, r0 + crows)
            for c0 in range(0, width, ccols):
                at = self.plan[r0, c0] + (ra - r0) * ccols * item
                if ccols == width:  # whole rows: the chunk's rows ra..rb-1 are contiguous in both
                    self._read(out[ra - a:rb - a], at)
                    continue
                for r in range(ra, rb):
                    self._read(out[r - a, c0:c0 + ccols], at + (r - ra) * ccols * item)
        return out

    def _read(self, dest: np.ndarray, at: int) -> None:
        view = memoryview(dest).cast("B")
        got = fileio.read_into(self.fd, view, at)
        if got != len(view):
            raise RunFileError(f"{self.path}: reading {self.ds.name}: short read ({got} of {len(view)} bytes)")

    def _close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _not_nan(raw: np.ndarray) -> np.ndarray:
    if raw.dtype == np.float16:  # numpy's float16 isnan is ~10x slower than this bit test
        return (raw.view(np.uint16) & 0x7FFF) <= 0x7C00
    return ~np.isnan(raw)


@dataclass(kw_only=True)
class PerSampleResult(RunResult):  # nets: {network: measures.dynamics.Columns, one row per example}
    dataset_index: np.ndarray
    labels: np.ndarray
    sources: dict  # {network: where its values came from: "prob", "loss" (prob = exp(-loss)), "margin"; or None}


class PerSampleAnalysis(Analysis):
    """forgetting, datamap, aum: compute() returns {"runs": [PerSampleResult], ...}."""

    def feed_examples(self, runs, opts, one, *, what: str, kind: str | None = None) -> list[PerSampleResult]:
        """What the three compute()s share: per run, the split (default train-presented, else
        train), the chosen networks with records on it, the window, a one-line refusal where a
        network lacks `kind` ("prob" or "margin"; None: correctness alone), then
        one(run, split, net, window) for each network in parallel threads."""
        out = []
        for run, info in zip(runs, name_runs(runs)):
            split = split_of(run, opts.split)
            nets = networks_on(run, split, opts.nets)
            win = window.select(run, split, opts.first, opts.last, need=1, what=what)
            sources = {n: value_kind(run, split, n, kind) if kind else None for n in nets}
            for n, src in sources.items():
                if kind and src is None:
                    raise lacking(run, split, n, kind, what)
            results = map_parallel(lambda net: one(run, split, net, win), nets)
            out.append(PerSampleResult(info, split, win, dict(zip(nets, results)), sources=sources,
                                       dataset_index=run.dataset_index(split), labels=run.labels(split)))
        return out

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
                d = d.frame()  # a new DataFrame of the Columns' arrays: inserting leaves them as they are
                d.insert(0, "network", net)
                d.insert(0, "run", r.info.path)
                d.insert(3, "dataset_index", r.dataset_index)
                d.insert(4, "label", r.labels)
                parts.append(d)
        df = pd.concat(parts, ignore_index=True)
        df.attrs.update(runs=run_attrs(result["runs"]), **self.frame_attrs(result))
        return df
