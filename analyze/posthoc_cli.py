"""`dyn posthoc RUN --decay D[,D...]`: add post-hoc EMA networks to a finished run.

The solve (dyn.analyze.posthoc) sees only profiles; the weights are read once each, in epoch
order, and combined with one matrix product per epoch. The result is written through the
core's DerivedWriter: a copy of the run, renamed into place when complete.
"""

from __future__ import annotations

import click
import numpy as np

from dyn.analyze import posthoc
from dyn.errors import DynError, RunFileError, UsageError, short_error


def _targets(values) -> list:
    out = []
    for v in values:
        for text in v.split(","):
            try:
                t = posthoc.parse_target(text.strip())
            except ValueError as e:
                raise UsageError(f"--decay {e}") from None
            if t not in out:
                out.append(t)
    if not out:
        raise UsageError("--decay: give at least one decay, e.g. --decay 0.995,0.998")
    return out


def _epochs(text: str | None, recorded: np.ndarray) -> np.ndarray:
    if not text:
        return recorded
    want = set()
    for part in text.split(","):
        a, dash, b = part.strip().partition("-")
        try:
            lo, hi = int(a), int(b) if dash else int(a)
        except ValueError:
            raise UsageError(f"--epochs {text!r}: expected E, E-F or a comma-separated list of them") from None
        want.update(range(lo, hi + 1))
    missing = sorted(want - set(recorded.tolist()))
    if missing:
        raise UsageError(f"--epochs: no weights recorded at epoch {missing[0]} (recorded: "
                         f"{recorded[0]}..{recorded[-1]}, {len(recorded)} records)")
    return np.array(sorted(want), dtype=np.int64)


def snapshots(run):
    """(networks, decays, iterations, epochs, rows) of every stored SGD and EMA snapshot."""
    if not run.has_weights:
        raise RunFileError(f"{run.path}: records no weights; post-hoc EMA combines stored weights")
    if run.config.get("ema_warmup"):
        raise RunFileError(f"{run.path}: was trained with --ema-warmup; post-hoc synthesis from warm-up "
                           "EMA snapshots is not supported (their profiles are not geometric)")
    if "iteration" not in run.metric_columns:
        raise RunFileError(f"{run.path}: /metrics has no 'iteration' column; the profiles need the "
                           "optimizer steps of every recorded epoch")
    m = run.metrics()
    steps = dict(zip(m["epoch"].tolist(), m["iteration"].tolist()))
    steps.setdefault(0, 0.0)
    we = run.weight_epochs()
    lacking = [int(e) for e in we if not np.isfinite(steps.get(int(e), np.nan))]
    if lacking:
        raise RunFileError(f"{run.path}: no iteration count in /metrics for epoch {lacking[0]}")
    nets, decays = [], []
    for n in run.networks:
        info = run.network_info(n)
        if info["kind"] == "sgd":
            nets.append(n), decays.append(0.0)
        elif info["kind"] == "ema" and info["decay"] is not None:
            nets.append(n), decays.append(info["decay"])
    if "sgd" not in nets:
        raise RunFileError(f"{run.path}: has no 'sgd' network to synthesize from")
    J = [(n, d, int(steps[int(e)]), int(e), r) for r, e in enumerate(we) for n, d in zip(nets, decays)]
    return ([j[0] for j in J], np.array([j[1] for j in J]), np.array([j[2] for j in J], np.int64),
            np.array([j[3] for j in J], np.int64), np.array([j[4] for j in J], np.int64))


