"""`dyn sweep`: a grid of `dyn train` runs (the paper's tables), rerunnable until complete.

The grid and the presets are train/grid.py. Each run is named from its config
(TrainConfig.run_name) inside --out-dir and trained by its own `dyn train` process, so one
crashing run does not take the sweep down. Complete runs are skipped and
killed or stopped ones resumed: running the same command again completes a sweep.

Engines users already have do the scheduling: runs go one after another here, or one per
local GPU (--gpus; with --nproc N, one per group of N GPUs), or --print lists one `dyn train`
command per line for a cluster's job array (examples/slurm_array.sh).

Importing this module needs no torch: expansion, naming, --print and the status of existing
runs are plain Python; only starting runs needs PyTorch.
"""

from __future__ import annotations

import copy
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import click
from click.core import ParameterSource

from dyn.cli import TORCH_HINT
from dyn.errors import DynError, UsageError

from .cli import killed_before_first_epoch, train as train_command
from .config import MODELS, RUN_KEYS, TrainConfig, runs_dir
from .grid import PRESETS, SHARED, comparable, expand, train_args
from .ranks import torchrun_env
from .schedules import SCHEDULES


@dataclass
class Run:
    cfg: TrainConfig
    out: Path
    status: str = "new"  # new | resume | complete | diverged | busy | failed
    note: str = ""
    result: str = ""  # after running: completed | failed | stopped
    seconds: float = 0.0
    log: Path | None = None

    def argv(self, nproc: int | None) -> list[str]:
        # --resume also starts a run whose file does not exist: the same line always continues it
        return ["train", *train_args(self.cfg), *(["--nproc", str(nproc)] if nproc else []),
                "--out", str(self.out), "--resume"]


def classify(run: Run) -> None:
    """Set run.status from its file: new, complete, resumable, diverged, busy, or failed (why)."""
    if not run.out.exists():
        run.status = "new"
        return
    from dyn import open_run

    try:
        with open_run(run.out) as f:
            state, stored, diverged_at = f.state, f.config, f.diverged_epoch
            resumable = f.resumable or killed_before_first_epoch(f)  # the latter starts again
    except DynError as e:
        run.status, run.note = "failed", str(e)
        return
    mine = run.cfg.to_dict()
    differ = [k for k in RUN_KEYS if k in stored and comparable(stored[k]) != comparable(mine[k])]
    if differ:
        k = differ[0]
        run.status, run.note = "failed", (f"{run.out} holds a run with {k}={stored[k]}, this sweep's has "
                                          f"{mine[k]}; move it away or choose another --out-dir")
    elif state == "complete":
        run.status = "complete"
    elif state == "diverged":
        run.status, run.note = "diverged", f"diverged at epoch {diverged_at}"
    elif state == "running":
        run.status, run.note = "busy", "being written by another live process"
    elif resumable:
        run.status = "resume"
    else:
        run.status, run.note = "failed", f"{run.out} is {state} and holds no resume state"


