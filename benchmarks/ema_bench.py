"""EMA update of K networks: dyn's fused update against the usual ways, time and operator calls.

For ResNet-20 with K = 1, 5, 10 decays, one update of all K EMA networks by:
  dyn        dyn.train.ema.EMA: K copies in one (K, P) tensor per dtype, a fixed handful of ops
  averaged   K x torch.optim.swa_utils.AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(d))
             with use_buffers=True (the whole state, as the paper)
  loop       K x a per-tensor Python loop, timm ModelEmaV2 style (mul_/add_ per tensor)
Operator calls are counted with a TorchDispatchMode (every aten op that reaches a kernel).
With --channels-last the model's 4-D weights are channels_last (as `dyn train --channels-last`).
CUDA's _foreach_copy_ is one fused kernel only where every destination has its source's strides,
else one copy kernel per tensor: the benchmark counts the (view, source) pairs whose strides differ
(on any device), and on CUDA the kernels one dyn update launches (torch.profiler).
Targets (issue): dyn's calls do not grow with K and are a handful per dtype group; its time
for K = 5 is at most half of `averaged`.

    python benchmarks/ema_bench.py [--quick] [--device cpu|cuda] [--channels-last]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torch.utils._python_dispatch import TorchDispatchMode

from dyn.train.ema import EMA
from dyn.train.models import build_model

DECAYS = [0.9, 0.99, 0.999, 0.9995, 0.9997, 0.9998, 0.99985, 0.9999, 0.99995, 0.99999]


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.count += 1
        return func(*args, **(kwargs or {}))


class Averaged:
    """K AveragedModels, each updated after the step: torch's own EMA of the whole state."""

    def __init__(self, model, decays):
        self.model = model
        self.ems = [AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d), use_buffers=True) for d in decays]

    @torch.no_grad()
    def update(self):
        for m in self.ems:
            m.update_parameters(self.model)


class Loop:
    """K copies, each updated tensor by tensor (timm ModelEmaV2): ema = d*ema + (1-d)*x."""

    def __init__(self, model, decays):
        self.model, self.decays = model, decays
        self.copies = [copy.deepcopy(model).eval() for _ in decays]

    @torch.no_grad()
    def update(self):
        live = self.model.state_dict().values()
        for d, c in zip(self.decays, self.copies):
            for e, x in zip(c.state_dict().values(), live):
                if e.dtype.is_floating_point:
                    e.mul_(d).add_(x, alpha=1 - d)
                else:
                    e.copy_(x)


def timeit(fn, device, repeat):
    for _ in range(3):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def count_ops(fn):
    with CountOps() as c:
        fn()
    return c.count


def stride_mismatches(ema):
    """(view, source) pairs of dyn's fused copy whose strides differ, and all pairs."""
    pairs = [(v, s) for g in ema._groups for v, s in zip(g.views, g.sources)]
    return sum(v.stride() != s.stride() for v, s in pairs), len(pairs)


def cuda_kernels(fn):
    """Kernels that one call of fn launches on the GPU."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    return sum(1 for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few repeats, K = 1 and 5 only (for CI)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels-last", action="store_true", help="the model's weights channels_last")
    args = ap.parse_args()
    device = torch.device(args.device)
    repeat = 5 if args.quick else 100
    ks = (1, 5) if args.quick else (1, 5, 10)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    layout = "channels_last" if args.channels_last else "contiguous"
    print(f"ema_bench: ResNet-20 ({layout}), {device} ({name}), torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    model = build_model("resnet20", 10).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, DECAYS[:5])
    bad, pairs = stride_mismatches(ema)
    print(f"dyn's fused copy ({layout}): {bad} of {pairs} (view, source) pairs with different strides "
          f"(0: one fused kernel on CUDA; else a copy kernel per tensor)")
    if device.type == "cuda":
        print(f"CUDA kernels per dyn update, K = 5 ({layout}): {cuda_kernels(ema.update)}")
    print(f"{'K':>3} {'method':<9} {'ms/update':>10} {'op calls':>9} {'time / dyn':>11}")
    results = {}
    for k in ks:
        decays = DECAYS[:k]
        methods = {"dyn": EMA(model, decays), "averaged": Averaged(model, decays), "loop": Loop(model, decays)}
        for label, m in methods.items():
            results[k, label] = (timeit(m.update, device, repeat) * 1e3, count_ops(m.update))
        for label in methods:
            ms, ops = results[k, label]
            print(f"{k:>3} {label:<9} {ms:>10.3f} {ops:>9} {ms / results[k, 'dyn'][0]:>10.1f}x")
    dyn_ops = {results[k, "dyn"][1] for k in ks}
    ratio = results[5, "dyn"][0] / results[5, "averaged"][0]
    print(f"dyn op calls for K in {list(ks)}: {sorted(dyn_ops)} (target: independent of K, a handful per dtype)")
    print(f"K=5: dyn time / AveragedModel time = {ratio:.3f} (target <= 0.5): "
          f"{'met' if ratio <= 0.5 else 'NOT met'}")


if __name__ == "__main__":
    main()