def synthesize(run, writer, targets, table, X, snap, on_epoch=None):
    """Write every synthesized row (params and buffers) through `writer`; `on_epoch(epoch,
    {network: (params, buffers)})` sees each epoch's networks once they are made."""
    nets, _, _, epochs, rows = snap
    t = run.param_table
    buf = t[t["kind"] == "buffer"]
    int_buffers = np.concatenate([np.arange(r.offset, r.offset + r.size) for r in buf.itertuples()
                                  if np.dtype(r.dtype if r.dtype != "bfloat16" else "float32").kind in "iub"]
                                 or [np.zeros(0, np.int64)])
    cache: dict = {}
    row_of = {int(e): int(r) for e, r in zip(epochs, rows)}
    for e in sorted(set(table["epoch"])):
        here = np.flatnonzero((table["epoch"] == e).to_numpy() & ~table["refused"].to_numpy())
        if not len(here):
            continue
        Xe = X[here]
        cols = np.flatnonzero(np.abs(Xe).sum(axis=0) > 0)
        for j in list(cache):  # keep only what this and later epochs can use
            if j not in cols and epochs[j] < epochs[cols].min():
                del cache[j]
        for j in cols:
            if j not in cache:
                cache[j] = (run.params(nets[j], int(epochs[j])), run.buffers(nets[j], int(epochs[j])))
        # float32 product: the stored weights are float32 and so is the result; float64 took
        # 2x the time (the product is compute-bound: K x J x P multiply-adds per epoch)
        P = np.stack([cache[j][0] for j in cols])
        params = Xe[:, cols].astype(np.float32) @ P
        del P
        Bm = np.stack([cache[j][1] for j in cols])
        buffers = Xe[:, cols] @ Bm if Bm.shape[1] else np.zeros((len(here), 0))
        if len(int_buffers):  # integer buffers (num_batches_tracked): the latest SGD snapshot's
            buffers[:, int_buffers] = run.buffers("sgd", int(e))[int_buffers]
        made = {}
        for k, i in enumerate(here):
            name = table["network"].iat[i]
            writer.write_weights(name, row_of[int(e)], params[k], buffers[k])
            made[name] = (params[k].astype(np.float32), buffers[k])
        if on_epoch is not None:
            on_epoch(int(e), made)


def state_dict(param_table, params, buffers) -> dict:
    out = {}
    for r in param_table.itertuples():
        flat = (params if r.kind == "param" else buffers)[r.offset:r.offset + r.size]
        try:
            dtype = np.dtype(r.dtype)
        except TypeError:
            dtype = flat.dtype
        out[r.name] = flat.astype(dtype).reshape(r.shape)
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run", type=click.Path(dir_okay=False))
@click.option("--decay", "decays", multiple=True, required=True, metavar="D[,D...]",
              help="Targets, comma-separated or repeated: a decay (0.995: the plain EMA), warmup:D (timm's "
                   "warm-up EMA) or sigma:S (EDM2's power-function EMA of relative width S).")
@click.option("--epochs", metavar="E[,E-F...]",
              help="Synthesize at these recorded weight epochs only. Default: every weight epoch.")
@click.option("--out", type=click.Path(dir_okay=False), metavar="FILE",
              help="Write the run with the new networks to FILE (which must not exist) instead of "
                   "replacing RUN.")
@click.option("--max-residual", type=float, default=posthoc.MAX_RESIDUAL, show_default=True,
              help="Refuse a target whose profile residual (||achieved - target|| / ||target||) exceeds this "
                   "at any asked epoch.")
@click.option("--evaluate", is_flag=True,
              help="Also evaluate the new networks on the run's splits (needs the training install and the "
                   "run's data set), so stability, flips and accuracy apply to them.")
@click.option("--data-dir", default="data", show_default=True, help="With --evaluate: where the data set is.")
@click.option("--device", default="cpu", show_default=True, help="With --evaluate: cpu, cuda or cuda:N.")
@click.option("--batch-size", type=int, default=1000, show_default=True, help="With --evaluate: evaluation batch size.")
def posthoc_cmd(run, decays, epochs, out, max_residual, evaluate, data_dir, device, batch_size):
    """Add post-hoc EMA networks to RUN, synthesized from its stored snapshots.

    Every stored snapshot (SGD and each EMA, each weight epoch) is a known weighted average of
    the SGD iterates; a decay that was never trained is the combination of snapshots whose
    weights over the iterates best match its own (least squares, coefficients summing to one).
    The networks are named posthoc-<decay> (kind "posthoc") and stored with their coefficients,
    profile residuals and source snapshots; what the run recorded is never altered. The run is
    rewritten atomically (a copy, renamed into place), or written to --out; only finished runs
    (complete or diverged) take them. A target whose profile residual exceeds --max-residual at
    any asked epoch is refused, naming it (short memories next to the spacing of the records,
    and early epochs of warm-up and power-function targets). See docs/posthoc.md.

    \b
      dyn posthoc runs/x.h5 --decay 0.995,0.998
      dyn posthoc runs/x.h5 --decay 0.95 --epochs 10-20 --out runs/x-posthoc.h5
      dyn posthoc runs/x.h5 --decay warmup:0.999,sigma:0.05 --evaluate
    """
    from dyn.reader import open_run

    targets = _targets(decays)
    if not 0 < max_residual:
        raise UsageError("--max-residual must be positive")
    with open_run(run) as r:
        snap = snapshots(r)
        asked = _epochs(epochs, r.weight_epochs())
        table, X = posthoc.coefficients(snap[1], snap[2], snap[3], targets, asked)
        table["refused"] = table["residual"] > max_residual
        if table["refused"].any():
            worst = table.loc[table["residual"].idxmax()]
            bad = table[table["network"] == worst["network"]]
            first = bad.loc[bad["refused"], "epoch"].min()
            raise DynError(f"{run}: {worst['network']} refused: profile residual {worst['residual']:.3g} at epoch "
                           f"{worst['epoch']} exceeds {max_residual:g} (coefficients' L1 norm {worst['l1']:.3g}; "
                           f"refused from epoch {first} on {int(bad['refused'].sum())} of {len(bad)} epochs); "
                           f"choose --epochs or --max-residual", exit_code=2)
        evaluator = None
        if evaluate:
            evaluator = _evaluator(r, data_dir, device, batch_size, asked)
        try:
            _write(r, run, out, targets, table, X, snap, evaluator)
        except OSError as e:  # e.g. a full disk while writing the copy: the run is as it was
            raise DynError(f"{out or run}: writing the new networks failed ({short_error(e)}); "
                           f"{run} is unchanged") from None
    dst = out or run
    summary = table.groupby("network", sort=False).agg(epochs=("epoch", "size"), residual_max=("residual", "max"),
                                                       l1_max=("l1", "max"))
    click.echo(summary.to_string(float_format=lambda v: f"{v:.4g}"))
    click.echo(f"wrote {', '.join(t.name for t in targets)} to {dst}", err=True)


