"""The grid of a `dyn sweep`: its axes, the paper's presets, and the `dyn train` arguments of
each run.

The grid is the product of the comma lists given for the axes (--schedule, --lr, --seed,
--model, --dataset, --batch-size); every other flag applies to every run, and all --decay
values go into each run together (the EMA never feeds back into SGD). A preset fixes the
recipe of a paper table's runs; flags may repeat its values, not change them. Plain Python, no
torch: --print and the status of existing runs need none.
"""

from __future__ import annotations

import itertools

from dyn.errors import UsageError

from .cli import config_from_params
from .config import PAPER_DECAYS, TrainConfig, flag, parse_floats, parse_ints
from .schedules import SCHEDULES

# grid axes: flag name -> (TrainConfig field, parser of one value)
AXES = {
    "model": ("model", str),
    "dataset": ("dataset", str),
    "schedule": ("schedule", str),
    "lr": ("lr", float),
    "batch_size": ("batch_size", int),
    "seed": ("seed", int),
}
# dyn train's options that a sweep passes to every run as they are
SHARED = ("decay", "epochs", "momentum", "weight_decay", "warmup_iters", "milestones", "gamma", "data_dir",
          "val_size", "device", "checkpoint_every", "ema_warmup", "amp", "channels_last", "compile_", "deterministic",
          "sync_bn",
          "nproc")

PAPER_SEEDS = (1111, 1234, 4321)
# What a preset fixes: the recipe of its runs (its own settings, dyn train's defaults for the
# rest). How to run them (device, precision, checkpoints, processes) stays the user's.
PRESET_FIXES = ("schedule", "decays", "lr", "epochs", "batch_size", "momentum", "weight_decay", "warmup_iters",
                "milestones", "gamma", "seed", "model", "dataset", "val_size", "ema_warmup")


def preset_runs(name: str) -> list[dict]:
    """The runs of a paper table, as TrainConfig fields that differ from dyn train's defaults."""
    if name == "table1":  # 5 schedules x 3 seeds, all five decays in each run
        return [dict(schedule=s, seed=seed, decays=PAPER_DECAYS) for s in SCHEDULES for seed in PAPER_SEEDS]
    if name == "table2":  # the constant schedule's lr, one seed
        return [dict(schedule="constant", lr=lr, decays=(0.9995,), seed=1234)
                for lr in (0.01, 0.02, 0.05, 0.1, 0.2, 0.5)]
    if name == "table3":  # Appendix C: ResNet-50, 200 epochs, one trial (the paper gives no seed)
        common = dict(model="resnet50", epochs=200, decays=(0.9995,))
        return [dict(common, schedule="cosine", warmup_iters=5000),
                dict(common, schedule="constant", warmup_iters=5000),
                dict(common, schedule="multistep", milestones=(60, 120, 160), gamma=0.2)]
    raise UsageError(f"--preset: unknown preset {name!r}; choose table1, table2 or table3")


PRESETS = ("table1", "table2", "table3")


# ------------------------------------------------------------------------ the grid
def _flag(name: str) -> str:
    return "--" + name.rstrip("_").replace("_", "-")


def parse_axis(name: str, text: str) -> list:
    """The values of one axis flag: a comma list without repeats."""
    kind = AXES[name][1]
    if kind is float:
        values = list(parse_floats(text, _flag(name)))
    elif kind is int:
        values = list(parse_ints(text, _flag(name)))
    else:
        values = [v for v in text.replace(" ", "").split(",") if v]
    if not values:
        raise UsageError(f"{_flag(name)}: give at least one value")
    for i, v in enumerate(values):
        if v in values[:i]:
            raise UsageError(f"{_flag(name)}: {v} is given twice")
    return values


def expand(params: dict, given: set[str], preset: str | None) -> list[TrainConfig]:
    """Every run of the grid (or preset) that the parsed sweep options describe, validated.

    params: the sweep's parsed options (click names); given: the ones set on the command line.
    """
    base = config_from_params({k: params[k] for k in SHARED}).to_dict()
    axes = {k: parse_axis(k, params[k]) for k in AXES}
    if preset is None:
        runs = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
        fields = [{**base, **{AXES[k][0]: v for k, v in run.items()}} for run in runs]
    else:
        recipe = {k: v for k, v in TrainConfig().to_dict().items() if k in PRESET_FIXES}
        fields = [{**base, **recipe, **run} for run in preset_runs(preset)]
        base_given = {_FIELD.get(k, k) for k in given if k in SHARED}
        _check_preset(preset, fields, base, base_given, {k: v for k, v in axes.items() if k in given})
    configs = [TrainConfig.from_dict(f).validate() for f in fields]
    _check_names(configs)
    return configs


_FIELD = {"decay": "decays", "compile_": "compile"}  # option name -> TrainConfig field, where they differ


def _check_preset(preset, fields, base, base_given, axes_given) -> None:
    """A preset fixes the recipe of its runs: flags may repeat its values, not change them."""
    for name, values in axes_given.items():
        key = AXES[name][0]
        theirs = sorted({f[key] for f in fields}, key=str)
        if sorted(set(values), key=str) != theirs:
            raise UsageError(f"{_flag(name)}: contradicts --preset {preset}, whose runs have "
                             f"{','.join(map(str, theirs))}")
    for key in base_given & set(PRESET_FIXES):
        theirs = {comparable(f[key]) for f in fields}
        if theirs != {comparable(base[key])}:
            shown = " / ".join(_show(v) for v in sorted(theirs, key=str))
            raise UsageError(f"{flag(key)}: contradicts --preset {preset}, whose runs have {shown}")


def comparable(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


def _show(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _check_names(configs: list[TrainConfig]) -> None:
    """Two runs of one name would share a file: e.g. learning rates equal to 6 digits."""
    seen = {}
    for cfg in configs:
        name = cfg.run_name()
        if name in seen:
            other = seen[name]
            key = next(k for k in AXES if getattr(cfg, k) != getattr(other, k))
            raise UsageError(f"{_flag(key)}: {getattr(other, key)} and {getattr(cfg, key)} give the same run "
                             f"name {name}")
        seen[name] = cfg


# -------------------------------------------------------------- commands for runs
def train_args(cfg: TrainConfig) -> list[str]:
    """`dyn train` arguments that parse back to `cfg`: what names a run always, the rest where it
    differs from the default."""
    default = TrainConfig()
    always = ("schedule", "decays", "lr", "epochs", "seed")
    args = []
    for key in ("model", "dataset", "schedule", "decays", "lr", "epochs", "batch_size", "momentum",
                "weight_decay", "warmup_iters", "milestones", "gamma", "seed", "val_size", "data_dir", "device",
                "checkpoint_every", "ema_warmup", "amp", "channels_last", "compile", "deterministic", "sync_bn"):
        value = getattr(cfg, key)
        if key not in always and value == getattr(default, key):
            continue
        option = flag(key)
        if isinstance(value, bool):
            args += [option] if value else []
        elif isinstance(value, tuple):
            args += [option, ",".join(repr(v) for v in value)]
        elif value is not None:
            args += [option, repr(value) if isinstance(value, float) else str(value)]
    return args
