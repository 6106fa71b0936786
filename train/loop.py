"""`dyn train`'s loop: the paper's procedure, recorded every epoch, resumable.

SGD (momentum 0.9, weight decay 1e-4 on all parameters, no nesterov) on a device-resident data
set, the lr schedule stepped every iteration, every EMA network updated after every step, and a
Recorder committing each epoch. What a resume needs beyond the recorder's model and EMA state
(optimizer momentum, scheduler clock, data order, RNG states) goes into the same commit, so a
run killed at any moment continues from its last complete epoch exactly as if never stopped.

Under torchrun (train/distributed.py) the same loop runs on every rank: each trains on its shard
of every global batch through DistributedDataParallel, with the loss scaled so that the
all-reduced gradient is the mean over the global batch, as in one process; the EMA networks,
built on the raw module, stay identical on every rank; rank 0 writes. Stopping and divergence
are decided together, so no rank is left waiting in a collective.

What is bit-identical where. On the CPU, a run is a pure function of its config: run twice, or
stopped and resumed on the CPU, it records the same bits. On CUDA, `cudnn.benchmark` (the default)
lets cuDNN pick among convolution algorithms by timing them, and some algorithms (and atomic
adds in backward passes) give results that differ in the last bits from run to run; over many
steps these grow into different weights and flips. `--deterministic` turns the autotuner off, asks
cuDNN for deterministic algorithms and sets torch.use_deterministic_algorithms (warn only, for ops
that have no deterministic kernel): then a run on one GPU model with one software stack repeats
itself, and a resume continues it bit for bit. Never bit-identical: runs on different GPU models,
driver/CUDA/cuDNN/torch versions, or CPU vs GPU; and a run resumed on another device type than it
was trained on, whose data order is then re-seeded (data.TrainBatches.load_state_dict).
Convolutions use TF32 on Ampere and newer GPUs (PyTorch's default, kept for training and
evaluation alike; `environment.tf32` in the run file records it): the recorded predictions are
those of the network as the GPU computes it, and networks whose top two logits lie within ~1e-5
(near-initial EMA networks) can predict differently from a float32 evaluation.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import os
import platform
import signal
import socket
import sys
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP

from dyn import __version__
from dyn.errors import DiskFull, DynError, UsageError

from .config import TrainConfig
from .data import DataNotFound, augmentation_note, load_dataset, normalize, training_augmentation_note
from .distributed import Dist
from .models import build_model
from .progress import NullProgress, Progress
from .ranks import check_shards, loss_scale
from .recorder import PRESENTED, Recorder
from .schedules import build_scheduler


# Buffers are kept equal by our own broadcast after each step (see distributed.py), not by DDP
# at the next forward; torch renamed the switch (the new one still syncs once, at wrapping).
_NO_FORWARD_BUFFER_SYNC = ({"forward_sync_buffers": False}
                           if "forward_sync_buffers" in inspect.signature(DDP.__init__).parameters
                           else {"broadcast_buffers": False})
AGREE_EVERY = 32  # steps between the ranks' checks for a stop signal under torchrun


class Stop(Exception):
    """A signal asked training to stop at the next clean point."""

    def __init__(self, signum: int):
        self.signum = signum


def set_deterministic(on: bool, device: torch.device) -> None:
    """--deterministic: the same results from the same run on the same CUDA device (see above).
    Off on CUDA: cuDNN autotunes (faster, not repeatable)."""
    if on and device.type == "cuda":
        # cuBLAS needs a fixed workspace to be deterministic; read when its handle is made
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.benchmark = device.type == "cuda" and not on
    torch.backends.cudnn.deterministic = on
    torch.use_deterministic_algorithms(on, warn_only=True)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"--device {name}: no CUDA device is available here")
    return torch.device(name)


def environment(device: torch.device, world_size: int = 1) -> dict:
    import h5py
    import numpy
    import torchvision

    env = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
           "numpy": numpy.__version__, "h5py": h5py.__version__, "dyn": __version__, "host": socket.gethostname(),
           "device": str(device), "threads": torch.get_num_threads(),
           "started": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
           "argv": sys.argv[1:], "world_size": world_size}
    if device.type == "cuda":
        env["device_name"] = torch.cuda.get_device_name(device)
        env["tf32"] = {"cudnn": torch.backends.cudnn.allow_tf32,
                       "matmul": torch.get_float32_matmul_precision() != "highest"}
    else:
        env["device_name"] = platform.processor() or platform.machine()
    return env


class Trainer:
    """Builds everything a run needs from its config; `run()` trains and records it."""

    ignore_signals_when_done = False  # `dyn train` sets it: SIGINT/SIGTERM ignored once complete

    def __init__(self, cfg: TrainConfig, out: Path, *, resume: bool = False, overwrite: bool = False,
                 progress: bool | None = None, dist: Dist | None = None, data=None):
        """dist: this rank of a torchrun job, its process group started (None: one process).
        data: the run's DeviceData already loaded (a batched sweep shares one copy among its runs)."""
        self.cfg, self.out, self.dist = cfg, Path(out), dist
        self.device = dist.device(cfg.device) if dist else resolve_device(cfg.device)
        set_deterministic(cfg.deterministic, self.device)
        main = dist is None or dist.is_main
        if not main:  # rank 0 first: it may unpack the CIFAR-10 archive the others then read
            dist.barrier()
        try:
            self.data = data if data is not None else load_dataset(cfg.dataset, cfg.data_dir, cfg.val_size,
                                                                   self.device)
        except DataNotFound as e:
            raise DynError(f"--data-dir: {e}", exit_code=2) from None
        except ValueError as e:  # e.g. a val size that leaves no training samples
            raise UsageError(f"--val-size: {e}") from None
        if dist and main:
            dist.barrier()
        n_train = len(self.data.train_labels)
        if cfg.batch_size > n_train:
            if cfg.val_size is not None:  # the held-out samples made the training set small: say so
                raise UsageError(f"--val-size: {cfg.val_size:,} leaves {n_train:,} training samples, fewer than "
                                 f"one batch (--batch-size {cfg.batch_size})")
            raise UsageError(f"--batch-size: {cfg.batch_size} is larger than the training set ({n_train:,} samples)")
        if dist:
            check_shards(n_train, cfg.batch_size, dist.world)

        torch.manual_seed(cfg.seed)
        channels = self.data.image_shape[0]
        self.model = build_model(cfg.model, self.data.num_classes, in_channels=channels)
        if cfg.sync_bn:  # before the optimizer and the EMA take the module's tensors
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.model = self.model.to(self.device)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = self.model
        if dist:
            self.forward = DDP(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                **_NO_FORWARD_BUFFER_SYNC)
        # the epoch's last partial batch runs uncompiled: its new shape would compile the
        # model a second time (a dynamic-shape graph) for one step an epoch
        self.forward_partial = self.forward
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                         weight_decay=cfg.weight_decay, nesterov=False)
        shard = (dist.rank, dist.world) if dist else (0, 1)
        self.batches = self.data.train_batches(cfg.batch_size, seed=cfg.seed, shard=shard)
        self.float_buffers = ([b for b in self.model.buffers() if b.is_floating_point()]
                              if dist and dist.world > 1 and not cfg.sync_bn else [])
        self.iters_per_epoch = len(self.batches)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.schedule, iters_per_epoch=self.iters_per_epoch,
            total_iters=self.iters_per_epoch * cfg.epochs, milestones=cfg.milestones, gamma=cfg.gamma,
            warmup_iters=cfg.warmup_iters)
        self.autocast = (torch.autocast(self.device.type, dtype=torch.bfloat16) if cfg.amp == "bf16" else None)
        mean = torch.tensor(self.data.mean, device=self.device)
        std = torch.tensor(self.data.std, device=self.device)
        self.transform = lambda x: self._layout(normalize(x, mean, std))
        self.progress = (Progress(cfg.epochs, self.iters_per_epoch, cfg.batch_size, enabled=progress) if main
                         else NullProgress())

        splits = {"val": (self.data.val_images, self.data.val_labels),
                  "test": (self.data.test_images, self.data.test_labels)}
        # after the last epoch, the training set twice: clean, and with one fixed crop and flip per
        # image as the paper's Train columns measured it (recipe.md)
        final = {"train": (self.data.train_images, self.data.train_labels),
                 "train-augmented": self.data.train_augmented()}
        common = dict(final_splits=final,
                      transform=self.transform, optimizer=self.optimizer, state_fn=self.state,
                      checkpoint_every=cfg.checkpoint_every, eval_batch_size=cfg.eval_batch_size,
                      ema_warmup=cfg.ema_warmup, autocast=self.autocast, dist=dist,
                      record_every={"train": cfg.record_train_every} if cfg.record_train_every else None)
        if resume:
            self.rec, self.start, saved = Recorder.resume(self.out, self.model, cfg.decays, splits,
                                                          presented=cfg.record_train or None, **common)
            self.load_state(saved)
            if self.resumed_from != self.device.type:
                self.progress.message(
                    f"{self.out} was trained on {self.resumed_from} and continues on {self.device.type}: the data "
                    f"order from epoch {self.start + 1} on is re-seeded from --seed and the epoch, so this run is no "
                    f"longer bit-identical to one trained without stopping")
        else:
            config = {**cfg.to_dict(), "environment": environment(self.device, dist.world if dist else 1),
                      "iters_per_epoch": self.iters_per_epoch, "train_size": n_train}
            # store the val images only where they are small (CIFAR-10's 5k: 15 MB)
            images = {"val": self.data.images_nhwc("val")} if len(self.data.val_labels) <= 50_000 else {}
            self.rec = Recorder.create(
                self.out, self.model, cfg.decays, splits, images=images, num_classes=self.data.num_classes,
                indices={"train": self.data.train_indices, "val": self.data.val_indices,
                         "test": self.data.test_indices, "train-augmented": self.data.train_indices,
                         PRESENTED: self.data.train_indices},
                augmentation={"train": "none", "val": "none", "test": "none",
                              "train-augmented": augmentation_note(self.data.pad),
                              PRESENTED: training_augmentation_note(self.data.pad)},
                presented=self.data.train_labels if cfg.record_train else None,
                config=config, overwrite=overwrite, **common)
            self.start = 0

    def _layout(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.cfg.channels_last else x

    # -------------------------------------------------------------- resume
    def state(self) -> dict:
        s = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
             "batches": self.batches.state_dict(), "torch_rng": torch.get_rng_state()}
        if self.device.type == "cuda":
            s["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return s

    def load_state(self, s: dict) -> None:
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.resumed_from = self.batches.load_state_dict(s["batches"], epoch=self.start)
        torch.set_rng_state(s["torch_rng"])
        if "cuda_rng" in s and self.device.type == "cuda":
            torch.cuda.set_rng_state(s["cuda_rng"], self.device)

    # ---------------------------------------------------------------- train
    def run(self) -> int:
        """Train the remaining epochs. Returns the exit code (0, or 130/143 after a signal)."""
        stop = {}

        def on_signal(signum, frame):
            stop["signum"] = signum

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        check_every = 1 if self.device.type == "cpu" else 32  # a finite-loss check syncs the GPU
        dist = self.dist
        done = False
        try:
            for epoch in range(self.start + 1, self.cfg.epochs + 1):
                self.progress.start_epoch(epoch)
                self.model.train()
                for step, (x, y) in enumerate(self.batches.epoch(), 1):
                    forward = self.forward if self.batches.global_size == self.cfg.batch_size else self.forward_partial
                    with self.autocast or nullcontext():
                        logits = forward(self._layout(x))
                        loss = F.cross_entropy(logits.float(), y)
                    self.optimizer.zero_grad(set_to_none=True)
                    self._backward(loss, len(y))
                    self.optimizer.step()
                    self.scheduler.step()
                    if self.float_buffers:
                        dist.broadcast_buffers(self.float_buffers)
                    self.rec.step(loss, logits, y, indices=self.batches.indices if self.cfg.record_train else None)
                    if dist is not None:
                        # no early break on a bad loss (ranks would part ways): the summed
                        # train loss at end_epoch marks divergence on all ranks at once
                        if self.progress.due():
                            self.progress.update(step, loss.item())
                        if step % AGREE_EVERY == 0:
                            self._agree_stop(stop)
                        continue
                    if step % check_every == 0 or self.progress.due():
                        value = loss.item()
                        if value != value or value in (float("inf"), float("-inf")):
                            break  # the recorder marks the run diverged at end_epoch
                        if self.progress.due():
                            self.progress.update(step, value)
                    if stop:
                        raise Stop(stop["signum"])
                row = self.rec.end_epoch(epoch, weights=True if epoch == self.cfg.epochs else None)
                self.progress.end_epoch(epoch, row, self.rec.networks, list(self.rec.splits))
                if dist is not None:
                    self._agree_stop(stop)
                elif stop:
                    raise Stop(stop["signum"])
            self.rec.finish()
            if dist is not None:
                self._check_replicas()
            done = True
            self.progress.message(f"done: {self.out}")
            return 0
        except Stop as s:
            last = self.rec.last_epoch
            self.rec.stop()
            name = signal.Signals(s.signum).name
            self.progress.message(f"{name}: stopped; {self.out} keeps epochs 0..{last}. "
                                  f"Continue with: {self._resume_command()}")
            return 128 + s.signum
        except DiskFull as e:  # nothing of the epoch was written: say how to go on once there is room
            self.rec.close()
            raise DiskFull(f"{e}. Continue with: {self._resume_command()}") from None
        except RuntimeError as e:
            self.rec.close()
            if dist is None:
                raise
            # typically a peer that died (torchrun then ends the job): one line, not a traceback
            first = (str(e).strip().splitlines() or [""])[0][:300]
            raise DynError(f"rank {dist.rank}: {type(e).__name__}: {first}; {self.out} keeps epochs "
                           f"0..{self.rec.last_epoch}. Continue with: {self._resume_command()}") from None
        except BaseException:
            self.rec.close()
            raise
        finally:
            # a complete run is done: a Ctrl-C on the way out changes nothing about the exit
            # (the `dyn train` command asks for this; a library caller gets its handlers back)
            keep = signal.SIG_IGN if done and self.ignore_signals_when_done else None
            for s, h in old.items():
                signal.signal(s, keep or h)

    def _backward(self, loss, n: int) -> None:
        if self.dist is not None:
            scale = loss_scale(n, self.dist.world, self.batches.global_size)
            if scale != 1.0:
                loss = loss * scale
        loss.backward()

    def _agree_stop(self, stop: dict) -> None:
        """Stop on every rank at the same step if a signal reached any of them."""
        signum = self.dist.max(stop.get("signum", 0))
        if signum:
            raise Stop(signum)

    def _check_replicas(self) -> None:
        """Every rank must end with the weights rank 0 recorded: compare digests of them all."""
        digests = self.dist.gather_objects(self.rec.weights_digest())
        if len(set(digests)) != 1:
            raise DynError(f"the {self.dist.world} processes ended with different weights "
                           f"(sha256 {', '.join(d[:12] for d in digests)}); {self.out} holds rank 0's")
        self.progress.message(f"{self.dist.world} processes hold identical weights: sha256 {digests[0]}")

    def _resume_command(self) -> str:
        nproc = f" --nproc {self.dist.world}" if self.dist is not None else ""
        return f"dyn train --resume{nproc} --out {self.out}"

