"""From run files to the analyses' inputs: which networks, which epochs, what a run must hold.

The analyses (dyn.analyze.measures.stability, .flips, ...) are pure functions over arrays; this module
answers the questions between a command line and them, each with one line naming the run
and the problem when the answer is "no": an unknown network, a window outside the recorded
epochs, a run that lacks correctness bits or weights (imported runs may hold only one).
"""

from __future__ import annotations

import contextlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dyn.analyze.networks import decay as name_decay
from dyn.errors import DynError, RunFileError, UsageError

LABEL_KEYS = ("model", "dataset", "schedule", "lr", "seed")


@contextlib.contextmanager
def open_runs(paths):
    """Open every run (all or none: one bad file is one error line); close them after."""
    from dyn.reader import open_run

    with contextlib.ExitStack() as stack:
        runs = [stack.enter_context(open_run(p)) for p in paths]
        for run in runs:
            possibly_live(run)
        yield runs


def possibly_live(run) -> bool:
    """Say so on stderr when a run says *running* and this platform cannot tell whether its
    writer lives (no file locks): its records may still grow, or it may have been killed."""
    if run.state != "running" or run.writer_alive is not None:
        return False
    import sys

    from dyn.lock import UNKNOWN_LIVENESS

    print(f"dyn: note: {run.path} says it is running and may be written as we read: {UNKNOWN_LIVENESS}; "
          f"reading the epochs it has committed", file=sys.stderr)
    return True


# ------------------------------------------------------------------------------ networks

def ema_networks(run) -> list[str]:
    """EMA networks of the run (kind "ema", or named ema-<decay>), by increasing decay."""
    emas = [n for n in run.networks if run.network_info(n)["kind"] == "ema" or name_decay(n) is not None]
    return sorted(emas, key=lambda n: (_decay(run, n) is None, _decay(run, n) or 0.0))


def _decay(run, name):
    d = run.network_info(name)["decay"]
    return d if d is not None else name_decay(name)


def networks(run, wanted=None) -> list[str]:
    """The networks to analyse: `wanted` (names, `ema` for a run's only EMA network, or a
    decay such as 0.9995), else `sgd` and every EMA network."""
    have = ", ".join(run.networks) or "none"
    if not wanted:
        nets = (["sgd"] if "sgd" in run.networks else []) + ema_networks(run)
        if not nets:
            raise RunFileError(f"{run.path}: has neither an 'sgd' nor an EMA network (networks: {have}); "
                               "choose with --net")
        return nets
    out = []
    for name in wanted:
        net = _one_network(run, name, have)
        if net not in out:
            out.append(net)
    return out


def _one_network(run, name: str, have: str) -> str:
    if name in run.networks:
        return name
    emas = ema_networks(run)
    if name == "ema":
        if len(emas) == 1:
            return emas[0]
        if not emas:
            raise UsageError(f"--net ema: {run.path} has no EMA network (networks: {have})")
        raise UsageError(f"--net ema is ambiguous: {run.path} has {len(emas)} EMA networks "
                         f"({', '.join(emas)}); name one, e.g. --net {emas[-1]}")
    try:  # "0.9995" or "ema-0.99950": the same decay, spelled differently
        want = float(name[4:] if name.startswith("ema-") else name)
    except ValueError:
        want = None
    match = [n for n in emas if want is not None and _decay(run, n) == want]
    if len(match) == 1:
        return match[0]
    raise UsageError(f"--net {name}: no such network in {run.path} (networks: {have})")


def pair(run, wanted=None) -> tuple[str, str]:
    """Two networks to compare: `wanted` if it names exactly two, else sgd and the only EMA."""
    if wanted:
        nets = networks(run, wanted)
        if len(nets) != 2:
            raise UsageError(f"--net: agreement compares two networks; got {len(nets)} ({', '.join(nets)})")
        return nets[0], nets[1]
    emas = ema_networks(run)
    if "sgd" in run.networks and len(emas) == 1:
        return "sgd", emas[0]
    raise UsageError(f"{run.path}: choose the two networks to compare with --net, e.g. --net sgd,"
                     f"{emas[-1] if emas else 'NAME'} (networks: {', '.join(run.networks)})")


def pairs(run, wanted=None) -> list[tuple[str, str]]:
    """The pairs to compare: `wanted` if given (exactly two networks), else sgd with each EMA
    network, by increasing decay (the paper's comparison)."""
    if wanted:
        return [pair(run, wanted)]
    emas = ema_networks(run)
    if "sgd" in run.networks and emas:
        return [("sgd", e) for e in emas]
    lacks = "no EMA network" if "sgd" in run.networks else "no 'sgd' network"
    raise UsageError(f"{run.path}: agreement compares sgd with each EMA network, and it has {lacks} (networks: "
                     f"{', '.join(run.networks) or 'none'}); name the two to compare with --net A,B")


# -------------------------------------------------------------------------------- splits

def need_correctness(run, split: str, what: str) -> None:
    """DynError unless the run records per-sample correctness on `split`."""
    if not run.splits:
        holds = " (it holds only weights)" if run.has_weights else ""
        raise RunFileError(f"{run.path}: records no per-sample correctness{holds}; {what} needs it")
    if split not in run.splits:
        raise UsageError(f"--split {split}: {run.path} has no split {split!r} (splits: {', '.join(run.splits)})")


