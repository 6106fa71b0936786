"""`dyn train`: the command line of the training stage.

Importing this module needs no torch: the options are declared here and the loop (which
imports torch) loads when the command runs, so `dyn train` on an analysis-only install says
how to install torch instead of failing with a traceback.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from dyn.cli import TORCH_HINT
from dyn.errors import DynError, UsageError
from dyn.faults import test_point

from .config import DATASETS, MODELS, PAPER_DECAYS, TrainConfig, check_resume, default_out, parse_floats, parse_ints
from .schedules import SCHEDULES

# option name -> TrainConfig field, where they differ
_FIELDS = {"decay": "decays", "compile_": "compile"}
# options that say how to run, not what: not part of TrainConfig
RUN_CONTROL = ("out", "resume", "overwrite", "progress", "nproc", "extend_to")
# schedules whose lr at a step does not depend on the run's length: only these can be extended
EXTENDABLE = ("constant", "multistep", "step")


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
@click.option("--warmup-iters", type=int, default=0, help="Linear lr warm-up iterations (Appendix C: 5000); cosine and linear then run over the remaining iterations, as the authors' code did.")
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
@click.option("--record-train", is_flag=True,
              help="Per-sample training dynamics (forgetting events, data maps, AUM): from the training forward "
                   "pass SGD already makes (train mode, augmented, before the update), each example's correctness, "
                   "true-class probability and margin every epoch, as split train-presented (SGD only). No extra "
                   "forward pass: the cost is a few tensor ops per batch and 4.1 bytes per example per epoch.")
@click.option("--record-train-every", type=int, default=None, metavar="K",
              help="Evaluate every network (SGD and each EMA) on the clean training set in eval mode at epochs 0, "
                   "K, 2K, ... and the last, with true-class probability and margin (split train). Costs one "
                   "forward pass over the training set per network each time: with 5 decays, measured on CPU, "
                   "1.7-3x a training epoch, so K=5 adds a third to two thirds to the training time. "
                   "[default: once, after the last epoch]")
@click.option("--resume", is_flag=True,
              help="Continue --out from its last complete epoch (or start it if it does not exist).")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out.")
@click.option("--extend-to", type=int, default=None, metavar="N",
              help="With --resume: train a finished (or stopped) run on to epoch N, as if it had been "
                   "started with --epochs N. Only for schedules whose lr does not depend on the run's "
                   "length (constant, multistep, step): cosine and linear are laid over the whole run, so "
                   "extending would change the lr of the epochs already trained; start a new run instead. "
                   "The run keeps what it recorded at its old last epoch (the train split, the weights) "
                   "and notes it in the config's extended_from.")
@click.option("--ema-warmup", is_flag=True, help="timm's EMA warm-up min(decay, (1+t)/(10+t)); off in the paper.")
@click.option("--amp", type=click.Choice(["none", "bf16"]), default="none", help="Autocast precision (CUDA).")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (faster convolutions on CUDA).")
@click.option("--compile", "compile_", is_flag=True,
              help="torch.compile the training forward pass (compiled once; the last partial batch runs uncompiled).")
@click.option("--deterministic", is_flag=True,
              help="Repeatable CUDA runs: no cuDNN autotuning, deterministic algorithms (slower; see "
                   "docs/reproduce.md). CPU runs are repeatable without it.")
@click.option("--nproc", type=int, default=None,
              help="Train this run on N processes (one per GPU; gloo on CPU) with DistributedDataParallel: "
                   "starts torchrun --standalone --nproc-per-node N. The global batch stays --batch-size.")
@click.option("--sync-bn", is_flag=True,
              help="With several processes: BatchNorm statistics over the whole global batch (SyncBatchNorm, "
                   "CUDA only). Off: each process normalises by its shard; rank 0's running statistics are kept.")
@click.option("--progress/--no-progress", default=None, help="Progress bar. [default: on a terminal]")
@click.pass_context
def train(ctx, out, resume, overwrite, progress, nproc, extend_to, **opts):
    """Train SGD with its EMA networks and record every epoch to one HDF5 run file.

    Each epoch (and epoch 0, the initial weights) the SGD network and one EMA network per
    --decay are evaluated on the validation and test splits; per-sample correctness,
    predictions and losses, accuracies and the weights go to the run file. After the last
    epoch every network is also evaluated on the training set, clean (split train) and with one
    fixed-seed crop and flip per image as the paper's Train columns were (train-augmented).
    The EMA networks
    never feed back into training, so one run tracks them all. --record-train and
    --record-train-every add per-sample training dynamics (see their help). Defaults are the paper's:
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
    One run on 4 GPUs (DDP), or the same with torchrun itself:
      dyn train --nproc 4 --model resnet50 --epochs 200 --schedule cosine --warmup-iters 5000
      torchrun --nproc-per-node 4 -m dyn train --model resnet50 ...

    Exit codes: 0 done, 2 bad flags or data, 3 diverged (NaN/inf loss), 130 Ctrl-C, 143 SIGTERM
    (both leave a resumable file).
    """
    cfg = config_from_params(ctx.params)
    given = {_FIELDS.get(k, k): getattr(cfg, _FIELDS.get(k, k)) for k in ctx.params
             if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE and hasattr(cfg, _FIELDS.get(k, k))}
    if extend_to is not None:
        if not resume:
            raise UsageError("--extend-to needs --resume and the --out of the run to extend")
        if nproc is not None:
            raise UsageError("--extend-to: extend a run in one process (without --nproc)")
        given["extend_to"] = extend_to
    if nproc is not None:
        ctx.exit(launch(nproc, command_line(ctx, drop=("nproc",)), cfg, out, resume=resume,
                        overwrite=overwrite, given=given))
    ctx.exit(run_train(cfg, out, resume=resume, overwrite=overwrite, progress=progress, given=given))


def config_from_params(params: dict) -> TrainConfig:
    """The TrainConfig that `dyn train`'s parsed options (click's ctx.params) describe."""
    opts = {k: v for k, v in params.items() if k not in RUN_CONTROL}
    decays = tuple(d for text in opts.pop("decay") for d in parse_floats(text, "--decay")) or PAPER_DECAYS
    milestones = parse_ints(opts.pop("milestones"), "--milestones")
    return TrainConfig(decays=decays, milestones=milestones, compile=opts.pop("compile_"), **opts).validate()


def command_line(ctx: click.Context, drop=()) -> list[str]:
    """The options given on the command line, as arguments that parse back to the same values."""
    args = []
    for p in ctx.command.params:
        if p.name in drop or ctx.get_parameter_source(p.name) != ParameterSource.COMMANDLINE:
            continue
        value = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            if p.secondary_opts:
                args.append(p.opts[0] if value else p.secondary_opts[0])
            elif value:
                args.append(p.opts[0])
        elif getattr(p, "multiple", False):
            for v in value:
                args += [p.opts[0], str(v)]
        else:
            args += [p.opts[0], str(value)]
    return args


def _import_loop():
    try:
        from . import loop
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] in ("torch", "torchvision"):
            raise DynError(f"dyn train {TORCH_HINT}", exit_code=2) from None
        raise
    return loop


def run_train(cfg: TrainConfig, out: Path | None, *, resume: bool, overwrite: bool, progress=None,
              given: dict | None = None) -> int:
    """Check the output, then train. Everything that can be refused is refused before any work.

    Under torchrun every rank runs this: each makes the same checks, then they start their
    process group and wait for each other before rank 0 creates or reopens the file."""
    loop = _import_loop()
    from .distributed import Dist

    dist = Dist.from_env()
    if dist is not None and (given or {}).get("extend_to") is not None:
        raise UsageError("--extend-to: extend a run in one process (not under torchrun)")
    if dist is None:
        prepared = prepare(cfg, out, resume=resume, overwrite=overwrite, given=given, world=1)
        if prepared is None:
            return 0
        cfg, out, resuming, overwrite = prepared
        trainer = loop.Trainer(cfg, out, resume=resuming, overwrite=overwrite, progress=progress)
        trainer.ignore_signals_when_done = True
        code = trainer.run()
        test_point("train: returning")
        return code
    try:
        prepared = prepare(cfg, out, resume=resume, overwrite=overwrite, given=given, world=dist.world)
        if prepared is None:
            return 0
        cfg, out, resuming, overwrite = prepared
        device = dist.device(cfg.device)
        check_sync_bn(cfg, device)
        dist.start(device)
        try:
            dist.barrier()  # every rank has checked the output before rank 0 touches it
            trainer = loop.Trainer(cfg, out, resume=resuming, overwrite=overwrite, progress=progress, dist=dist)
            trainer.ignore_signals_when_done = True
            code = trainer.run()
        except BaseException:
            dist.close()
            raise
        # The run is done and its file closed. Leave without the process group's C++ teardown:
        # gloo's threads at exit sometimes aborted a finished rank ("terminate called without an
        # active exception", SIGABRT), turning a complete run into a failed job.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code or 0)
    except DynError as e:
        if dist.is_main or e.exit_code not in (2, 3):
            raise
        sys.exit(e.exit_code)  # bad input or divergence: every rank has it, rank 0 says it once


def prepare(cfg: TrainConfig, out: Path | None, *, resume: bool, overwrite: bool, given: dict | None,
            world: int) -> tuple[TrainConfig, Path, bool, bool] | None:
    """(config, output, whether to resume it, whether to replace it) after every check; None if
    nothing is left to do."""
    if resume and overwrite:
        raise UsageError("--resume and --overwrite: choose one")
    out = Path(out) if out is not None else default_out(cfg)
    if out.is_dir():
        raise UsageError(f"--out: {out} is a directory")
    from dyn.fs import check_writable

    try:
        check_writable(out)
    except DynError as e:
        raise UsageError(f"--out: {e}") from None
    given = dict(given or {})
    extend_to = given.pop("extend_to", None)
    if extend_to is not None and not out.exists():
        raise UsageError(f"--extend-to: {out} does not exist; start it with --epochs {extend_to}")
    if resume and out.exists():
        resumed = _resume_config(cfg, out, given, world, extend_to)
        if resumed is None:
            return None
        cfg, start_over = resumed
        return cfg, out, not start_over, start_over
    if out.exists() and not overwrite:
        raise UsageError(f"--out: {out} already exists; continue it with --resume or replace it with --overwrite")
    return cfg, out, False, overwrite


def check_sync_bn(cfg: TrainConfig, device) -> None:
    if cfg.sync_bn and device.type != "cuda":
        raise UsageError("--sync-bn: SyncBatchNorm runs on CUDA only (PyTorch has none for CPU); drop it here")


def launch(nproc: int, args: list[str], cfg: TrainConfig, out: Path | None, *, resume: bool, overwrite: bool,
           given: dict) -> int:
    """`dyn train --nproc N`: check everything here, then become torchrun running `dyn train` N times."""
    from .ranks import torchrun_env

    if torchrun_env() is not None:
        raise UsageError("--nproc: this process already runs under torchrun, which set the number of processes")
    if nproc < 1:
        raise UsageError(f"--nproc: must be >= 1, got {nproc}")
    loop = _import_loop()
    import torch

    device = loop.resolve_device(cfg.device)
    if device.type == "cuda":
        if cfg.device.startswith("cuda:") and nproc > 1:
            raise UsageError(f"--device {cfg.device}: with --nproc each process takes its own GPU; give --device cuda")
        if nproc > torch.cuda.device_count():
            raise UsageError(f"--nproc: {nproc} processes, but {torch.cuda.device_count()} GPUs are visible")
    check_sync_bn(cfg, device)
    if cfg.batch_size < nproc:
        raise UsageError(f"--batch-size: {cfg.batch_size} is smaller than --nproc {nproc}: a process would get no samples")
    if prepare(cfg, out, resume=resume, overwrite=overwrite, given=given, world=nproc) is None:
        return 0
    env = dict(os.environ)
    if device.type == "cpu" and "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))  # torchrun would set 1
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", "dyn", "train", *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, argv, env)


def killed_before_first_epoch(run) -> bool:
    """A run `dyn train` created (its config records the environment) but was killed before it
    committed epoch 0: there is nothing to keep, so `--resume` starts it again."""
    return run.state in ("interrupted", "stopped") and run.rows("metrics") == 0 and "environment" in run.config


def _resume_config(cfg, out, given, world=1, extend_to=None):
    """(the stored config with the given flags checked against it, whether to start the run over);
    None if nothing is left to do."""
    from dyn import open_run
    from dyn.writer import RunWriter

    RunWriter.repair(out)  # a run stopped by a failed write can be short of HDF5's end address
    with open_run(out) as run:
        state, stored = run.state, run.config
        diverged_epoch = run.diverged_epoch
        resumable = run.resume_state() is not None
        restart = killed_before_first_epoch(run)
        last = int(run.metrics()["epoch"].iloc[-1]) if run.rows("metrics") else None
    if extend_to is not None and state in ("complete", "stopped", "interrupted") and resumable:
        return _extend(out, stored, given, extend_to, last, world), False
    if extend_to is not None and state == "complete":
        raise UsageError(f"--extend-to: {out} holds no resume state (not written by dyn train?)")
    if state == "complete":
        _check_finished(given, stored, out)  # contradicting flags: refused as for a stopped run
        click.echo(f"{out}: already complete, nothing to resume", err=True)
        return None
    if state == "running":
        raise UsageError(f"--resume: {out} is being written by another live process")
    if state == "diverged":
        raise DynError(f"--resume: {out} diverged at epoch {diverged_epoch}; start a new run", exit_code=2)
    keep = {k: v for k, v in given.items()
            if k in ("device", "data_dir", "eval_batch_size", "compile", "deterministic")}
    if not resumable and restart:
        check_resume(given, stored, out)
        click.echo(f"{out}: {state} before its first epoch was recorded; starting it again", err=True)
        return TrainConfig.from_dict({**stored, **keep}).validate(), True
    if not resumable:
        raise UsageError(f"--resume: {out} holds no resume state (not written by dyn train?)")
    if extend_to is not None:
        raise UsageError(f"--extend-to: {out} is {state}; only a complete or stopped run can be extended")
    check_resume(given, stored, out)
    trained_on = _trained_by(stored)
    if trained_on != world:
        raise UsageError(f"--nproc: {out} was trained by {trained_on} process(es), this is {world}; resume it "
                         f"with the same number (--nproc {trained_on}) to continue it exactly")
    return TrainConfig.from_dict({**stored, **keep}).validate(), False


def _trained_by(stored: dict) -> int:
    """The number of processes that trained the run whose config is `stored`."""
    return int((stored.get("environment") or {}).get("world_size", 1))


def _check_finished(given, stored, out) -> None:
    """A finished run refuses flags that contradict it, as a stopped one does; --epochs beyond
    its end says how to train it on."""
    epochs = given.get("epochs")
    if epochs is not None and epochs > int(stored.get("epochs", epochs)):
        raise UsageError(f"--epochs: {epochs} contradicts the run being resumed ({out} is complete at "
                         f"{stored['epochs']} epochs); to train it on, give --extend-to {epochs} instead")
    check_resume(given, stored, out)


def _extend(out, stored, given, extend_to: int, last, world) -> TrainConfig:
    """The stored config with epochs = extend_to, after the file is reopened for it (see
    RunWriter.extend); every other given flag must agree with the run."""
    from dyn.writer import RunWriter

    if "epochs" in given:
        raise UsageError("--epochs and --extend-to: give --extend-to N alone")
    check_resume(given, stored, out)
    schedule = stored.get("schedule")
    if schedule not in EXTENDABLE:
        raise UsageError(f"--extend-to: {out} uses the {schedule} schedule, whose lr at every step depends on "
                         f"the run's length; extending it would change the epochs already trained. Start a new run "
                         f"with --epochs {extend_to}")
    if last is None or extend_to <= max(last, int(stored.get("epochs", 0))):
        raise UsageError(f"--extend-to {extend_to}: {out} already trains to epoch "
                         f"{max(last or 0, int(stored.get('epochs', 0)))}; give a later epoch")
    trained_on = _trained_by(stored)
    if trained_on != world:
        raise UsageError(f"--extend-to: {out} was trained by {trained_on} processes; --extend-to runs one, "
                         f"which would not continue it exactly")
    keep = {k: v for k, v in given.items() if k in ("device", "data_dir", "eval_batch_size", "compile")}
    cfg = TrainConfig.from_dict({**stored, **keep, "epochs": extend_to}).validate()
    with RunWriter.resume(out, swmr=False) as w:
        w.extend(extend_to)
    click.echo(f"{out}: extending from epoch {last} to {extend_to}", err=True)
    return cfg
