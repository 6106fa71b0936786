"""Runs that differ only in seed.

A run record is a mapping with the config keys below plus "seed" (and whatever
results it carries). Runs with the same config are repeats of one experiment
and get averaged; runs with different configs must never be.
"""

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

CONFIG_KEYS = ("model", "dataset", "schedule", "lr")


def config(record: Mapping, keys=CONFIG_KEYS) -> tuple:
    """The record's values for `keys`, or ValueError naming the missing one."""
    missing = [k for k in keys if k not in record]
    if missing:
        raise ValueError(f"run record lacks {', '.join(map(repr, missing))}")
    return tuple(record[k] for k in keys)


def group_seeds(records: Iterable[Mapping], keys=CONFIG_KEYS) -> dict[tuple, list]:
    """{config: [records]} in first-seen order; ValueError if a config repeats a seed."""
    groups: dict[tuple, list] = {}
    for r in records:
        cfg = config(r, keys)
        if "seed" not in r:
            raise ValueError(f"run record {dict(zip(keys, cfg))} lacks 'seed'")
        group = groups.setdefault(cfg, [])
        if any(g["seed"] == r["seed"] for g in group):
            raise ValueError(f"two runs of {dict(zip(keys, cfg))} share seed {r['seed']}; "
                             "give each run once")
        group.append(r)
    return groups


# ----------------------------------------------------------------- the pooling rule
#
# Every command that pools runs as seeds of one experiment (accuracy, table, report, any
# later one) asks `pool` which runs go together. Runs are pooled only when their configs
# differ in nothing but the seed; runs whose identity is unknown (no seed, or no model or
# data set: imported runs, a user's own loop) are never pooled, and a run still being
# written is left out of a pool that has complete runs. What was left out says so.

SEED = "seed"
# Config keys that say where or how fast a run ran, not what it computed.
NOT_EXPERIMENT = frozenset({SEED, "environment", "data_dir", "device", "compile", "eval_batch_size",
                            "checkpoint_every", "iters_per_epoch", "train_size"})
IDENTITY = ("model", "dataset")  # without these (and a seed), two runs cannot be called one experiment


def known(config: Mapping) -> bool:
    """Whether a run's config says which experiment it is: a seed, a model and a data set."""
    return all(config.get(k) is not None for k in (SEED, *IDENTITY))


def experiment(config: Mapping) -> dict:
    """The config keys that define the experiment: all but the seed and where/how it ran."""
    return {k: v for k, v in config.items() if k not in NOT_EXPERIMENT}


@dataclass
class Pool:
    """Runs of one experiment (differing only in seed), or one run of unknown identity."""

    members: list                 # the items pooled
    config: dict                  # the experiment's config (the first member's, no seed)
    known: bool                   # False: one run of unknown identity, named by its file
    name: str                     # that file's name (the first member's)
    left_out: list = field(default_factory=list)  # (item, why): same experiment, not pooled
    differs: dict = field(default_factory=dict)   # {key: value} of the keys that tell the pools apart
    label: str = ""               # what tells it from the other pools ("" when it is the only one)


def _value_key(v) -> str:
    return json.dumps(v, sort_keys=True, default=str)


def pool(items, config=lambda x: x.config, state=lambda x: getattr(x, "state", "complete"),
         name=lambda x: Path(str(x.path)).stem) -> list[Pool]:
    """Group items (runs, or records with a config) by the rule above, in first-seen order.

    A pool with at least one complete run leaves out its runs that are not complete (still
    being written, stopped): mixing a partial run's last epoch with finished ones would be wrong.
    ValueError when a run is given twice, or two runs are the same experiment and seed.
    Labels: the values of the fewest keys that tell the pools apart (distinguishing_keys: model,
    dataset, schedule, lr first, then the others by name); a pool of unknown identity is labelled
    by file name.
    """
    pools: dict = {}
    given: dict = {}
    for i, item in enumerate(items):
        where = str(getattr(item, "path", "")) or name(item)
        if where in given:
            raise ValueError(f"{where} is given twice; give each run once")
        given[where] = item
        cfg = dict(config(item))
        if known(cfg):
            key = _value_key(experiment(cfg))
            p = pools.setdefault(key, Pool([], experiment(cfg), True, name(item)))
        else:
            p = pools.setdefault(("alone", i), Pool([], experiment(cfg), False, name(item)))
        twin = [m for m in p.members if p.known and config(m).get(SEED) == cfg[SEED]]
        if twin:
            raise ValueError(f"{twin[0].path if hasattr(twin[0], 'path') else name(twin[0])} and {where} are the "
                             f"same experiment and seed ({cfg[SEED]}); give each run once")
        p.members.append(item)
    out = list(pools.values())
    for p in out:
        complete = [m for m in p.members if state(m) == "complete"]
        if complete and len(complete) < len(p.members):
            p.left_out = [(m, f"{state(m)}, not pooled with complete runs") for m in p.members
                          if state(m) != "complete"]
            p.members = complete
    _label(out)
    return out


def differing_keys(pools) -> list[str]:
    """The config keys whose values differ between the pools of known identity."""
    ps = [p for p in pools if p.known]
    keys = {k for p in ps for k in p.config}
    vary = [k for k in keys if len({_value_key(p.config.get(k)) for p in ps}) > 1]
    first = [k for k in LABEL_ORDER if k in vary]
    return first + sorted(k for k in vary if k not in first)


LABEL_ORDER = ("model", "dataset", "schedule", "lr")


def distinguishing_keys(pools, start=()) -> list[str]:
    """The fewest differing keys, added in differing_keys' order to `start`, that tell every
    pool of known identity from the others. Keys that change only together with one already
    taken say nothing more: Table 3's multistep run has other milestones and no warm-up, and
    its schedule alone names its row."""
    ps = [p for p in pools if p.known]
    keys = list(start)

    def distinct(ks):
        return len({tuple(_value_key(p.config.get(k)) for k in ks) for p in ps})

    for k in differing_keys(pools):
        if distinct(keys) == len(ps):
            break
        if k not in keys and distinct([*keys, k]) > distinct(keys):
            keys.append(k)
    return keys[len(start):]


def _label(pools) -> None:
    keys = distinguishing_keys(pools)
    names = [p.name for p in pools]
    for p in pools:
        p.differs = {k: p.config.get(k) for k in keys}
        if not p.known:
            p.label = p.name
        elif len(pools) > 1:
            p.label = ", ".join(value_label(k, p.config.get(k)) for k in keys) or p.name
    labels = [p.label for p in pools]
    if len(pools) > 1 and len(set(labels)) < len(labels):  # e.g. an unknown run named like a label
        for p, n in zip(pools, names):
            p.label = n


def value_label(key, value) -> str:
    """"constant", "lr 0.1", "epochs 60", "decays 0.9,0.99": one config value as a label shows it."""
    if value is None:
        return f"no {key.replace('_', ' ')}"
    if key in ("schedule", "model", "dataset"):
        return str(value)
    if isinstance(value, (list, tuple)):
        value = ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    elif isinstance(value, float):
        value = f"{value:g}"
    return f"{key.replace('_', ' ')} {value}"
