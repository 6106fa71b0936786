"""Record a PyTorch Lightning fit with dyn: one callback, then `dyn analyze report`.

A LightningModule (a two-layer CNN with BatchNorm) on scikit-learn's 8x8 digits, trained by
`pl.Trainer`; dyn's RecordEMA callback keeps an EMA network per decay and records SGD and every
EMA network on val and test at epoch 0 and every epoch end, and, from the training forward pass,
each training example's correctness, probability and margin every epoch (`train-presented`, for
`dyn analyze forgetting | datamap | aum`):

    trainer = pl.Trainer(..., callbacks=[RecordEMA(out, decays, val=val, test=test,
                                                   train_labels=y_train), ckpt])

For the last, `training_step` returns the logits and the examples' positions in the training
set beside the loss (the data set yields each example's position).

Lightning's ModelCheckpoint keeps `last.ckpt` (with the callback's EMA state in it); after a
kill, `--resume` continues from it and the run file as if never stopped:

    python examples/lightning_digits.py --out runs/lightning.h5 --report report/
    python examples/lightning_digits.py --out runs/lightning.h5 --resume       # after a kill

Needs `pip install dyn-ema[train,lightning]`. About 20 s on 2 CPU cores, most of it imports.
"""

import argparse
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Sampler, TensorDataset

from dyn.train.lightning import RecordEMA


class SmallCNN(pl.LightningModule):
    def __init__(self, lr=0.05):
        super().__init__()
        self.lr = lr
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.BatchNorm2d(32), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.features(x))

    def training_step(self, batch, batch_idx):
        x, y, index = batch  # index: the examples' positions in the training set
        logits = self(x)
        return {"loss": F.cross_entropy(logits, y), "logits": logits, "index": index}  # RecordEMA(train_labels=)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9, weight_decay=1e-4)


class EpochShuffle(Sampler):
    """A shuffle that depends on the seed and the epoch only (Lightning calls set_epoch), so a
    fit resumed at an epoch boundary sees the same batches as one never stopped."""

    def __init__(self, n, seed=0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self):
        return self.n


def digits(seed=0):
    """The 1,797 digits as float (N, 1, 8, 8) in [0, 1], split 1,077 train / 360 val / 360 test."""
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    tr, va, te = perm[:1077], perm[1077:1437], perm[1437:]
    return (x[tr], y[tr]), (x[va], y[va]), (x[te], y[te])


def main(argv=None, callbacks=()):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("runs/lightning-digits.h5"), help="run file to write")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--decays", default="0.9,0.99", help="comma list: one EMA network per decay")
    p.add_argument("--accumulate", type=int, default=1, help="batches per optimizer step")
    p.add_argument("--ckpt-dir", type=Path, default=None,
                   help="Lightning's checkpoints (default: beside --out, <out>.ckpt/)")
    p.add_argument("--resume", action="store_true", help="continue from <ckpt-dir>/last.ckpt")
    p.add_argument("--report", type=Path, default=None, help="then run `dyn analyze report` into this folder")
    args = p.parse_args(argv)
    torch.set_num_threads(min(torch.get_num_threads(), 2))  # tiny model: more threads only contend
    ckpt_dir = args.ckpt_dir or args.out.with_suffix(".ckpt")

    pl.seed_everything(0, verbose=False)
    (x_train, y_train), val, test = digits()
    model = SmallCNN()
    train = DataLoader(TensorDataset(x_train, y_train, torch.arange(len(y_train))), batch_size=64,
                       sampler=EpochShuffle(len(y_train)))
    record = RecordEMA(args.out, decays=[float(d) for d in args.decays.split(",")], val=val, test=test,
                       num_classes=10, overwrite=not args.resume, train_labels=y_train)
    # every epoch end; Lightning runs ModelCheckpoint after the other callbacks, so the run file
    # commits an epoch before the checkpoint that includes it is saved
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=ckpt_dir, save_last=True, save_top_k=-1,
                                        filename="{epoch}-{step}")
    trainer = pl.Trainer(max_epochs=args.epochs, accumulate_grad_batches=args.accumulate, callbacks=[record, *callbacks, ckpt],
                         accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                         enable_model_summary=False, deterministic=True)
    trainer.fit(model, train, ckpt_path=ckpt_dir / "last.ckpt" if args.resume else None)
    print(f"wrote {args.out}\nAnalyse it:\n  dyn inspect {args.out}\n  dyn analyze report {args.out} --out-dir report/")
    if args.report:
        r = subprocess.run([sys.executable, "-m", "dyn", "analyze", "report", str(args.out),
                            "--out-dir", str(args.report)])
        return r.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
