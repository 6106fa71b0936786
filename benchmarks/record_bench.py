"""Recording cost per epoch: evaluating SGD + K EMA networks on val and test, and writing them.

Every network is evaluated on every sample of both splits (5,000 + 10,000 CIFAR-shaped images by
default), three ways, same model and device:
  plain    the usual way: for each network, load_state_dict into an eval model, batches of
           1,000, predictions copied to the host per batch
  loop     dyn's evaluate(stacked=False): one pass per network over batches prepared once,
           EMA networks as views (functional_call), one host transfer per split
  stacked  dyn's evaluate(stacked=True): all networks in one vmapped pass per batch
and the write of one epoch's records (bits, predictions, losses, weights, resume state) to a
run file. Both are reported as fractions of a training epoch (352 steps of batch 128 for the
45k CIFAR-10 split, timed over a few steps and scaled).
Targets (issue): on a GPU, recording overhead for K = 5 at most 60% of the plain way's; on a CPU,
no slower than plain; writing under 5% of an epoch.

The three ways compute the same networks in different orders (the stacked way by grouped
convolutions), so their logits differ in the last bits, and on CUDA fp32 convolutions run in TF32
(10-bit mantissa) by default, which makes those differences ~1e-3 relative. Where a network's two
largest logits lie closer than that (near-initial EMA networks: gaps of 1e-6), the predicted class
can flip. So predictions are compared where the plain way's top-2 gap is above --gap-tol, and the
flips are reported either way (a flip above the tolerance is a real disagreement); nothing stops
the timings. --tf32 emulate rounds every convolution's input and weight to TF32 on the CPU.

    python benchmarks/record_bench.py [--quick] [--device cpu|cuda] [--decays 5] [--scale 0.1]
                                      [--gap-tol 1e-3] [--tf32 emulate]
"""

from __future__ import annotations

import argparse
import io
from contextlib import contextmanager, nullcontext
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dyn.layout import Layout, Network, Split
from dyn.writer import RunWriter
from dyn.train.data import load_dataset, normalize
from dyn.train.ema import EMA, flatten_state
from dyn.train.evaluate import evaluate
from dyn.train.models import build_model


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device, repeat=1):
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        t = time.perf_counter()
        out = fn()
        sync(device)
        best = min(best, time.perf_counter() - t)
    return best, out


def plain(model_fn, states, splits, transform, device, gaps=None):
    """One network after another, the way most training scripts evaluate a copy. With `gaps` (a
    dict), also each sample's gap between its two largest logits, per (network, split)."""
    net = model_fn().to(device).eval()
    out = {}
    with torch.no_grad():
        for name, state in states.items():
            net.load_state_dict(state)
            for s, (x, y) in splits.items():
                preds, gap = [], []
                for i in range(0, len(y), 1000):
                    logits = net(transform(x[i:i + 1000]))
                    preds.append(logits.argmax(1).cpu())
                    F.cross_entropy(logits, y[i:i + 1000], reduction="none").cpu()
                    if gaps is not None:
                        top = logits.float().topk(2, dim=1).values
                        gap.append((top[:, 0] - top[:, 1]).cpu())
                out[name, s] = torch.cat(preds)
                if gaps is not None:
                    gaps[name, s] = torch.cat(gap).numpy()
    return out


def to_tf32(t):
    """float32 rounded to TF32's 10-bit mantissa (round to nearest even), as tensor cores read it."""
    if t.dtype != torch.float32:
        return t
    b = t.view(torch.int32)
    return ((b + 0xFFF + ((b >> 13) & 1)) & ~0x1FFF).view(torch.float32)


@contextmanager
def emulated_tf32():
    """Every F.conv2d (so every nn.Conv2d) on TF32-rounded input and weight: CUDA's default for
    fp32 convolutions, on the CPU."""
    conv2d = F.conv2d
    F.conv2d = lambda x, w, *a, **k: conv2d(to_tf32(x), to_tf32(w), *a, **k)
    try:
        yield
    finally:
        F.conv2d = conv2d


