"""What the stages add to the core, found through entry points (pyproject.toml), never by name.

The core (`dyn`) must not import the training or analysis stage: the arrows point
`dyn.train -> dyn <- dyn.analyze`. The stages declare their commands (`dyn.commands`) and the
core's hooks they fill (`dyn.evaluators`) as entry points; the core loads them when asked.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points

from .errors import DynError

TORCH_HINT = "needs PyTorch, which is not installed: pip install 'dyn-ema[train]' (or torch and torchvision)"


@lru_cache(maxsize=None)
def targets(group: str) -> dict[str, str]:
    """{name: 'module:attr'} of one entry-point group (first installation wins)."""
    out: dict[str, str] = {}
    for ep in entry_points(group=group):
        out.setdefault(ep.name, ep.value)
    return out


def resolve(target: str):
    """The object named 'module:attr'."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def missing_torch(e: ModuleNotFoundError) -> bool:
    return (e.name or "").split(".")[0] in ("torch", "torchvision")


def load(group: str, name: str, what: str):
    """The object registered as `name` in `group`; `what` names the need in the one-line error."""
    target = targets(group).get(name)
    if target is None:
        raise DynError(f"{what} needs dyn's training stage, which this install lacks "
                       f"(no {group!r} entry point {name!r}): reinstall dyn-ema", exit_code=2)
    return resolve(target)
