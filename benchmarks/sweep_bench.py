"""`dyn sweep --batched` against the same runs one after another, in one process.

    python benchmarks/sweep_bench.py                          # digits, N = 1, 3, 5, 15, CPU
    python benchmarks/sweep_bench.py --dataset synthetic --device cuda --runs 1,15 --epochs 2
    python benchmarks/sweep_bench.py --quick                  # seconds: N = 1, 2, one epoch

For each N: N runs of ResNet-20 (seeds 1..N, cosine schedule, lr 0.05.., 5 EMA decays, batch 128,
every record written) trained
  separate   one after another, each a Trainer (what `dyn sweep` runs in a `dyn train` process,
             without the process start-up, which would only add to the separate side)
  batched    as one BatchedGroup (train/batched.py, what `dyn sweep --batched` runs)
and prints the epoch time of each (the whole run's wall time over its epochs: training, the
per-epoch evaluation and writes, the final evaluation) and the ratio batched / separate: below
1.0 the group is faster. `steps` times the training steps alone (no evaluation, no writes):
K steps of the N runs one by one against K steps of the group, best of 3 alternating rounds.

`--convs` also times the two ways to stack one ResNet-20 convolution for N runs (forward and
backward): vmap over a batched weight, and a grouped convolution over channel-stacked inputs.

Data: digits (1,077 / 360 / 360, 8x8) or CIFAR-shaped synthetic images (--size training images,
default 45,000 on CUDA and 4,500 on CPU). Figures are one run's: on a shared machine, repeat them.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from dyn.train.batched import BatchedGroup
from dyn.train.config import PAPER_DECAYS, TrainConfig
from dyn.train.loop import Trainer


def configs(n, args):
    return [TrainConfig(dataset=args.dataset, device=args.device, epochs=args.epochs, schedule="cosine",
                        lr=0.05 + 0.01 * i, seed=1 + i, decays=PAPER_DECAYS, val_size=args.val_size,
                        batch_size=128).validate() for i in range(n)]


def sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_runs(n, args, folder):
    cfgs = configs(n, args)
    separate = 0.0
    for i, c in enumerate(cfgs):
        t = Trainer(c, folder / f"sep-{n}-{i}.h5", progress=False)
        sync(args.device)
        t0 = time.perf_counter()
        t.run()
        sync(args.device)
        separate += time.perf_counter() - t0
    g = BatchedGroup([(c, folder / f"bat-{n}-{i}.h5", False, False) for i, c in enumerate(cfgs)],
                     echo=lambda s: None)
    sync(args.device)
    t0 = time.perf_counter()
    g.run()
    sync(args.device)
    batched = time.perf_counter() - t0
    return separate / args.epochs, batched / args.epochs


def time_steps(n, args, folder, k):
    """K training steps of N runs: one by one, then as the group (best of 3 rounds each)."""
    cfgs = configs(n, args)
    alone = [Trainer(c, folder / f"ss-{n}-{i}.h5", progress=False) for i, c in enumerate(cfgs)]
    g = BatchedGroup([(c, folder / f"sb-{n}-{i}.h5", False, False) for i, c in enumerate(cfgs)], echo=lambda s: None)
    batches = [[b for _, b in zip(range(k), t.batches.epoch())] for t in alone]
    k = min(len(bs) for bs in batches)  # an epoch may have fewer batches than asked for
    batches = [bs[:k] for bs in batches]

    def one_by_one():
        for t, bs in zip(alone, batches):
            t.model.train()
            for x, y in bs:
                loss = F.cross_entropy(t.model(x), y)
                t.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                t.optimizer.step()
                t.scheduler.step()
                t.rec.step(loss, None, y)

    def grouped():
        for t in g.trainers:
            t.model.train()
        for j in range(k):
            g._step(list(range(n)), [bs[j][0] for bs in batches], [bs[j][1] for bs in batches], None)

    # rounds alternate, so that a load that comes and goes on a shared machine hits both sides
    best = {"separate": float("inf"), "batched": float("inf")}
    one_by_one(), grouped()  # warm-up
    for _ in range(3):
        for name, fn in (("separate", one_by_one), ("batched", grouped)):
            sync(args.device)
            t0 = time.perf_counter()
            fn()
            sync(args.device)
            best[name] = min(best[name], (time.perf_counter() - t0) / k)
    for t in alone:
        t.rec.close()
    g.close()
    return best["separate"], best["batched"]


def time_convs(n, device, hw=8, c=16, batch=128, rounds=20):
    """One 3x3 conv (c -> c, hw x hw, batch) for n runs, forward + backward: vmap vs groups=n."""
    from torch.func import vmap

    x = torch.randn(n, batch, c, hw, hw, device=device)
    w = torch.randn(n, c, c, 3, 3, device=device, requires_grad=True)

    def by_vmap():
        out = vmap(lambda xi, wi: F.conv2d(xi, wi, padding=1))(x, w)
        (g,) = torch.autograd.grad(out.square().sum(), [w])
        return g

    xg = x.permute(1, 0, 2, 3, 4).reshape(batch, n * c, hw, hw)  # channel-stacked inputs

    def by_groups():
        out = F.conv2d(xg, w.reshape(n * c, c, 3, 3), padding=1, groups=n)
        (g,) = torch.autograd.grad(out.square().sum(), [w])
        return g

    res = {}
    for name, fn in (("vmap", by_vmap), ("groups", by_groups)):
        fn()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(rounds):
            fn()
        sync(device)
        res[name] = (time.perf_counter() - t0) / rounds
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits", choices=("digits", "synthetic"))
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--runs", default="1,3,5,15", help="the group sizes N, comma-separated")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--steps", type=int, default=8, help="steps timed by the steps-only comparison (0: skip it)")
    p.add_argument("--val-size", type=int, default=None)
    p.add_argument("--convs", action="store_true", help="also time vmap against grouped convolutions")
    p.add_argument("--quick", action="store_true", help="N = 1, 2, one epoch, 2 steps (a smoke test)")
    args = p.parse_args(argv)
    if args.quick:
        args.runs, args.epochs, args.steps = "1,2", 1, 2
    runs = [int(v) for v in args.runs.split(",")]
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else (platform.processor() or
                                                                                  platform.machine())
    print(f"sweep_bench: {args.dataset}, ResNet-20, batch 128, {len(PAPER_DECAYS)} EMA decays, {args.epochs} epochs, "
          f"{args.device} ({where}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    if args.convs:
        print(f"{'N':>3} {'vmap ms':>9} {'groups ms':>10}   (one 3x3 conv 16->16 on 8x8, batch 128, fwd+bwd)")
        for n in runs:
            r = time_convs(n, args.device)
            print(f"{n:>3} {r['vmap'] * 1e3:>9.2f} {r['groups'] * 1e3:>10.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.steps:
            print(f"{'N':>3} {'step separate ms':>17} {'step batched ms':>16} {'ratio':>6}   (training steps only, "
                  f"all N runs)")
            for n in runs:
                s, b = time_steps(n, args, folder, args.steps)
                print(f"{n:>3} {s * 1e3:>17.1f} {b * 1e3:>16.1f} {b / s:>6.2f}", flush=True)
        print(f"{'N':>3} {'epoch separate s':>17} {'epoch batched s':>16} {'ratio':>6}   (whole runs: training, "
              f"evaluation, writes)")
        for n in runs:
            s, b = time_runs(n, args, folder)
            print(f"{n:>3} {s:>17.2f} {b:>16.2f} {b / s:>6.2f}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
