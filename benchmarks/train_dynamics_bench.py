"""What recording per-sample training dynamics costs (dyn train --record-train, --record-train-every).

    python benchmarks/train_dynamics_bench.py                # the current device (CUDA when present)
    python benchmarks/train_dynamics_bench.py --quick        # a few seconds
    python benchmarks/train_dynamics_bench.py --device cpu --decays 5

It prints, per data set (train_bench.py's: on CPU digits and CIFAR-shaped synthetic images at 1/10
of CIFAR-10's split, on CUDA the full 45,000):
  step img/s      train_bench's training loop (ResNet-20, batch 128, K EMA updates per step),
                  without and with --record-train (correctness, true-class probability and margin
                  of every example scattered into per-epoch device tensors from the training
                  logits); rounds of the two alternate, best of each, so a shared machine's other
                  loads hit both alike
  step overhead   with / without - 1: the recording's cost during the epoch (target <= 2%); on a
                  shared machine this difference of two noisy figures swings by several percent, so
  per batch       the recording's own work per batch (per-sample values, the scatter), timed alone
                  over many calls on a real batch's logits, as a fraction of a training step
  epoch end       the once-per-epoch part: the device tensors to the host and the train-presented
                  row written and committed, as a fraction of the epoch
  every K         --record-train-every: SGD and the K EMA networks evaluated on the clean training
                  set (one forward pass per network), as a fraction of the epoch; recorded every K
                  epochs it costs that / K
and, for scale, the epoch-end part on an ImageNet-sized training set (1,281,167 examples, 1,000
classes): the transfer and the write of one epoch's row (5.1 MB), with no network.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_bench import BATCH, Setup, describe_machine, sync  # noqa: E402

from dyn.layout import Layout, Network, Split  # noqa: E402
from dyn.train.config import PAPER_DECAYS  # noqa: E402
from dyn.train.data import load_dataset  # noqa: E402
from dyn.train.loop import set_deterministic  # noqa: E402
from dyn.train.recorder import PRESENTED, Recorder  # noqa: E402
from dyn.writer import RunWriter  # noqa: E402

IMAGENET = 1_281_167


def timed_steps(setup, stream, steps) -> float:
    """Images per second over `steps` full batches (the loss read every step on CPU, as dyn train)."""
    check_every = 1 if setup.device.type == "cpu" else 32
    sync(setup.device)
    t, images, done = time.perf_counter(), 0, 0
    while done < steps:
        x, y = next(stream)
        if len(y) < BATCH:
            continue
        setup.step(x, y, (done + 1) % check_every == 0)
        images += len(y)
        done += 1
    sync(setup.device)
    return images / (time.perf_counter() - t)


def bench(data, label, decays, folder, *, warmup, steps, rounds):
    n = len(data.train_labels)
    print(f"\n{label}: {n:,} training examples, batch {BATCH}, K = {len(decays)} EMA networks; best of {rounds}")
    plain, rec = Setup(data, decays, folder), Setup(data, decays, folder, record_train=True)
    try:
        streams = {s: s.batch_stream() for s in (plain, rec)}
        for s in (plain, rec):
            timed_steps(s, streams[s], warmup)
        best = {plain: 0.0, rec: 0.0}
        for _ in range(rounds):
            for s in (plain, rec):
                best[s] = max(best[s], timed_steps(s, streams[s], steps))
        epoch_s = n / best[plain]
        print(f"  step img/s: {best[plain]:,.0f} without, {best[rec]:,.0f} with --record-train; "
              f"step overhead {best[plain] / best[rec] - 1:+.1%}  (epoch {epoch_s:.2f} s)")
        x, y = next(streams[rec])
        with torch.no_grad():
            logits = rec.model(x)
        idx = rec.batches.indices
        calls = 20 if rec.device.type == "cpu" else 200
        per_batch = []
        for _ in range(rounds):
            sync(rec.device)
            t = time.perf_counter()
            for _ in range(calls):
                rec.rec._present(logits, y, idx)
            sync(rec.device)
            per_batch.append((time.perf_counter() - t) / calls)
        step_s = len(y) / best[plain]
        print(f"  per batch of {len(y)}: the recording's own work {min(per_batch) * 1e3:.3f} ms = "
              f"{min(per_batch) / step_s:.2%} of a training step ({step_s * 1e3:.1f} ms)")
        ends = []
        for r in range(rounds):
            sync(rec.device)
            t = time.perf_counter()
            ev = rec.rec._take_presented()
            rec.rec.writer.append(1000 + r, evals={PRESENTED: {"sgd": ev}})
            ends.append(time.perf_counter() - t)
        print(f"  epoch end (to host + write train-presented): {min(ends) * 1e3:.1f} ms = "
              f"{min(ends) / epoch_s:.2%} of the epoch")
        split = {"train": (data.train_images, data.train_labels)}
        evals = []
        for _ in range(min(rounds, 2)):  # a whole pass per network: long on a CPU
            sync(rec.device)
            t = time.perf_counter()
            rec.rec._evaluate(split)
            sync(rec.device)
            evals.append(time.perf_counter() - t)
        print(f"  --record-train-every: {1 + len(decays)} networks on the clean training set: {min(evals):.2f} s = "
              f"{min(evals) / epoch_s:.0%} of the epoch each time ({min(evals) / epoch_s / 5:.0%} per epoch at K=5)")
    finally:
        plain.close()
        rec.close()


def imagenet_epoch_end(folder, device, rounds):
    """The once-per-epoch part at ImageNet's size: device tensors -> host -> one committed row."""
    n, classes = IMAGENET, 1000
    layout = Layout(networks=[Network.sgd()], splits={PRESENTED: Split(
        labels=np.zeros(n, np.int64), num_classes=classes, networks=["sgd"], predicted=False, loss=False,
        prob=True, margin=True)})
    with RunWriter.create(Path(folder) / "imagenet.h5", layout) as w:
        model = torch.nn.Linear(1, 1)
        rec = Recorder(w, model, _NoEMA(), {}, {}, transform=None, optimizer=None, state_fn=None,
                       checkpoint_every=1, eval_batch_size=1, presented=n)
        logits = torch.randn(256, classes, device=device)
        labels = torch.randint(0, classes, (256,), device=device)
        steps = 50
        sync(device)
        t = time.perf_counter()
        for i in range(steps):
            rec._present(logits, labels, torch.arange(i * 256, (i + 1) * 256, device=device))
        sync(device)
        per_batch = (time.perf_counter() - t) / steps
        times = []
        for r in range(rounds):
            rec._present(logits, labels, torch.arange(256, device=device))
            sync(device)
            t = time.perf_counter()
            w.append(r + 1, evals={PRESENTED: {"sgd": rec._take_presented()}})
            times.append(time.perf_counter() - t)
    size = (Path(folder) / "imagenet.h5").stat().st_size
    print(f"\nImageNet-sized train-presented ({n:,} examples, {classes} classes): per batch of 256, the "
          f"scatter takes {per_batch * 1e3:.2f} ms on {device.type}; per epoch, to host + write + commit "
          f"{min(times):.2f} s; file {size / 2**20:.1f} MiB after {rounds} epochs")


