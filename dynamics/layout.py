"""What a run file will hold, declared before the first epoch is written.

HDF5's SWMR mode (which lets readers follow a live run) forbids creating datasets once
writing has started, so the whole layout is fixed up front: networks, evaluation splits with
their labels, the parameter table, the metrics columns.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from .format import ema_name


@dataclass
class Network:
    """One network of the run: `sgd`, an EMA (`ema-<decay>`), or anything imported."""

    name: str
    kind: str = "other"  # "sgd" | "ema" | "other"
    decay: float | None = None

    @classmethod
    def sgd(cls) -> "Network":
        return cls("sgd", "sgd")

    @classmethod
    def ema(cls, decay: float, name: str | None = None) -> "Network":
        return cls(name or ema_name(decay), "ema", float(decay))


@dataclass
class Split:
    """An evaluation split: its labels and, optionally, original indices and images."""

    labels: np.ndarray
    index: np.ndarray | None = None  # indices into the original dataset; default 0..N-1
    images: np.ndarray | None = None  # uint8 (N, H, W, C), for barcode figures
    num_classes: int | None = None
    predicted: bool = True  # record predicted classes
    loss: bool = True  # record per-sample losses
    prob: bool = False  # record the softmax probability of the true class (training dynamics)
    margin: bool = False  # record the true-class logit minus the largest other logit
    augmentation: str | None = None  # how the inputs were transformed ("none", or a description)
    source: str | None = None  # where the records come from, e.g. "training forward pass"
    networks: list[str] | None = None  # the networks with records on this split; None: all

    def __post_init__(self):
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        n = len(self.labels)
        if not n:
            raise ValueError("a split needs at least one sample")
        self.index = np.arange(n, dtype=np.int64) if self.index is None else np.asarray(self.index, np.int64)
        if self.index.shape != (n,):
            raise ValueError(f"split index has shape {self.index.shape}, labels have {n} samples")
        if self.images is not None:
            self.images = np.asarray(self.images)
            if self.images.dtype != np.uint8 or self.images.ndim != 4 or len(self.images) != n:
                raise ValueError("split images must be uint8 (N, H, W, C) with one image per label")
        if self.num_classes is None and n:
            self.num_classes = int(self.labels.max()) + 1

    @property
    def size(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Param:
    """One row of the parameter table: a tensor of the state_dict, flattened into its network's
    row of its kind at `offset`."""

    name: str
    shape: tuple[int, ...]
    kind: str  # "param" (stored in params, float32) or "buffer" (stored in buffers, float64)
    dtype: str = "float32"  # the tensor's own dtype, to rebuild the state_dict
    offset: int | None = None  # None until placed() (a Layout places its table)

    @property
    def size(self) -> int:
        return int(math.prod(self.shape))


def placed(params: list[Param]) -> list[Param]:
    """`params` with their offsets: each tensor right after the one before it of its kind."""
    ends = {"param": 0, "buffer": 0}
    out = []
    for p in params:
        if p.kind not in ends:
            raise ValueError(f"parameter {p.name!r}: kind must be 'param' or 'buffer', not {p.kind!r}")
        if p.offset not in (None, ends[p.kind]):
            raise ValueError(f"parameter {p.name!r}: offset {p.offset}, but the {p.kind}s before it end at "
                             f"{ends[p.kind]}")
        out.append(replace(p, offset=ends[p.kind]))
        ends[p.kind] += p.size
    return out


NAME_RULE = "a network or split name is not empty, holds no '/' and does not start with '.'"


def valid_name(name: str) -> bool:
    """Whether a network or split can be called `name` (it names HDF5 groups): NAME_RULE."""
    return bool(name) and "/" not in name and not name.startswith(".")


@dataclass
class Layout:
    networks: list[Network]
    splits: dict[str, Split] = field(default_factory=dict)
    params: list[Param] | None = None  # None: the run records no weights; placed() on construction
    metrics: list[str] = field(default_factory=list)  # columns besides "epoch"
    resume: bool = False  # reserve space for a training loop's resume state

    def __post_init__(self):
        names = [n.name for n in self.networks]
        if len(set(names)) != len(names):
            raise ValueError(f"network names repeat: {names}")
        for name in names + list(self.splits):
            if not valid_name(name):
                raise ValueError(f"invalid network or split name {name!r}")
        for name, split in self.splits.items():
            if split.networks is not None:
                unknown = [n for n in split.networks if n not in names]
                if unknown or not split.networks:
                    raise ValueError(f"split {name!r}: networks {list(split.networks)} are not a non-empty "
                                     f"subset of the run's {names}")
        self.metrics = [c for c in self.metrics if c != "epoch"]
        if self.params is not None:
            self.params = placed(self.params)

    @property
    def n_params(self) -> int:
        return sum(p.size for p in self.params or [] if p.kind == "param")

    @property
    def n_buffers(self) -> int:
        return sum(p.size for p in self.params or [] if p.kind == "buffer")
