"""A training run's configuration: the paper's defaults, validation, the run's name and default
file, and the check of a resume's flags against the config a run file stores.

Plain Python (no torch): `dyn sweep` and the CLI build and check configs without loading torch.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path

from dyn.errors import UsageError

from .schedules import SCHEDULES

PAPER_DECAYS = (0.9, 0.99, 0.999, 0.9995, 0.9997)
MODELS = ("resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet50")
DATASETS = ("cifar10", "digits", "synthetic")
# Flags that change what a run computes: `--resume` refuses them if they differ from the file's.
RUN_KEYS = ("schedule", "decays", "lr", "epochs", "batch_size", "momentum", "weight_decay", "warmup_iters",
            "milestones", "gamma", "seed", "model", "dataset", "val_size", "checkpoint_every", "ema_warmup",
            "amp", "channels_last", "sync_bn", "record_train", "record_train_every")


@dataclass
class TrainConfig:
    """Every flag of `dyn train`. Defaults are the paper's (He et al. 2016 as the authors ran it)."""

    schedule: str = "multistep"
    decays: tuple[float, ...] = PAPER_DECAYS
    lr: float = 0.1
    epochs: int = 180
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 0
    milestones: tuple[int, ...] = (90, 135)
    gamma: float | None = None  # 0.1 for multistep, 0.97 for step
    seed: int = 1111
    model: str = "resnet20"
    dataset: str = "cifar10"
    data_dir: str = "data"
    val_size: int | None = None  # 5,000 for CIFAR-10, 360 for digits
    device: str = "auto"
    checkpoint_every: int = 1
    ema_warmup: bool = False
    amp: str = "none"  # none | bf16
    channels_last: bool = False
    sync_bn: bool = False  # SyncBatchNorm across the processes of a torchrun job
    compile: bool = False
    deterministic: bool = False  # repeatable CUDA runs (not in RUN_KEYS: it may change on --resume)
    eval_batch_size: int = 1000
    record_train: bool = False  # train-presented: per-sample records from the training forward pass
    record_train_every: int | None = None  # the train split every K epochs (None: after the last only)
    extra: dict = field(default_factory=dict)

    def validate(self) -> "TrainConfig":
        def bad(flag, why):
            raise UsageError(f"{flag}: {why}")

        if self.schedule not in SCHEDULES:
            bad("--schedule", f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.model not in MODELS:
            bad("--model", f"unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.dataset not in DATASETS:
            bad("--dataset", f"unknown data set {self.dataset!r}; choose one of {', '.join(DATASETS)}")
        if not self.decays:
            bad("--decay", "give at least one decay")
        for d in self.decays:
            if not 0.0 < d < 1.0:
                bad("--decay", f"{d} is outside (0, 1)")
        if len(set(self.decays)) != len(self.decays):
            bad("--decay", f"decays repeat: {', '.join(map(str, self.decays))}")
        if not self.lr > 0:
            bad("--lr", f"must be > 0, got {self.lr}")
        if self.epochs < 1:
            bad("--epochs", f"must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            bad("--batch-size", f"must be >= 1, got {self.batch_size}")
        if not 0 <= self.momentum < 1:
            bad("--momentum", f"must lie in [0, 1), got {self.momentum}")
        if self.weight_decay < 0:
            bad("--weight-decay", f"must be >= 0, got {self.weight_decay}")
        if self.warmup_iters < 0:
            bad("--warmup-iters", f"must be >= 0, got {self.warmup_iters}")
        if self.checkpoint_every < 1:
            bad("--checkpoint-every", f"must be >= 1, got {self.checkpoint_every}")
        if self.record_train_every is not None and self.record_train_every < 1:
            bad("--record-train-every", f"must be >= 1, got {self.record_train_every}")
        if self.gamma is not None and not self.gamma > 0:
            bad("--gamma", f"must be > 0, got {self.gamma}")
        if list(self.milestones) != sorted(set(self.milestones)) or any(m < 1 for m in self.milestones):
            bad("--milestones", f"must be increasing positive epochs, got {','.join(map(str, self.milestones))}")
        if self.val_size is not None and self.val_size < 1:
            bad("--val-size", f"must be >= 1, got {self.val_size}")
        if self.amp not in ("none", "bf16"):
            bad("--amp", f"must be none or bf16, got {self.amp}")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad("--device", f"must be auto, cpu, cuda or cuda:N, got {self.device}")
        self.decays = tuple(float(d) for d in self.decays)
        self.milestones = tuple(int(m) for m in self.milestones)
        return self

    def run_name(self) -> str:
        """A file name built from what distinguishes runs: `resnet20-cifar10-constant-lr0.1-s1111`."""
        parts = [self.model, self.dataset, self.schedule, f"lr{self.lr:g}", f"e{self.epochs}"]
        if self.warmup_iters:
            parts.append(f"w{self.warmup_iters}")
        if self.batch_size != 128:
            parts.append(f"b{self.batch_size}")
        parts.append(f"s{self.seed}")
        return "-".join(parts) + ".h5"

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["decays"], d["milestones"] = list(self.decays), list(self.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        for k in ("decays", "milestones"):
            if k in kw:
                kw[k] = tuple(kw[k])
        return cls(**kw)


def flag(name: str) -> str:
    """The `dyn train` option that sets the TrainConfig field `name`."""
    return "--decay" if name == "decays" else "--" + name.replace("_", "-")


def runs_dir() -> Path:
    """Where run files go unless an output is given: $DYN_RUNS, else runs/."""
    return Path(os.environ.get("DYN_RUNS", "runs"))


def default_out(cfg: TrainConfig) -> Path:
    return runs_dir() / cfg.run_name()


def check_resume(cfg_given: dict, stored: dict, out: Path) -> None:
    """--resume with flags that contradict the run's stored config is refused."""
    for key, value in cfg_given.items():
        if key in RUN_KEYS and key in stored:
            a, b = value, stored[key]
            if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
                a, b = list(a or []), list(b or [])
            if a != b:
                raise UsageError(f"{flag(key)}: {value} contradicts the run being resumed ({out} has {stored[key]})")


def parse_floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise UsageError(f"{flag}: expected numbers separated by commas, got {text!r}") from None


def parse_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.replace(" ", "").split(",") if x)
    except ValueError:
        raise UsageError(f"{flag}: expected integers separated by commas, got {text!r}") from None