# --------------------------------------------------------------------- running
def gpu_slots(gpus: str, nproc: int | None) -> list[dict[str, str]]:
    """One environment per parallel run: CUDA_VISIBLE_DEVICES naming its group of GPUs.

    Indices count the GPUs this process sees (within its own CUDA_VISIBLE_DEVICES, if set)."""
    try:
        wanted = [int(g) for g in gpus.replace(" ", "").split(",") if g]
    except ValueError:
        raise UsageError(f"--gpus: expected GPU indices separated by commas, got {gpus!r}") from None
    if not wanted:
        raise UsageError("--gpus: give at least one GPU index")
    for i, g in enumerate(wanted):
        if g in wanted[:i]:
            raise UsageError(f"--gpus: GPU {g} is given twice")
    try:
        import torch
    except ModuleNotFoundError:
        raise DynError(f"dyn sweep --gpus {TORCH_HINT}", exit_code=2) from None
    count = torch.cuda.device_count()
    for g in wanted:
        if not 0 <= g < count:
            raise UsageError(f"--gpus: GPU {g} does not exist (this machine shows {count} CUDA devices)")
    per_run = nproc or 1
    if len(wanted) % per_run:
        raise UsageError(f"--gpus: {len(wanted)} GPUs do not split into runs of --nproc {per_run}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = visible.split(",") if visible else [str(i) for i in range(count)]
    return [{"CUDA_VISIBLE_DEVICES": ",".join(names[g] for g in wanted[i:i + per_run])}
            for i in range(0, len(wanted), per_run)]


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the sweep dies, even by SIGKILL (Linux), so a run stops
    cleanly (resumable) instead of training on as an orphan."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class Runner:
    """Runs `dyn train` processes, at most one per slot at a time, in the order given.

    One process, no threads: a poll loop starts the next run as a slot frees up. With several
    slots each run's output goes to a log beside its file; with one it goes to this terminal.
    A signal to the sweep goes to its runs (they stop cleanly) and no further run starts."""

    def __init__(self, slots: list[dict[str, str]], *, nproc: int | None = None, echo=None, command=None):
        self.slots, self.nproc = slots, nproc
        self.echo = echo or (lambda text: click.echo(text, err=True))
        # run -> argv of its process: `dyn train` in this interpreter unless given
        self.command = command or (lambda run: [sys.executable, "-m", "dyn", *run.argv(self.nproc)])
        self.signum = 0

    def run(self, runs: list[Run]) -> None:
        pending = deque(runs)
        live: dict[int, tuple[Run, subprocess.Popen, float, object]] = {}
        total, started = len(runs), 0

        def on_signal(signum, frame):
            self.signum = signum
            for _, p, _, _ in live.values():
                if p.poll() is None:
                    p.send_signal(signum)

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            while live or (pending and not self.signum):
                for slot, env in enumerate(self.slots):
                    if slot in live or not pending or self.signum:
                        continue
                    run = pending.popleft()
                    started += 1
                    live[slot] = self._start(run, env, slot, f"{started}/{total}")
                for slot in list(live):
                    run, p, t0, log = live[slot]
                    if p.poll() is None:
                        continue
                    del live[slot]
                    if log is not None:
                        log.close()
                    run.seconds = time.monotonic() - t0
                    # the file has the last word: a run interrupted after it was complete is complete
                    run.result = ("completed" if p.returncode == 0 or _complete(run.out) else
                                  "stopped" if p.returncode in (130, 143) and self.signum else "failed")
                    if run.result == "failed":
                        run.note = f"exit {p.returncode}" + (f", see {run.log}" if run.log else "")
                    where = f" [{self.slots[slot]['CUDA_VISIBLE_DEVICES']}]" if len(self.slots) > 1 else ""
                    self.echo(f"dyn sweep:{where} {run.out.name}: {run.result} "
                              f"({_clock(run.seconds)}{', ' + run.note if run.note else ''})")
                if live:
                    time.sleep(0.2)
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def _start(self, run: Run, env: dict[str, str], slot: int, counter: str):
        cmd = self.command(run)
        what = "resume" if run.status == "resume" else "start"
        where = f" [GPU {env['CUDA_VISIBLE_DEVICES']}]" if env else ""
        log = None
        if len(self.slots) > 1:
            run.log = run.out.with_suffix(".log")
            log = open(run.log, "a")
        self.echo(f"dyn sweep: [{counter}]{where} {what} {run.out.name}"
                  + (f" (log: {run.log})" if run.log else ""))
        p = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=log, stderr=log,
                             preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        return run, p, time.monotonic(), log


def _complete(path: Path) -> bool:
    from dyn import open_run

    try:
        with open_run(path) as f:
            return f.state == "complete"
    except (DynError, OSError):
        return False


def _clock(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def report(runs: list[Run], echo) -> None:
    groups = {
        "completed": [r for r in runs if r.result == "completed"],
        "skipped (already complete)": [r for r in runs if r.status == "complete"],
        "diverged": [r for r in runs if r.status == "diverged"],
        "busy (another process writes it)": [r for r in runs if r.status == "busy"],
        "stopped (resumable)": [r for r in runs if r.result == "stopped"],
        "not started": [r for r in runs if r.status in ("new", "resume") and not r.result],
        "failed": [r for r in runs if r.result == "failed" or r.status == "failed"],
    }
    echo(f"dyn sweep: {len(runs)} runs")
    for what, rs in groups.items():
        if rs:
            echo(f"  {what}: {len(rs)}")
            for r in rs:
                echo(f"    {r.out}" + (f"  ({r.note})" if r.note else ""))


# ------------------------------------------------------------------------ the command
def _copied(name: str) -> click.Option:
    for p in train_command.params:
        if p.name == name:
            return copy.copy(p)
    raise LookupError(name)


@click.command(context_settings={"show_default": True})
@click.option("--preset", type=click.Choice(PRESETS), default=None,
              help="The runs of one of the paper's tables: table1 (5 schedules x 3 seeds, 15 runs), table2 "
                   "(constant schedule, 6 learning rates), table3 (Appendix C: 3 ResNet-50 runs).")
@click.option("--schedule", default="multistep", metavar="S[,S...]", help=f"Schedules: {', '.join(SCHEDULES)}.")
@click.option("--lr", default="0.1", metavar="LR[,LR...]", help="Initial learning rates.")
@click.option("--seed", default="1111", metavar="N[,N...]", help="Seeds (paper: 1111,1234,4321).")
@click.option("--model", default="resnet20", metavar="M[,M...]", help=f"Models: {', '.join(MODELS)}.")
@click.option("--dataset", default="cifar10", metavar="D[,D...]", help="Data sets: cifar10, digits, synthetic.")
@click.option("--batch-size", default="128", metavar="B[,B...]", help="Batch sizes.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder of the run files. [default: runs/<preset>, or runs/sweep]")
@click.option("--gpus", default=None, metavar="I[,I...]",
              help="Run in parallel, one run per GPU (per --nproc GPUs); each run's output goes to a .log beside it.")
@click.option("--batched", is_flag=True,
              help="Train up to --group-size runs of the same model, data set and batch size in this one process as "
                   "one stacked model (one forward/backward for all; per run its own seed, data order, lr schedule, "
                   "optimizer and EMAs; the same run files as one by one, equal to float rounding).")
@click.option("--group-size", type=int, default=15, metavar="G",
              help="With --batched: at most G runs per stacked model.")
@click.option("--print", "print_", is_flag=True,
              help="Print one `dyn train` command per run (for a cluster's job array) and write nothing.")
@click.pass_context
def sweep(ctx, preset, out_dir, gpus, print_, batched, group_size, **params):
    """Run a grid of `dyn train` runs: the product of the comma lists, all decays in each run.

    Complete runs are skipped and killed ones resumed, so the same command, run again,
    completes a sweep. Runs go one after another, one per GPU with --gpus, or
    with --batched as one stacked model in this process.

    \b
    The paper's Table 1 (15 runs), then the table:
      dyn sweep --preset table1 --data-dir data
      dyn table runs/table1/*.h5
    The same grid spelled out:
      dyn sweep --schedule multistep,step,cosine,linear,constant --seed 1111,1234,4321 \\
                --decay 0.9,0.99,0.999,0.9995,0.9997 --out-dir runs/table1
    On 4 GPUs of one machine, or as a cluster job array (examples/slurm_array.sh):
      dyn sweep --preset table1 --gpus 0,1,2,3
      dyn sweep --preset table1 --print
    All 15 runs as one stacked model in this process (one GPU):
      dyn sweep --preset table1 --batched

    Exit codes: 0 every run complete (or diverged), 1 some run failed, 2 bad flags,
    130/143 stopped by a signal (the runs stay resumable).
    """
    if torchrun_env() is not None:
        raise UsageError("RANK, WORLD_SIZE, ...: dyn sweep starts its own runs (--nproc for DDP); run it "
                         "outside torchrun")
    given = {k for k in ctx.params if ctx.get_parameter_source(k) == ParameterSource.COMMANDLINE}
    configs = expand(params, given, preset)
    nproc = params["nproc"]
    if nproc is not None and nproc < 1:
        raise UsageError(f"--nproc: must be >= 1, got {nproc}")
    if out_dir is None:
        out_dir = runs_dir() / (preset or "sweep")
    runs = [Run(cfg, out_dir / cfg.run_name()) for cfg in configs]
    if print_:
        if gpus is not None:
            raise UsageError("--gpus: not with --print, whose commands a cluster places on its own GPUs")
        for run in runs:
            click.echo(shlex.join(["dyn", *run.argv(nproc)]))
        return
    if batched or ctx.get_parameter_source("group_size") == ParameterSource.COMMANDLINE:
        _check_batched(batched, group_size, gpus, nproc, configs)
    slots = [{}]
    if gpus is not None:
        if params["device"] not in ("auto", "cuda"):
            raise UsageError(f"--gpus: contradicts --device {params['device']}: each run sees only its own GPUs")
        slots = gpu_slots(gpus, nproc)
    _check_can_train(configs)
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out-dir: {out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    for run in runs:
        classify(run)
    todo = [r for r in runs if r.status in ("new", "resume")]
    counts = {s: sum(r.status == s for r in runs) for s in ("complete", "resume", "new")}
    click.echo(f"dyn sweep: {len(runs)} runs in {out_dir}: {counts['complete']} complete, {counts['resume']} to "
               f"resume, {counts['new']} to start"
               + (f", {len(slots)} at a time" if len(slots) > 1 else ""), err=True)
    if batched:
        signum = run_batched(todo, group_size, lambda text: click.echo(text, err=True))
    else:
        runner = Runner(slots, nproc=nproc)
        runner.run(todo)
        signum = runner.signum
    report(runs, lambda text: click.echo(text, err=True))
    if signum:
        ctx.exit(128 + signum)
    if any(r.result == "failed" or r.status in ("failed", "busy") for r in runs) or any(not r.result for r in todo):
        ctx.exit(1)


def _check_batched(batched, group_size, gpus, nproc, configs) -> None:
    if not batched:
        raise UsageError("--group-size: only with --batched")
    if group_size < 1:
        raise UsageError(f"--group-size: must be >= 1, got {group_size}")
    if gpus is not None:
        raise UsageError("--batched: not with --gpus (a batched group trains in one process on one device)")
    if nproc is not None:
        raise UsageError("--batched: not with --nproc (a batched group trains in one process)")
    from .batched import check_batchable

    for cfg in configs:
        check_batchable(cfg)


def batched_groups(runs: list[Run], group_size: int) -> list[list[Run]]:
    """The runs to train, in groups of at most group_size that share model, data set and batch size."""
    from .batched import group_key

    by_key: dict[tuple, list[Run]] = {}
    for run in runs:
        by_key.setdefault(group_key(run.cfg), []).append(run)
    return [rs[i:i + group_size] for rs in by_key.values() for i in range(0, len(rs), group_size)]


def run_batched(todo: list[Run], group_size: int, echo) -> int:
    """Train `todo` group by group in this process (train/batched.py). Returns the signal that
    stopped it, or 0."""
    from .batched import BatchedGroup
    from .cli import prepare

    groups = batched_groups(todo, group_size)
    for n, group in enumerate(groups, 1):
        echo(f"dyn sweep: [group {n}/{len(groups)}] {len(group)} runs as one stacked model: "
             + ", ".join(r.out.name for r in group))
        t0 = time.monotonic()
        try:
            specs = []
            for r in group:
                cfg, out, resuming, overwrite = prepare(r.cfg, r.out, resume=True, overwrite=False,
                                                        given=r.cfg.to_dict(), world=1)
                specs.append((cfg, out, resuming, overwrite))
            g = BatchedGroup(specs, echo=echo)
            signum = g.run()
            results, diverged_at = g.result, g.diverged_at
        except (DynError, RuntimeError) as e:
            for r in group:
                r.result, r.note = "failed", (str(e).strip().splitlines() or [""])[0][:300]
            echo(f"dyn sweep: group {n}: failed: {group[0].note}")
            continue
        seconds = time.monotonic() - t0
        for r in group:
            r.seconds = seconds
            r.result = results.get(r.out, "")
            if r.result == "diverged":
                r.status, r.note = "diverged", f"diverged at epoch {diverged_at.get(r.out)}"
        if signum:
            return signum - 128
    return 0


def _check_can_train(configs: list[TrainConfig]) -> None:
    """Refuse now what every run would fail on: no torch, no CIFAR-10 where --data-dir says."""
    import importlib.util

    try:
        found = importlib.util.find_spec("torch") is not None  # found, not imported: the runs import it
    except (ImportError, ValueError):
        found = False
    if not found:
        raise DynError(f"dyn sweep {TORCH_HINT} (--print needs no torch)", exit_code=2)
    for cfg in configs:
        if cfg.dataset != "cifar10":
            continue
        from .data import CIFAR10_ARCHIVE, CIFAR10_FOLDER

        folder = Path(cfg.data_dir)
        if not (folder / CIFAR10_FOLDER).is_dir() and not (folder / CIFAR10_ARCHIVE).is_file():
            raise UsageError(f"--data-dir: CIFAR-10 not found in {folder.absolute()}: put {CIFAR10_ARCHIVE} or "
                             f"its extracted {CIFAR10_FOLDER}/ there (dyn never downloads)")


for _name in SHARED:  # dyn train's own declarations of the flags every run shares
    sweep.params.append(_copied(_name))
