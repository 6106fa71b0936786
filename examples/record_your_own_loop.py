"""Record your own PyTorch training loop with dyn: SGD and its EMA networks, every epoch.

Your model, your data, your loop; dyn's Recorder adds four calls to it:

    rec = Recorder.create(out, model, decays, splits, ...)   # the run file; records epoch 0
    rec.step(loss, logits, y)                                # after every optimizer step
    rec.end_epoch(epoch)                                     # at every epoch end
    rec.finish()                                             # at the very end

Each epoch end evaluates the live (SGD) network and one EMA network per decay on every split
and writes their per-sample correctness, predictions, losses, accuracies and weights to one
HDF5 run file, which `dyn inspect`, `dyn analyze` and plain h5py read.

Ctrl-C stops at the next optimizer step and keeps every finished epoch; `--resume` continues
the run exactly as if it had never stopped (the `state` function below gives the Recorder what
your loop needs beyond the weights: the optimizer's momentum and the shuffling generator).

    python examples/record_your_own_loop.py --out runs/my-loop.h5
    python examples/record_your_own_loop.py --out runs/my-loop.h5 --resume    # after Ctrl-C

About 15 s on 2 CPU cores, most of it importing torch and scikit-learn: a two-layer CNN with
BatchNorm on scikit-learn's 8x8 digits, 20 epochs of 17 steps (EMA 0.99, with a memory of about
100 steps, is still catching up at the end; EMA 0.9 rides out the dips of SGD's accuracy).
"""

import argparse
import signal
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, TensorDataset

from dyn import open_run
from dyn.train.recorder import Recorder


class SmallCNN(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, classes)

    def forward(self, x):
        return self.head(self.features(x))


def digits(seed=0):
    """The 1,797 digits as float (N, 1, 8, 8) in [0, 1], split 1,077 train / 360 val / 360 test."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, va, te = perm[:1077], perm[1077:1437], perm[1437:]
    return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/record-your-own-loop.h5"),
                   help="run file to write (replaced if it exists, unless --resume)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--decays", default="0.9,0.99", help="comma list: one EMA network per decay")
    p.add_argument("--resume", action="store_true", help="continue --out after a Ctrl-C")
    args = p.parse_args(argv)
    decays = [float(d) for d in args.decays.split(",")]
    torch.set_num_threads(min(torch.get_num_threads(), 2))  # tiny model: more threads only contend

    torch.manual_seed(0)
    (x_train, y_train), val, test = digits()
    model = SmallCNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    shuffle = torch.Generator().manual_seed(0)
    loader = DataLoader(TensorDataset(x_train, y_train), batch_size=64, shuffle=True, generator=shuffle)

    def state():
        # saved with every epoch; the Recorder itself keeps the model and the EMA networks
        return {"optimizer": opt.state_dict(), "shuffle": shuffle.get_state()}

    splits = {"val": val, "test": test}  # evaluated every epoch, in eval mode, per sample
    if args.resume:
        rec, start, saved = Recorder.resume(args.out, model, decays, splits, optimizer=opt, state_fn=state)
        opt.load_state_dict(saved["optimizer"])
        shuffle.set_state(saved["shuffle"])
        print(f"resuming {args.out} after epoch {start}")
    else:
        images = (val[0][:, 0, :, :, None] * 255).round().to(torch.uint8).numpy()  # (N, H, W, C) for figures
        rec = Recorder.create(args.out, model, decays, splits, optimizer=opt, state_fn=state,
                              images={"val": images}, num_classes=10, overwrite=True,
                              config={"example": "record_your_own_loop", "epochs": args.epochs, "lr": 0.05})
        start = 0

    # Ctrl-C asks for a stop; the loop stops at a clean point (a signal landing in the middle
    # of a write could leave the file's counters inconsistent)
    stop = []
    signal.signal(signal.SIGINT, lambda *_: stop.append(True))
    for epoch in range(start + 1, args.epochs + 1):
        model.train()
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss, logits, y)  # updates every EMA network, accumulates train loss/acc
            if stop:
                break
        if stop:
            rec.stop()  # keeps epochs 0..epoch-1; the unfinished epoch is redone on resume
            print(f"stopped; continue with: python {sys.argv[0]} --out {args.out} --resume")
            return 130
        row = rec.end_epoch(epoch)
        accs = "  ".join(f"{n} {row[f'{n}/val/acc']:.3f}" for n in rec.networks)
        print(f"epoch {epoch}/{args.epochs}  train loss {row['train_loss']:.3f}  val acc: {accs}", flush=True)
    rec.finish()

    with open_run(args.out) as run:  # what the file now holds, read back as any reader would
        bits = run.correct("val", "sgd")
        print(f"\n{args.out}: {run.networks} on {run.splits}, epochs 0..{run.epochs('val')[-1]}, "
              f"SGD val stability at the end {np.mean(bits[-1] == bits[-2]):.3f}")
    print(f"Analyse it:\n  dyn inspect {args.out}\n  dyn analyze stability {args.out} --out stability.png\n"
          f"  or in Python: dyn.open_run('{args.out}').correct('val', 'ema-0.99')  (see docs/format.md)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
