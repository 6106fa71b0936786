"""Training speed of dyn's loop, and what recording every epoch costs, on this machine.

    python benchmarks/train_bench.py                 # the current device (CUDA when present)
    python benchmarks/train_bench.py --quick         # a few seconds; tests/test_benchmarks_quick.py runs it
    python benchmarks/train_bench.py --device cpu --decays 5

For each data set (and, on CUDA, each speed option) it prints:
  train img/s   dyn's training loop as train/loop.py runs it in one process: the data set held
                on the device, batches shuffled, cropped, flipped and normalised there, ResNet-20,
                SGD (momentum 0.9, wd 1e-4), the lr scheduler stepped per iteration and K EMA
                updates per step (Recorder.step); batch 128, timed over whole batches after a
                warm-up (compilation, cudnn autotuning), synchronised at both ends; the best of
                a few rounds, as other loads on a shared machine only ever slow a round down
  epoch s       one epoch of the training split at that speed
  record s      Recorder.end_epoch: SGD and the K EMA networks evaluated on val and test, and
                the epoch's records, weights and resume state written and committed (fsync);
                benchmarks/record_bench.py takes the evaluation apart
  record/epoch  that as a fraction of the epoch
and a reference loop built the usual way on the same model, optimizer, scheduler and EMA: a
torchvision CIFAR10-like dataset of PIL images, RandomCrop(32, padding=4), RandomHorizontalFlip,
ToTensor, Normalize, a DataLoader with worker processes (pinned memory on CUDA); with the ratio
dyn / reference, the speed-up of the data path alone. The reference and dyn's eager loop run
first, so the headline ratio is in before the slower settings; on CUDA the settings follow
(deterministic: `dyn train --deterministic`, its cost against eager; channels_last, bf16,
compile), each started only while --budget seconds leave room for it (a compiled setting is
assumed to take three times the longest so far), so the suite's time limit is never hit.

Data: on CPU the digits (1,077 / 360 / 360, 8x8) and CIFAR-shaped synthetic images at 1/10 of
CIFAR-10's split (4,500 / 500 / 1,000), which keeps the recording-to-training ratio of the full
split; on CUDA the full 45,000 / 5,000 / 10,000. Figures are one run's: on a shared machine,
repeat them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dyn.train.config import PAPER_DECAYS
from dyn.train.data import load_dataset, normalize
from dyn.train.loop import set_deterministic
from dyn.train.models import build_model
from dyn.train.recorder import Recorder
from dyn.train.schedules import build_scheduler

BATCH = 128
CUDA_OPTIONS = {  # name -> (channels_last, bf16, compile[, deterministic])
    "eager": (False, False, False),
    "deterministic": (False, False, False, True),
    "channels_last": (True, False, False),
    "bf16": (False, True, False),
    "compile": (False, False, True),
    "all three": (True, True, True),
}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine(device) -> None:
    print(f"machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads)")
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        print(f"device:  {p.name}, {p.total_memory / 2**30:.0f} GiB, CUDA {torch.version.cuda}")
    else:
        print("device:  cpu")


class Setup:
    """A fresh ResNet-20 with dyn's optimizer, scheduler and a Recorder with K EMA networks."""

    def __init__(self, data, decays, folder, *, channels_last=False, bf16=False, compile=False,
                 record_train=False):
        self.data, self.device = data, data.train_images.device
        self.record_train = record_train  # dyn train --record-train (benchmarks/train_dynamics_bench.py)
        torch.manual_seed(0)
        self.model = build_model("resnet20", data.num_classes, in_channels=data.image_shape[0]).to(self.device)
        self.channels_last = channels_last
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.forward = torch.compile(self.model) if compile else self.model
        self.autocast = torch.autocast(self.device.type, dtype=torch.bfloat16) if bf16 else None
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.batches = data.train_batches(BATCH, seed=0)
        self.scheduler = build_scheduler(self.optimizer, "cosine", iters_per_epoch=len(self.batches),
                                         total_iters=180 * len(self.batches))
        mean = torch.tensor(data.mean, device=self.device)
        std = torch.tensor(data.std, device=self.device)
        splits = {"val": (data.val_images, data.val_labels), "test": (data.test_images, data.test_labels)}
        self.rec = Recorder.create(
            Path(folder) / f"bench-{time.monotonic_ns()}.h5", self.model, decays, splits,
            transform=lambda x: self.layout(normalize(x, mean, std)), optimizer=self.optimizer,
            state_fn=self.state, num_classes=data.num_classes, record_initial=False, autocast=self.autocast,
            presented=data.train_labels if record_train else None)
        self.epoch = 0

    def layout(self, x):
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def state(self):  # what dyn train adds to every epoch's resume state
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "batches": self.batches.state_dict(), "torch_rng": torch.get_rng_state()}

    def step(self, x, y, check_loss):
        """One step of train/loop.py's loop (x already augmented and normalised)."""
        with self.autocast or nullcontext():
            logits = self.forward(self.layout(x))
            loss = F.cross_entropy(logits.float(), y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.rec.step(loss, logits, y, indices=self.batches.indices if self.record_train else None)
        if check_loss:  # dyn train reads the loss every step on CPU, every 32 on CUDA (a sync)
            loss.item()

    def batch_stream(self):
        while True:  # TrainBatches continues an unfinished epoch, then starts the next
            yield from self.batches.epoch()

    def record(self) -> float:
        sync(self.device)
        t = time.perf_counter()
        self.epoch += 1
        self.rec.end_epoch(self.epoch, weights=True)
        sync(self.device)
        return time.perf_counter() - t

    def close(self):
        self.rec.close()


def time_steps(setup, batches, warmup, steps, rounds):
    """Images per second: the best of `rounds` runs of `steps` full batches, after `warmup` steps.

    The best, not the mean: on a shared machine the other loads only ever slow a round down.
    """
    check_every = 1 if setup.device.type == "cpu" else 32
    it = iter(batches)
    for i in range(warmup):
        x, y = next(it)
        setup.step(x, y, i % check_every == 0)
    best = 0.0
    for _ in range(rounds):
        sync(setup.device)
        t, images, done = time.perf_counter(), 0, 0
        while done < steps:
            x, y = next(it)
            if len(y) < BATCH:  # the epoch's last partial batch: a new shape (compile would retrace)
                continue
            setup.step(x, y, (done + 1) % check_every == 0)
            images += len(y)
            done += 1
        sync(setup.device)
        best = max(best, images / (time.perf_counter() - t))
    return best


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image through the transforms."""

    def __init__(self, images_nhwc, labels, transform):
        self.images, self.labels, self.transform = images_nhwc, labels, transform

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def reference_batches(data, workers, device):
    import torchvision.transforms as T

    transform = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                           T.Normalize(data.mean, data.std)])
    dataset = PILImages(data.images_nhwc("train"), data.train_labels.cpu().numpy(), transform)
    loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", persistent_workers=workers > 0)
    while True:
        for x, y in loader:
            yield x.to(device, non_blocking=True), y.to(device, non_blocking=True)


def row(name, ips, n_train, record_s):
    epoch_s = n_train / ips
    print(f"  {name:<34s} {ips:>11,.0f} {epoch_s:>9.2f} {record_s:>9.2f} {record_s / epoch_s:>12.1%}")


def header(title):
    print(f"\n{title}")
    print(f"  {'':<34s} {'train img/s':>11s} {'epoch s':>9s} {'record s':>9s} {'record/epoch':>12s}")


def bench(data, label, decays, folder, *, warmup, steps, rounds, options, workers=None, deadline=None):
    n_train = len(data.train_labels)
    header(f"{label}: {n_train:,} train / {len(data.val_labels):,} val / {len(data.test_labels):,} test, "
           f"batch {BATCH}, K = {len(decays)} EMA networks; best of {rounds}")
    speeds, ref, longest = {}, None, 0.0
    if workers is not None:  # the reference first: the headline ratio must not wait for compiles
        setup = Setup(data, decays, folder)
        try:
            ref = time_steps(setup, reference_batches(data, workers, setup.device), warmup, steps, rounds)
            print(f"  reference: PIL + torchvision transforms + DataLoader ({workers} workers): {ref:,.0f} img/s")
        finally:
            setup.close()
    device = data.train_images.device
    for name, (cl, bf16, comp, *det) in options.items():
        need = longest * (3 if comp else 1.5)
        if deadline is not None and name != "eager" and time.monotonic() + need > deadline:
            print(f"  dyn {name:<30s} skipped: {max(0.0, deadline - time.monotonic()):.0f} s of --budget left, "
                  f"about {need:.0f} s needed")
            continue
        t0 = time.monotonic()
        set_deterministic(bool(det and det[0]), device)
        setup = Setup(data, decays, folder, channels_last=cl, bf16=bf16, compile=comp)
        try:
            speeds[name] = time_steps(setup, setup.batch_stream(), warmup, steps, rounds)
            if setup.device.type == "cuda":
                setup.record()  # cudnn autotunes the evaluation's batch shapes on first sight
            row(f"dyn {name}", speeds[name], n_train, min(setup.record() for _ in range(rounds)))
        finally:
            setup.close()
            set_deterministic(False, device)  # as dyn train runs by default
        longest = max(longest, time.monotonic() - t0)
        if name == "eager" and ref is not None:
            print(f"  dyn / reference: {speeds['eager'] / ref:.2f}x (eager)")
        if name == "deterministic" and "eager" in speeds:
            print(f"  --deterministic costs {speeds['eager'] / speeds[name] - 1:+.1%} time per training step")
    return speeds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds: tiny splits, a few steps (CI)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    ap.add_argument("--decays", type=int, default=5, choices=range(1, 6), metavar="K",
                    help="number of EMA networks, the paper's first K decays (default 5)")
    ap.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1),
                    help="DataLoader workers of the reference loop")
    ap.add_argument("--budget", type=float, default=None, metavar="SECONDS",
                    help="start no setting after the reference and eager that would not end within SECONDS "
                         "of the start (benchmarks/gpu_suite.sh gives its step's limit, less a margin)")
    args = ap.parse_args(argv)
    deadline = time.monotonic() + args.budget if args.budget else None
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    set_deterministic(False, device)  # as dyn train runs by default (cudnn.benchmark on CUDA)
    decays = PAPER_DECAYS[:args.decays]
    describe_machine(device)
    quick = args.quick
    with tempfile.TemporaryDirectory() as folder:
        if device.type == "cpu":
            digits = load_dataset("digits", device=device)
            bench(digits, "digits (8x8, 1 channel)", decays, folder, warmup=1 if quick else 9,
                  steps=2 if quick else 8, rounds=1 if quick else 3, options={"eager": CUDA_OPTIONS["eager"]})
            # a CPU trains ResNet-20 on 32x32 images at tens of images/s: few steps, a small split
            size = 300 if quick else 5_000
            synthetic = load_dataset("synthetic", val_size=size // 10, device=device, size=size)
            bench(synthetic, f"CIFAR-shaped synthetic, {'tiny' if quick else '1/10 of CIFAR-10'}", decays, folder,
                  warmup=1 if quick else 2, steps=1 if quick else 4, rounds=1 if quick else 3,
                  options={k: CUDA_OPTIONS[k] for k in ("eager", "deterministic")},
                  workers=min(args.workers, 2) if quick else args.workers, deadline=deadline)
        else:
            size = 5_000 if quick else 50_000
            synthetic = load_dataset("synthetic", val_size=size // 10, device=device, size=size)
            options = {"eager": CUDA_OPTIONS["eager"]} if quick else CUDA_OPTIONS
            bench(synthetic, "CIFAR-shaped synthetic" + (" (tiny)" if quick else ", CIFAR-10's split"), decays,
                  folder, warmup=5 if quick else 50, steps=20 if quick else 100, rounds=1 if quick else 3,
                  options=options,
                  workers=args.workers, deadline=deadline)


if __name__ == "__main__":
    main()
