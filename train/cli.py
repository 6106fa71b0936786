"""`dyn train`: the command line of the training stage.

Importing this module needs no torch: the options are declared here and the loop (which
imports torch) loads when the command runs, so `dyn train` on an analysis-only install says
how to install torch instead of failing with a traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

import click
from click.core import ParameterSource

from dynamics.cli import TORCH_HINT
from dynamics.errors import DynError, UsageError

from .config import DATASETS, MODELS, PAPER_DECAYS, TrainConfig, parse_floats, parse_ints
from .schedules import SCHEDULES

# option name -> TrainConfig field, where they differ
_FIELDS = {"decay": "decays"}


@click.command(context_settings={"show_default": True})
@click.option("--schedule", type=click.Choice(SCHEDULES), default="multistep",
              help="Learning-rate schedule (the paper's five). multistep/step change per epoch, "
                   "cosine/linear per iteration over the whole run.")
@click.option("--decay", "decay", multiple=True, metavar="D[,D...]",
              help="EMA decay; repeat or give a comma list to track several EMA networks in one run. "
                   f"[default: the paper's {','.join(map(str, PAPER_DECAYS))}]")
@click.option("--lr", type=float, default=0.1, help="Initial (peak) learning rate.")
@click.option("--epochs", type=int, default=180, help="Epochs (passes over the training set).")
@click.option("--batch-size", type=int, default=128, help="Batch size; the last partial batch is kept.")
@click.option("--momentum", type=float, default=0.9, help="SGD momentum (not nesterov).")
@click.option("--weight-decay", type=float, default=1e-4, help="Weight decay on all parameters.")
@click.option("--warmup-iters", type=int, default=0, help="Linear lr warm-up iterations (Appendix C: 5000).")
@click.option("--milestones", default="90,135", metavar="E[,E...]",
              help="Epochs where multistep multiplies the lr by --gamma (Appendix C: 60,120,160).")
@click.option("--gamma", type=float, default=None,
              help="Multistep/step factor. [default: 0.1 for multistep, 0.97 for step]")
@click.option("--seed", type=int, default=1111, help="Seed of the initial weights and the data order (paper: 1111, 1234, 4321).")
@click.option("--model", type=click.Choice(MODELS), default="resnet20",
              help="CIFAR ResNet: 6n+2 depths with option-A shortcuts, or Appendix C's ResNet-50.")
@click.option("--dataset", type=click.Choice(DATASETS), default="cifar10",
              help="cifar10 (from --data-dir, never downloaded), digits (scikit-learn's 8x8, built in), "
                   "or synthetic (random, for benchmarks).")
@click.option("--data-dir", type=click.Path(file_okay=False), default="data",
              help="Folder with cifar-10-python.tar.gz or cifar-10-batches-py/.")
@click.option("--val-size", type=int, default=None,
              help="Validation samples held out of the training set. [default: 5000 for CIFAR-10, 360 for digits]")
@click.option("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Run file to write. [default: runs/<model>-<dataset>-<schedule>-lr<lr>-e<epochs>-s<seed>.h5]")
@click.option("--checkpoint-every", type=int, default=1, help="Record weights every k epochs (and at the last).")
@click.option("--resume", is_flag=True,
              help="Continue --out from its last complete epoch (or start it if it does not exist).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--ema-warmup", is_flag=True, help="timm's EMA warm-up min(decay, (1+t)/(10+t)); off in the paper.")
@click.option("--amp", type=click.Choice(["none", "bf16"]), default="none", help="Autocast precision (CUDA).")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (faster convolutions on CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the training forward pass.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]")
@click.pass_context
def train(ctx, decay, milestones, out, resume, overwrite, compile_, progress, **opts):
    """Train SGD with its EMA networks and record every epoch to one HDF5 run file.

    Each epoch (and epoch 0, the initial weights) the SGD network and one EMA network per
    --decay are evaluated on the validation and test splits; per-sample correctness,
    predictions and losses, accuracies and the weights go to the run file. The EMA networks
    never feed back into training, so one run tracks them all. Defaults are the paper's:
    ResNet-20 on CIFAR-10, SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128, 180
    epochs, 45k/5k split.

    \b
    The paper's headline run (constant lr, EMA decay 0.9995), on a GPU:
      dyn train --schedule constant --decay 0.9995 --data-dir data
    Five decays at once (one row of Table 1):
      dyn train --schedule constant --decay 0.9,0.99,0.999,0.9995,0.9997 --seed 1234
    A few minutes on a laptop CPU, on scikit-learn's digits:
      dyn train --dataset digits --schedule constant --lr 0.05 --epochs 60 --decay 0.9,0.99
    Continue a killed or stopped run:
      dyn train --resume --out runs/x.h5

    Exit codes: 0 done, 2 bad flags or data, 3 diverged (NaN/inf loss), 130 Ctrl-C, 143 SIGTERM
    (both leave a resumable file).
    """
    decays = tuple(d for text in decay for d in parse_floats(text, "--decay")) or PAPER_DECAYS
    cfg = TrainConfig(decays=decays, milestones=parse_ints(milestones, "--milestones"), compile=compile_,
                      **opts).validate()
    given = {_FIELDS.get(k, k): getattr(cfg, _FIELDS.get(k, k)) for k in ctx.params
             if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE and hasattr(cfg, _FIELDS.get(k, k))}
    ctx.exit(run_train(cfg, out, resume=resume, overwrite=overwrite, progress=progress, given=given))


def run_train(cfg: TrainConfig, out: Path | None, *, resume: bool, overwrite: bool, progress=None,
              given: dict | None = None) -> int:
    """Check the output, then train. Everything that can be refused is refused before any work."""
    try:
        from .loop import Trainer, check_resume, default_out
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("torch", "torchvision"):
            raise DynError(f"dyn train {TORCH_HINT}", exit_code=2) from None
        raise
    if resume and overwrite:
        raise UsageError("--resume and --overwrite: choose one")
    out = Path(out) if out is not None else default_out(cfg)
    if out.is_dir():
        raise UsageError(f"--out: {out} is a directory")
    if not out.parent.exists() and _can_create(out.parent):
        out.parent.mkdir(parents=True)
    from dynamics.writer import check_writable

    try:
        check_writable(out)
    except DynError as e:
        raise UsageError(f"--out: {e}") from None
    if resume and out.exists():
        cfg = _resume_config(cfg, out, given or {}, check_resume)
        if cfg is None:
            return 0
    elif out.exists() and not overwrite:
        raise UsageError(f"--out: {out} already exists; continue it with --resume or replace it with --overwrite")
    trainer = Trainer(cfg, out, resume=resume and out.exists(), overwrite=overwrite, progress=progress)
    return trainer.run()


def _resume_config(cfg, out, given, check_resume):
    """The stored config with the given flags checked against it; None if nothing is left to do."""
    from dynamics import open_run

    with open_run(out) as run:
        state, stored = run.state, run.config
        diverged_epoch = run.diverged_epoch
        resumable = run.resume_state() is not None
    if state == "complete":
        click.echo(f"{out}: already complete, nothing to resume", err=True)
        return None
    if state == "running":
        raise UsageError(f"--resume: {out} is being written by another live process")
    if state == "diverged":
        raise DynError(f"--resume: {out} diverged at epoch {diverged_epoch}; start a new run", exit_code=2)
    if not resumable:
        raise UsageError(f"--resume: {out} holds no resume state (not written by dyn train?)")
    check_resume(given, stored, out)
    keep = {k: v for k, v in given.items() if k in ("device", "data_dir", "eval_batch_size", "compile")}
    return TrainConfig.from_dict({**stored, **keep}).validate()


def _can_create(folder: Path) -> bool:
    parent = folder.absolute()
    while not parent.exists():
        parent = parent.parent
    return os.access(parent, os.W_OK | os.X_OK)
