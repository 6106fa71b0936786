"""Synthetic runs: deterministic run files for tests, benchmarks and demos, without training.

Each network's correctness is a Markov chain over epochs: a sample flips with a probability
that shrinks with the network's decay (EMA networks flip less, as in the paper). SGD weights
are a random walk and each EMA network is the true EMA of them, so weight differences are
meaningful. Every record is a function of (seed, epoch), so a reader of a run can be checked
against `Synthetic(...).epochs()` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .layout import Layout, Network, Param, Split


@dataclass
class Synthetic:
    epochs: int = 50  # recorded epochs 0..epochs-1
    samples: int = 1003
    splits: tuple[str, ...] = ("val", "test")
    decays: tuple[float, ...] = (0.9, 0.9995)
    weights_every: int = 5
    n_params: int = 1000
    n_buffers: int = 16
    num_classes: int = 10
    seed: int = 0
    images: bool = False
    predictions: bool = True
    flip: tuple[float, ...] = field(default=())  # per network; default from the decays

    @property
    def networks(self) -> list[Network]:
        return [Network.sgd()] + [Network.ema(d) for d in self.decays]

    def flip_probability(self) -> list[float]:
        if self.flip:
            return list(self.flip)
        return [0.2] + [0.2 * (1 - d) ** 0.3 for d in self.decays]

    def layout(self, resume: bool = False) -> Layout:
        rng = np.random.default_rng([self.seed, 1])
        splits = {}
        for s in self.splits:
            labels = rng.integers(0, self.num_classes, self.samples)
            images = rng.integers(0, 256, (self.samples, 8, 8, 1), dtype=np.uint8) if self.images else None
            splits[s] = Split(labels=labels, index=rng.permutation(self.samples * 2)[: self.samples],
                              images=images, num_classes=self.num_classes,
                              predicted=self.predictions, loss=self.predictions)
        params = None
        if self.weights_every:
            params = [Param("layer.weight", (self.n_params // 10, 10), "param"),
                      Param("layer.bias", (self.n_params - self.n_params // 10 * 10,), "param"),
                      Param("bn.running_mean", (self.n_buffers,), "buffer"),
                      Param("bn.num_batches_tracked", (), "buffer", "int64")]
        metrics = ["lr"] + [f"{n.name}/{s}/acc" for n in self.networks for s in self.splits]
        return Layout(networks=self.networks, splits=splits, params=params, metrics=metrics, resume=resume)

    def records(self) -> Iterator[tuple[int, dict]]:
        """(epoch, keyword arguments of RunWriter.append) for every epoch, in order."""
        nets = [n.name for n in self.networks]
        flip = self.flip_probability()
        lay = self.layout()
        labels = {s: lay.splits[s].labels for s in self.splits}
        rng = np.random.default_rng([self.seed, 2])
        correct = {(s, n): rng.random(self.samples) < 0.1 for s in self.splits for n in nets}
        sgd = rng.standard_normal(self.n_params).astype(np.float64)
        ema = {d: sgd.copy() for d in self.decays}
        buf = np.zeros(self.n_buffers + 1)
        for epoch in range(self.epochs):
            r = np.random.default_rng([self.seed, 3, epoch])
            evals, metrics = {}, {"lr": 0.1}
            for s in self.splits:
                evals[s] = {}
                for n, p in zip(nets, flip):
                    if epoch:
                        # drift towards right answers, flipping with the network's probability
                        c = correct[(s, n)]
                        correct[(s, n)] = np.where(r.random(self.samples) < p, r.random(self.samples) < 0.8, c)
                    c = correct[(s, n)]
                    pred = np.where(c, labels[s], (labels[s] + 1 + r.integers(0, self.num_classes - 1,
                                                                              self.samples)) % self.num_classes)
                    loss = np.where(c, 0.1, 2.0) + r.random(self.samples)
                    evals[s][n] = {"correct": c, "predicted": pred, "loss": loss}
                    metrics[f"{n}/{s}/acc"] = c.mean()
            if epoch:
                for _ in range(10):  # ten "steps" per epoch
                    sgd = sgd + 0.05 * r.standard_normal(self.n_params)
                    for d in self.decays:
                        ema[d] = d * ema[d] + (1 - d) * sgd
                buf[:-1] = buf[:-1] * 0.9 + r.random(self.n_buffers)
                buf[-1] += 10
            kw = {"metrics": metrics, "evals": evals}
            if self.weights_every and epoch % self.weights_every == 0:
                kw["weights"] = {"sgd": (sgd.astype(np.float32), buf.copy())}
                for d, n in zip(self.decays, nets[1:]):
                    kw["weights"][n] = (ema[d].astype(np.float32), buf.copy())
            yield epoch, kw

    def write(self, path, *, overwrite: bool = False, durable: bool = False, config: dict | None = None):
        """Write the whole run to `path` and mark it complete."""
        from .writer import RunWriter

        cfg = {"model": "synthetic", "dataset": "synthetic", "schedule": "constant", "lr": 0.1,
               "seed": self.seed, "decays": list(self.decays), "epochs": self.epochs - 1}
        cfg.update(config or {})
        with RunWriter.create(path, self.layout(), cfg, overwrite=overwrite, durable=durable) as w:
            for epoch, kw in self.records():
                w.append(epoch, **kw)
            w.finish()
        return path
