"""How outputs name a run: its label in tables and legends, its name in file names, its
title on figures; labels say what differs between the runs (the schedule, the seed)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

LABEL_KEYS = ("model", "dataset", "schedule", "lr", "seed")


@dataclass(frozen=True)
class RunName:
    """How outputs name a run: label (tables, legends), name (file names), title (figures)."""

    path: str
    label: str
    name: str
    title: str | None


def name_runs(runs) -> list[RunName]:
    """Labels are the config values that differ between the runs (e.g. the schedule), else
    file names; names are file names made unique; a lone run's figures are titled by its
    schedule when the config has one."""
    names = stems(runs)
    labs = labels(runs)
    out = []
    for run, label, name in zip(runs, labs, names):
        sched = run.config.get("schedule")
        title = label if len(runs) > 1 else (str(sched) if sched is not None else None)
        out.append(RunName(str(run.path), label, slug(name), title))
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
