"""What recording train-presented costs the Lightning callback per batch (CPU by default).

    python benchmarks/callback_bench.py             # examples/lightning_digits.py's CNN, batch 64
    python benchmarks/callback_bench.py --quick     # a few seconds of timing

Times are CPU seconds of this process (time.process_time), best of rounds: on a shared machine
wall-clock figures swing with the other loads (measured: 4.6 ms wall for what takes 0.14 ms CPU).
It prints:
  per batch      the callback's own per-batch work with train_labels= (RecordingState.present:
                 shape checks, the labels gathered by index, correctness / true-class probability
                 / margin, the scatter into the epoch's device tensors), timed alone over many
                 calls on a real batch's logits, against one training step of the same batch
                 (forward, backward, SGD step, EMA update) timed the same way; the Trainer's
                 RecordingTrainer does the same work per batch, plus a dict pop
  fit            a whole Lightning fit (examples/lightning_digits.py's model and data) with
                 RecordEMA and without / with train_labels=, alternating rounds, best of each:
                 CPU seconds per batch, epoch ends included (which now also move the row to the
                 host and write it); a difference of two figures each noisier than it
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent


def example():
    spec = importlib.util.spec_from_file_location("lightning_digits", ROOT / "examples" / "lightning_digits.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def best_per_call(fn, calls, rounds):
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(calls):
            fn()
        best = min(best, (time.process_time() - t) / calls)
    return best


def per_batch(ex, batch, calls, rounds):
    from dyn.train.ema import EMA
    from dyn.train.record_ema import RecordingState
    from dyn.train.recorder import Presented

    (x, y), val, _ = ex.digits()
    model = ex.SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    ema = EMA(model, [0.9, 0.99])
    xb, yb, index = x[:batch], y[:batch], torch.arange(batch)

    def step():
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update()

    state = RecordingState("unused.h5", [0.9], {"val": val}, train_labels=y)
    # what start() sets up for present(), without creating a run file
    state._train_labels, state.presented = state.train_labels, Presented(len(y))
    logits = model(xb).detach()
    step_s = best_per_call(step, max(calls // 20, 5), rounds)
    rec_s = best_per_call(lambda: state.present(logits, index), calls, rounds)
    print(f"per batch of {batch} ({logits.shape[1]} classes, {len(y):,} examples): recording "
          f"{rec_s * 1e6:.0f} us CPU = {rec_s / step_s:.2%} of a training step ({step_s * 1e3:.2f} ms)")


def fit_seconds(ex, labels, folder, epochs):
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader, TensorDataset

    from dyn.train.lightning import RecordEMA

    pl.seed_everything(0, verbose=False)
    (x, y), val, _ = ex.digits()
    loader = DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=64, sampler=ex.EpochShuffle(len(y)))
    rec = RecordEMA(Path(folder) / "b.h5", [0.9, 0.99], val=(val[0][:64], val[1][:64]), overwrite=True,
                    train_labels=y if labels else None)
    trainer = pl.Trainer(max_epochs=epochs, callbacks=[rec], accelerator="cpu", devices=1, logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t = time.process_time()
    trainer.fit(ex.SmallCNN(), loader)
    return (time.process_time() - t) / (epochs * len(loader))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: more add their spin-waits to the CPU time on a busy machine)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__} ({torch.get_num_threads()} threads)")
    ex = example()
    per_batch(ex, 64, 200 if args.quick else 2000, 3 if args.quick else 5)
    rounds, epochs = (1, 1) if args.quick else (3, 3)
    best = {False: float("inf"), True: float("inf")}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(rounds):
            for labels in (False, True):
                best[labels] = min(best[labels], fit_seconds(ex, labels, folder, epochs))
    print(f"fit, CPU per batch (epoch ends included), best of {rounds}: {best[False] * 1e3:.2f} ms without, "
          f"{best[True] * 1e3:.2f} ms with train_labels= ({best[True] / best[False] - 1:+.1%})")


if __name__ == "__main__":
    main()
