"""Import another project's folder of checkpoints and draw the EMA-SGD weight difference.

    python examples/import_checkpoints.py [FOLDER]

1. Trains a tiny CNN for a few epochs of real SGD steps with torch's own EMA
   (AveragedModel + get_ema_multi_avg_fn), saving one checkpoint per epoch into FOLDER
   (default: a temporary folder) the way torchvision's reference scripts do:
   {"model", "model_ema" (module. prefix, n_averaged), "optimizer", "epoch" (0-based)}.
2. Runs `dyn import checkpoints FOLDER --out FOLDER/run.h5 --decay 0.9`.
3. Computes ||theta_EMA - theta_SGD|| / ||theta_SGD|| per epoch from the run (the paper's
   Figure 5) and draws it to FOLDER/weight_diff.png.

Step 3 uses the analysis stage's functions (dyn.analyze.measures.weight_diff, dyn.analyze.plot.weight_diff);
with its command line installed it is `dyn analyze weight-diff FOLDER/run.h5`.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

DECAY, EPOCHS, STEPS = 0.9, 6, 10


def make_checkpoints(folder: Path) -> None:
    """A small classification task (labels from a fixed random teacher), trained for real."""
    torch.manual_seed(0)
    torch.set_num_threads(1)  # a model this small runs fastest on one thread
    teacher = nn.Linear(64, 4)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, 4))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for epoch in range(EPOCHS):
        for _ in range(STEPS):
            x = torch.randn(32, 1, 8, 8)
            y = teacher(x.flatten(1)).argmax(1)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update_parameters(model)
        torch.save({"model": model.state_dict(), "model_ema": ema.state_dict(), "optimizer": opt.state_dict(),
                    "epoch": epoch}, folder / f"model_{epoch}.pth")


def dyn(*args) -> None:
    cmd = [sys.executable, "-m", "dyn", *map(str, args)]
    print("$ dyn " + " ".join(map(str, args)), flush=True)
    subprocess.run(cmd, check=True)


def weight_diff(run_path: Path, figure: Path):
    import dyn
    from dyn.analyze.plot.weight_diff import weight_diff_figure
    from dyn.analyze.measures.weight_diff import weight_difference

    ema = f"ema-{DECAY!r}"
    with dyn.open_run(run_path) as run:
        wd = weight_difference((e, p, run.params(ema, e)) for e, p in run.iter_params("sgd"))
    weight_diff_figure(figure, {f"EMA {DECAY} vs SGD": (wd.epochs, wd.relative)})
    return wd


def main(argv: list[str]) -> None:
    folder = Path(argv[0]) if argv else Path(tempfile.mkdtemp(prefix="dyn-import-"))
    folder.mkdir(parents=True, exist_ok=True)
    make_checkpoints(folder)
    run = folder / "run.h5"
    dyn("import", "checkpoints", folder, "--out", run, "--decay", DECAY, "--overwrite")
    wd = weight_diff(run, folder / "weight_diff.png")
    for e, r in zip(wd.epochs, wd.relative):
        print(f"epoch {e}: relative weight difference {r:.6f}")
    print(f"figure: {folder / 'weight_diff.png'}")


if __name__ == "__main__":
    main(sys.argv[1:])