def need_weights(run, what: str) -> None:
    if not run.has_weights:
        holds = " (it holds only predictions)" if run.splits else ""
        raise RunFileError(f"{run.path}: records no weights{holds}; {what} needs SGD and EMA weights")


@dataclass(frozen=True)
class Window:
    """Recorded rows lo..hi-1 of a split, and their epochs."""

    lo: int
    hi: int
    epochs: np.ndarray

    @property
    def span(self) -> str:
        return f"{self.epochs[0]}..{self.epochs[-1]}"


def window(run, split: str, first=None, last=None, need: int = 1, what: str = "this analysis",
           default=None) -> Window:
    """The rows of `split` in the inclusive epoch window [first, last]; both ends, when given,
    must lie within the recorded epochs. default(epochs) -> (first, last) fills in open ends
    only when neither was given (e.g. dyn.analyze.window.second_half)."""
    from dyn.analyze.window import rows_in

    ep = run.epochs(split)
    if not len(ep):
        raise RunFileError(f"{run.path}: split {split!r} has no recorded epochs yet")
    e0, e1 = int(ep[0]), int(ep[-1])
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from-epoch {first} is after --to-epoch {last}")
    for flag, v in (("--from-epoch", first), ("--to-epoch", last)):
        if v is not None and not e0 <= v <= e1:
            raise UsageError(f"{flag} {v} is outside the recorded epochs {e0}..{e1} of split "
                             f"{split!r} in {run.path}")
    if first is None and last is None and default is not None:
        first, last = default(ep)
    try:
        lo, hi = rows_in(ep, (first, last))
    except ValueError:
        raise UsageError(f"the epoch window {first}..{last} holds no recorded epoch of split {split!r} "
                         f"in {run.path}") from None
    if hi - lo < need:
        held = f"{hi - lo} (epoch {ep[lo]})" if hi - lo == 1 else str(hi - lo)
        where = "the run" if hi - lo == len(ep) else f"the window {ep[lo]}..{ep[hi - 1]}"
        raise DynError(f"{run.path}: {what} needs at least {need} recorded epochs; {where} of split "
                       f"{split!r} has {held}", exit_code=1 if hi - lo == len(ep) else 2)
    return Window(lo, hi, ep[lo:hi].astype(np.int64))


# -------------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class RunInfo:
    """How outputs name a run: label (tables, legends), name (file names), title (figures)."""

    path: str
    label: str
    name: str
    title: str | None


def describe(runs) -> list[RunInfo]:
    """Labels are the config values that differ between the runs (e.g. the schedule), else
    file names; names are file names made unique; a lone run's figures are titled by its
    schedule when the config has one."""
    names = stems(runs)
    labs = labels(runs)
    out = []
    for run, label, name in zip(runs, labs, names):
        sched = run.config.get("schedule")
        title = label if len(runs) > 1 else (str(sched) if sched is not None else None)
        out.append(RunInfo(str(run.path), label, slug(name), title))
    return out


def labels(runs) -> list[str]:
    """What differs between the runs' configs; a run whose config does not say which
    experiment it is (no seed, model or data set: imported runs) by its file name."""
    from dyn.analyze.runs import known

    cfgs = [run.config for run in runs]
    names = stems(runs)
    ok = [known(c) for c in cfgs]
    keys = [k for k in LABEL_KEYS if len({repr(c.get(k)) for c, o in zip(cfgs, ok) if o}) > 1]
    if keys and len(runs) > 1:
        out = [config_label(c, keys) if o else n for c, o, n in zip(cfgs, ok, names)]
        if len(set(out)) == len(out):
            return out
    return names


def stems(runs) -> list[str]:
    """File names without suffix, made unique with their folders where they collide."""
    paths = [Path(run.path) for run in runs]
    out = [p.stem for p in paths]
    if len(set(out)) < len(out):
        out = [str(p.with_suffix("")).strip("/").replace(os.sep, "_") for p in paths]
    return out


def slug(text: str) -> str:
    """A file-name-safe form of a label."""
    return re.sub(r"[^A-Za-z0-9.=-]+", "_", text).strip("_") or "run"


def config_label(cfg: dict, keys) -> str:
    """"constant, lr 0.1, seed 1111": the values of `keys` in a config (a missing one as "no lr")."""
    return ", ".join(_kv(k, cfg.get(k)) for k in keys)


def _kv(key, value) -> str:
    if value is None:
        return f"no {key}"
    if key in ("schedule", "model", "dataset"):
        return str(value)
    return f"{key} {value:g}" if isinstance(value, float) else f"{key} {value}"


# ------------------------------------------------------------------------------ parallel

def workers() -> int:
    """Threads for per-network passes: $DYN_WORKERS if set, else the CPUs this process may use."""
    env = os.environ.get("DYN_WORKERS", "")
    if env.strip().isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def map_parallel(fn, items, n_workers: int | None = None) -> list:
    """[fn(x) for x in items], in threads: numpy and the raw reads release the GIL."""
    items = list(items)
    n = min(len(items), n_workers or workers())
    if n <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(n) as ex:
        return list(ex.map(fn, items))