class _NoEMA:
    """The Recorder's EMA, absent: the ImageNet-sized case runs no network."""

    names: list = []


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few seconds: tiny splits, a few steps")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    ap.add_argument("--decays", type=int, default=5, choices=range(1, 6), metavar="K",
                    help="number of EMA networks, the paper's first K decays (default 5)")
    args = ap.parse_args(argv)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device)
    set_deterministic(False, device)
    decays = PAPER_DECAYS[:args.decays]
    describe_machine(device)
    quick = args.quick
    rounds = 1 if quick else 5
    with tempfile.TemporaryDirectory() as folder:
        if device.type == "cpu":
            bench(load_dataset("digits", device=device), "digits (8x8)", decays, folder,
                  warmup=1 if quick else 5, steps=2 if quick else 8, rounds=rounds)
            size = 300 if quick else 5_000
            bench(load_dataset("synthetic", val_size=size // 10, device=device, size=size),
                  f"CIFAR-shaped synthetic, {'tiny' if quick else '1/10 of CIFAR-10'}", decays, folder,
                  warmup=1 if quick else 2, steps=1 if quick else 3, rounds=rounds)
        else:
            size = 5_000 if quick else 50_000
            bench(load_dataset("synthetic", val_size=size // 10, device=device, size=size),
                  "CIFAR-shaped synthetic" + (" (tiny)" if quick else ", CIFAR-10's split"), decays, folder,
                  warmup=5 if quick else 50, steps=20 if quick else 100, rounds=rounds)
        imagenet_epoch_end(folder, device, 1 if quick else 3)


if __name__ == "__main__":
    main()