def compare(label, out, ref, gaps, tol):
    """Flips between a way's predictions and the plain way's: (all, where the gap is above tol)."""
    flips = above = n = near = 0
    largest = 0.0
    for (net, s), pred in ref.items():
        differ = out[s][net].predicted != pred.numpy()
        n += len(differ)
        near += int((gaps[net, s] <= tol).sum())
        flips += int(differ.sum())
        above += int((differ & (gaps[net, s] > tol)).sum())
        if differ.any():
            largest = max(largest, float(gaps[net, s][differ].max()))
    worst = f"; largest top-2 gap at a flip {largest:.1e}" if flips else ""
    print(f"predictions {label} vs plain: {flips} of {n:,} flipped, {above} where the top-2 gap > {tol:g}"
          f"{worst} ({'agree' if above == 0 else 'DISAGREE beyond rounding'}; {near:,} near-ties not compared)")
    return above


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny splits, for CI")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--decays", type=int, default=5, help="number of EMA networks K")
    ap.add_argument("--scale", type=float, default=1.0,
                    help="fraction of the paper's 5,000 val + 10,000 test images (e.g. 0.1 on a slow CPU)")
    ap.add_argument("--gap-tol", type=float, default=1e-3,
                    help="compare predictions where the top-2 logit gap exceeds this (default 1e-3)")
    ap.add_argument("--tf32", choices=["default", "emulate"], default="default",
                    help="emulate: round convolution inputs and weights to TF32 on the CPU, as CUDA does")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.tf32 == "emulate" and device.type != "cpu":
        ap.error("--tf32 emulate is for the CPU (CUDA rounds by itself)")
    torch.manual_seed(0)
    size = 1000 if args.quick else round(50000 * args.scale)  # 1.0: the paper's 5k val and 10k test images
    data = load_dataset("synthetic", device=device, size=size, val_size=size // 10)
    splits = {"val": (data.val_images, data.val_labels), "test": (data.test_images, data.test_labels)}
    mean, std = torch.tensor(data.mean, device=device), torch.tensor(data.std, device=device)
    transform = lambda x: normalize(x, mean, std)  # noqa: E731
    model = build_model("resnet20", 10).to(device)
    decays = [0.9, 0.99, 0.999, 0.9995, 0.9997, 0.9998, 0.9999, 0.99995][: 2 if args.quick else args.decays]
    ema = EMA(model, decays)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    batches = data.train_batches(128, seed=0)
    steps = 3 if args.quick else 10

    def stream():  # epoch after epoch: a small --scale has fewer batches than the steps taken
        while True:
            yield from batches.epoch()

    it = stream()

    def train_steps():
        for _ in range(steps):
            x, y = next(it)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update()

    train_steps()  # warm-up, and makes the networks differ
    t_steps, _ = timed(train_steps, device)
    # the paper's 45k/128 iterations, scaled with the splits so the fractions keep CIFAR-10's proportions
    epoch_steps = 352 * (1.0 if args.quick else args.scale)
    epoch_time = t_steps / steps * epoch_steps
    states_views = {"sgd": None, **{n: ema.state_dict_for(k) for k, n in enumerate(ema.names)}}
    states_copies = {"sgd": model.state_dict(), **{n: ema.state_dict_for(k) for k, n in enumerate(ema.names)}}
    n_eval = sum(len(y) for _, y in splits.values())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"record_bench: ResNet-20, SGD + {len(decays)} EMA networks, {n_eval:,} eval images per network, "
          f"{device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"training epoch ({epoch_steps:.0f} steps of 128, from {steps} timed steps): {epoch_time:.2f} s"
          + (" (the weights' write does not shrink with --scale: its fraction is overstated)" if args.scale < 1 else ""))

    repeat = 1 if device.type == "cpu" else 3
    if device.type == "cuda":
        print(f"TF32: convolutions {torch.backends.cudnn.allow_tf32}, matmul {torch.get_float32_matmul_precision()!r}")
    tf32 = emulated_tf32 if args.tf32 == "emulate" else nullcontext
    with tf32():
        t_plain, ref = timed(lambda: plain(lambda: build_model("resnet20", 10), states_copies, splits, transform,
                                           device), device, repeat)
        results, outs = {"plain": t_plain}, {}
        for label, stacked in (("loop", False), ("stacked", True)):
            t, outs[label] = timed(lambda: {s: evaluate(model, states_views, x, y, transform=transform,
                                                        stacked=stacked) for s, (x, y) in splits.items()},
                                   device, repeat)
            results[label] = t
        gaps = {}
        plain(lambda: build_model("resnet20", 10), states_copies, splits, transform, device, gaps)  # untimed
    for label, out in outs.items():
        compare(label + (" (TF32 emulated)" if args.tf32 == "emulate" else ""), out, ref, gaps, args.gap_tol)
    evals = {s: evaluate(model, states_views, x, y, transform=transform) for s, (x, y) in splits.items()}

    with tempfile.TemporaryDirectory() as d:
        nets = [Network.sgd()] + [Network.ema(dc) for dc in decays]
        layout = Layout(nets, {s: Split(labels=y.cpu().numpy(), num_classes=10) for s, (_, y) in splits.items()},
                        params=ema.table, metrics=["lr"], resume=True)
        with RunWriter.create(Path(d) / "bench.h5", layout) as w:
            def record(epoch):
                p, b = flatten_state(model, ema.table)
                weights = {"sgd": (p.cpu().numpy(), b.cpu().numpy())}
                for k, n in enumerate(ema.names):
                    weights[n] = (ema.flat_params(k).cpu().numpy(), ema.flat_buffers(k).cpu().numpy())
                buf = io.BytesIO()
                torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict()}, buf)
                w.append(epoch, metrics={"lr": 0.1}, weights=weights, resume=buf.getvalue(), evals=evals)
            record(0)
            writes = [timed(lambda e=e: record(e), device)[0] for e in range(1, 4)]
            t_write = min(writes)

    print(f"{'evaluation':<10} {'seconds':>8} {'/ epoch':>8} {'/ plain':>8}")
    for label, t in results.items():
        print(f"{label:<10} {t:>8.3f} {t / epoch_time:>7.1%} {t / t_plain:>7.2f}x")
    best = min(("loop", "stacked"), key=results.get)
    auto = "stacked" if device.type == "cuda" else "loop"
    overhead, plain_overhead = results[auto] + t_write, t_plain + t_write
    print(f"write of one epoch (fsync'd): {t_write:.3f} s = {t_write / epoch_time:.1%} of an epoch "
          f"(target < 5%: {'met' if t_write / epoch_time < 0.05 else 'NOT met'})")
    print(f"recording overhead, dyn's default here ({auto}) + write: {overhead / epoch_time:.1%} of an epoch; "
          f"plain + write: {plain_overhead / epoch_time:.1%}; ratio {overhead / plain_overhead:.2f} "
          f"(target: {'<= 0.60 on a GPU' if device.type == 'cuda' else '<= 1.00 on a CPU'}); fastest here: {best}")


if __name__ == "__main__":
    main()
