"""Runs that differ only in seed.

A run record is a mapping with the config keys below plus "seed" (and whatever
results it carries). Runs with the same config are repeats of one experiment
and get averaged; runs with different configs must never be.
"""

from collections.abc import Iterable, Mapping

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