def _write(r, run, out, targets, table, X, snap, evaluator):
    from dyn.derived import DerivedWriter

    with DerivedWriter(run, out) as w:
        for tg in targets:
            w.add_network(tg.name, "posthoc", tg.decay, attrs={"target": tg.describe()})
        evals = _Evaluations(r, evaluator, targets) if evaluator is not None else None
        synthesize(r, w, targets, table, X, snap, on_epoch=evals)
        W = len(r.weight_epochs())
        row_of = {int(e): i for i, e in enumerate(r.weight_epochs())}
        sources = np.array([(n.encode(), int(e)) for n, e in zip(snap[0], snap[3])],
                           dtype=[("network", f"S{max(len(n) for n in snap[0])}"), ("epoch", "<i8")])
        for tg in targets:
            mine = table[table["network"] == tg.name]
            coef = np.full((W, len(sources)), np.nan)
            res, l1 = np.full(W, np.nan), np.full(W, np.nan)
            for i, e in zip(mine.index, mine["epoch"]):
                row = row_of[int(e)]
                coef[row], res[row], l1[row] = X[i], mine.at[i, "residual"], mine.at[i, "l1"]
            w.add_dataset(tg.name, "sources", sources)
            w.add_dataset(tg.name, "coefficients", coef)
            w.add_dataset(tg.name, "residual", res)
            w.add_dataset(tg.name, "l1", l1)
        if evals is not None:
            evals.write(w)
        w.commit()


def _evaluator(run, data_dir, device, batch_size, asked):
    from dyn import plugins

    for s in run.splits:
        if run.split_source(s):  # recorded from training passes (train-presented): never evaluated
            continue
        missing = sorted(set(run.epochs(s).tolist()) - set(asked.tolist()))
        if missing:
            raise UsageError(f"--evaluate: split {s!r} has records at epoch {missing[0]} where no network is "
                             f"synthesized; synthesize every epoch of the run's splits (drop --epochs)")
    factory = plugins.load("dyn.evaluators", "posthoc", "dyn posthoc --evaluate")
    return factory(run, data_dir=data_dir, device=device, batch_size=batch_size)


class _Evaluations:
    """Evaluates each epoch's synthesized networks as they are made (one epoch in memory) and
    keeps their per-sample records for the writer."""

    def __init__(self, run, evaluator, targets):
        self.run, self.evaluator, self.table = run, evaluator, run.param_table
        # the splits the evaluator runs (not train-presented: SGD's own training passes)
        self.splits = [s for s in run.splits if s in evaluator.split_names]
        self.need = {int(e) for s in self.splits for e in run.epochs(s)}
        self.per = {s: {tg.name: {} for tg in targets} for s in self.splits}

    def __call__(self, epoch: int, networks: dict) -> None:
        if epoch not in self.need:
            return
        res = self.evaluator.evaluate({n: state_dict(self.table, p, b) for n, (p, b) in networks.items()})
        for n, by_split in res.items():
            for s, (ev, _acc, _loss) in by_split.items():
                if epoch in self.run.epochs(s):
                    self.per[s][n][epoch] = ev

    def write(self, writer) -> None:
        for s in self.splits:
            order = self.run.epochs(s).tolist()
            for n, by_epoch in self.per[s].items():
                writer.add_split_records(s, n, [by_epoch[e] for e in order])
