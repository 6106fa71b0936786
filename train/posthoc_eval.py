"""`dyn posthoc --evaluate`: run synthesized networks on a run's own splits.

Found by the analysis stage through the `dyn.evaluators` entry point `posthoc`
(pyproject.toml), so that stage never imports torch. The model and data set come from the
run's config (what `dyn train` recorded); the splits must be the run's own, sample for sample.
Only evaluation splits are evaluated: `train-presented` records SGD's own training passes,
which a synthesized network never made.
"""

from __future__ import annotations

import numpy as np

from dyn.errors import DynError

from .import_eval import SPLITS, Evaluator


def for_run(run, *, data_dir: str = "data", device: str = "cpu", batch_size: int = 1000) -> Evaluator:
    cfg = run.config
    if not cfg.get("model") or not cfg.get("dataset"):
        raise DynError(f"{run.path}: its config names no model and data set (not a `dyn train` run); "
                       "--evaluate cannot rebuild its networks")
    ev = Evaluator(model=cfg["model"], dataset=cfg["dataset"], data_dir=data_dir, splits=tuple(s for s in run.splits if s in SPLITS),
                   val_size=cfg.get("val_size"), batch_size=batch_size, device=device)
    for s, split in ev.splits().items():
        if not (np.array_equal(split.labels, run.labels(s)) and np.array_equal(split.index, run.dataset_index(s))):
            raise DynError(f"{run.path}: split {s!r} of the data set in {data_dir} is not the run's own "
                           "(labels or sample indices differ); --evaluate needs the run's data")
    return ev
