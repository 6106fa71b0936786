"""dyn sweep: grids and presets, --print for job arrays, bad input, and a sweep killed and rerun."""

import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dyn import open_run
from dyn.cli import main
from helpers import ROOT, run_dyn
from dyn.train.cli import config_from_params, train
from dyn.train.config import PAPER_DECAYS, TrainConfig

ENV = {"OMP_NUM_THREADS": "1"}


def dyn(capsys, *args):
    """`dyn ARGS` in this process: (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def printed(capsys, *args):
    """The runs `dyn sweep ARGS --print` lists, each parsed back by dyn train's own parser."""
    code, out, err = dyn(capsys, "sweep", *args, "--print")
    assert code == 0, err
    runs = []
    for line in out.splitlines():
        argv = shlex.split(line)
        assert argv[:2] == ["dyn", "train"] and argv[-1] == "--resume"
        ctx = train.make_context("train", argv[2:])
        runs.append((config_from_params(ctx.params), ctx.params["out"], ctx.params["nproc"]))
    return runs


def test_grid_is_the_product_of_the_lists_with_all_decays_in_each_run(capsys, tmp_path):
    runs = printed(capsys, "--schedule", "constant,cosine", "--lr", "0.05,0.2", "--seed", "1,2,3",
                   "--decay", "0.9,0.99", "--dataset", "digits", "--epochs", "7", "--out-dir", tmp_path / "g")
    assert len(runs) == 12
    assert {(c.schedule, c.lr, c.seed) for c, _, _ in runs} == {
        (s, lr, seed) for s in ("constant", "cosine") for lr in (0.05, 0.2) for seed in (1, 2, 3)}
    for cfg, out, nproc in runs:
        assert cfg.decays == (0.9, 0.99) and cfg.epochs == 7 and cfg.dataset == "digits" and nproc is None
        assert out == tmp_path / "g" / cfg.run_name()
        assert out.name == f"resnet20-digits-{cfg.schedule}-lr{cfg.lr:g}-e7-s{cfg.seed}.h5"
    assert not (tmp_path / "g").exists()  # --print writes nothing


def test_print_lines_parse_back_to_the_same_configs(capsys, tmp_path):
    args = ["--schedule", "multistep,step", "--seed", "5", "--decay", "0.999", "--decay", "0.9995",
            "--milestones", "3,6", "--gamma", "0.5", "--warmup-iters", "10", "--momentum", "0.8",
            "--weight-decay", "0.0005", "--batch-size", "64", "--val-size", "100", "--checkpoint-every", "2",
            "--ema-warmup", "--channels-last", "--amp", "bf16", "--data-dir", "elsewhere", "--nproc", "2",
            "--out-dir", tmp_path]
    runs = printed(capsys, *args)
    for (cfg, _, nproc), schedule in zip(runs, ("multistep", "step")):
        want = TrainConfig(schedule=schedule, seed=5, decays=(0.999, 0.9995), milestones=(3, 6), gamma=0.5,
                           warmup_iters=10, momentum=0.8, weight_decay=0.0005, batch_size=64, val_size=100,
                           checkpoint_every=2, ema_warmup=True, channels_last=True, amp="bf16",
                           data_dir="elsewhere")
        assert cfg.to_dict() == want.to_dict() and nproc == 2


def test_table1_preset_is_five_schedules_by_three_seeds(capsys, tmp_path):
    runs = printed(capsys, "--preset", "table1", "--data-dir", "d", "--out-dir", tmp_path)
    assert len(runs) == 15
    assert sorted((c.schedule, c.seed) for c, _, _ in runs) == sorted(
        (s, seed) for s in ("multistep", "step", "cosine", "linear", "constant") for seed in (1111, 1234, 4321))
    for cfg, _, _ in runs:  # the paper's recipe (recipe.md), all five decays in each run
        assert cfg.decays == (0.9, 0.99, 0.999, 0.9995, 0.9997) == PAPER_DECAYS
        assert (cfg.model, cfg.dataset, cfg.lr, cfg.epochs, cfg.batch_size, cfg.momentum, cfg.weight_decay) == \
            ("resnet20", "cifar10", 0.1, 180, 128, 0.9, 1e-4)
        assert cfg.milestones == (90, 135) and cfg.gamma is None and cfg.warmup_iters == 0
        assert cfg.data_dir == "d"
    # the default folder is named after the preset
    code, out, _ = dyn(capsys, "sweep", "--preset", "table1", "--print")
    assert code == 0 and all(f"--out {Path('runs') / 'table1'}/" in line for line in out.splitlines())


def test_table2_preset_is_six_learning_rates_of_the_constant_schedule(capsys, tmp_path):
    runs = printed(capsys, "--preset", "table2", "--out-dir", tmp_path)
    assert [c.lr for c, _, _ in runs] == [0.01, 0.02, 0.05, 0.1, 0.2, 0.5]
    for cfg, _, _ in runs:
        assert (cfg.schedule, cfg.decays, cfg.seed, cfg.epochs, cfg.model) == \
            ("constant", (0.9995,), 1234, 180, "resnet20")


def test_table3_preset_is_appendix_c(capsys, tmp_path):
    runs = {c.schedule: c for c, _, _ in printed(capsys, "--preset", "table3", "--out-dir", tmp_path)}
    assert sorted(runs) == ["constant", "cosine", "multistep"]
    for cfg in runs.values():
        assert (cfg.model, cfg.epochs, cfg.decays, cfg.lr) == ("resnet50", 200, (0.9995,), 0.1)
    assert runs["cosine"].warmup_iters == runs["constant"].warmup_iters == 5000
    assert (runs["multistep"].milestones, runs["multistep"].gamma, runs["multistep"].warmup_iters) == \
        ((60, 120, 160), 0.2, 0)


def test_a_preset_accepts_flags_that_repeat_it_or_say_how_to_run(capsys, tmp_path):
    runs = printed(capsys, "--preset", "table2", "--seed", "1234", "--decay", "0.9995", "--amp", "bf16",
                   "--channels-last", "--nproc", "4", "--out-dir", tmp_path)
    assert len(runs) == 6 and all(c.amp == "bf16" and c.channels_last and n == 4 for c, _, n in runs)


def test_print_needs_no_torch(tmp_path):
    r = run_dyn("sweep", "--preset", "table3", "--print", "--out-dir", tmp_path / "t",
                block=("torch", "torchvision"))
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 3 and not (tmp_path / "t").exists()


@pytest.mark.parametrize("args, message", [
    (["--schedule", "constant,constant"], "--schedule: constant is given twice"),
    (["--schedule", "constant,sometimes"], "--schedule: unknown schedule 'sometimes'"),
    (["--seed", "1,x"], "--seed: expected integers"),
    (["--lr", "0.1,0.1000001"], "--lr: 0.1 and 0.1000001 give the same run name"),
    (["--decay", "0.9,0.9"], "--decay: decays repeat"),
    (["--preset", "table1", "--schedule", "constant"], "--schedule: contradicts --preset table1"),
    (["--preset", "table1", "--epochs", "2"], "--epochs: contradicts --preset table1, whose runs have 180"),
    (["--preset", "table2", "--seed", "1111"], "--seed: contradicts --preset table2, whose runs have 1234"),
    (["--preset", "table3", "--warmup-iters", "5000"], "--warmup-iters: contradicts --preset table3"),
    (["--preset", "table3", "--dataset", "digits"], "--dataset: contradicts --preset table3"),
    (["--gpus", "0", "--dataset", "digits"], "--gpus: GPU 0 does not exist"),
    (["--gpus", "0,0", "--dataset", "digits"], "--gpus: GPU 0 is given twice"),
    (["--gpus", "0", "--print"], "--gpus: not with --print"),
    (["--gpus", "0", "--device", "cuda:1", "--dataset", "digits"], "--gpus: contradicts --device cuda:1"),
    (["--nproc", "0", "--dataset", "digits"], "--nproc: must be >= 1"),
    (["--dataset", "cifar10", "--data-dir", "nowhere"], "--data-dir: CIFAR-10 not found"),
])
def test_bad_input_is_one_line_and_starts_nothing(capsys, tmp_path, args, message):
    code, out, err = dyn(capsys, "sweep", *args, "--out-dir", tmp_path / "s")
    assert code == 2 and out == "", err
    assert err.startswith(f"dyn: error: {message}") and err.count("\n") == 1, err
    assert not (tmp_path / "s").exists()


def test_half_set_torchrun_environment_is_refused(tmp_path):
    r = run_dyn("sweep", "--dataset", "digits", "--out-dir", tmp_path / "s", env={"RANK": "0"})
    assert r.returncode == 2 and r.stderr.startswith("dyn: error: torchrun's environment is half set")
    assert not (tmp_path / "s").exists()


def test_gpu_indices_name_the_visible_gpus_in_groups_of_nproc(monkeypatch):
    import torch

    from dyn.errors import UsageError
    from dyn.train.sweep import gpu_slots

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")  # this process sees 4 of a machine's GPUs
    assert gpu_slots("1,3", None) == [{"CUDA_VISIBLE_DEVICES": "5"}, {"CUDA_VISIBLE_DEVICES": "7"}]
    assert gpu_slots("0,1,2,3", 2) == [{"CUDA_VISIBLE_DEVICES": "4,5"}, {"CUDA_VISIBLE_DEVICES": "6,7"}]
    with pytest.raises(UsageError, match="3 GPUs do not split into runs of --nproc 2"):
        gpu_slots("0,1,2", 2)
    with pytest.raises(UsageError, match="GPU 4 does not exist"):
        gpu_slots("4", None)


def test_slots_run_in_parallel_each_run_once_and_a_failure_does_not_stop_the_others(tmp_path):
    from dyn.train.sweep import Run, Runner

    runs = [Run(TrainConfig(seed=k), tmp_path / f"r{k}.h5") for k in range(4)]
    marks = tmp_path / "marks"

    def command(run):  # each "run" notes its GPU and start/end times; seed 2 fails
        code = (f"import os, time; t = time.time(); time.sleep(1); "
                f"open({str(marks)!r}, 'a').write(f'{run.cfg.seed} {{os.environ[\"CUDA_VISIBLE_DEVICES\"]}} "
                f"{{t}} {{time.time()}}\\n'); raise SystemExit(3 if {run.cfg.seed} == 2 else 0)")
        return [sys.executable, "-c", code]

    lines = []
    Runner([{"CUDA_VISIBLE_DEVICES": "a"}, {"CUDA_VISIBLE_DEVICES": "b"}], command=command,
           echo=lines.append).run(runs)
    rows = [line.split() for line in marks.read_text().splitlines()]
    assert sorted(int(r[0]) for r in rows) == [0, 1, 2, 3]  # each run once
    assert {r[1] for r in rows} == {"a", "b"}
    spans = sorted((float(r[2]), float(r[3])) for r in rows)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two ran at the same time
    assert [r.result for r in runs] == ["completed", "completed", "failed", "completed"]
    assert "exit 3" in runs[2].note and runs[2].log == tmp_path / "r2.log"


def test_a_sweep_killed_in_the_middle_and_started_again_completes_every_run(tmp_path):
    out_dir = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "dyn", "sweep", "--dataset", "digits", "--schedule", "constant,cosine",
           "--seed", "1,2", "--lr", "0.05", "--epochs", "2", "--batch-size", "256", "--decay", "0.9,0.99",
           "--out-dir", str(out_dir)]
    env = {**os.environ, **ENV}
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    done = 0
    for line in p.stderr:  # the first run is complete; kill the sweep alone while the second trains
        done += line.startswith("done: ")
        if done == 1 and line.startswith("epoch 1/2"):
            p.send_signal(signal.SIGKILL)
            break
    rest = p.stderr.read()  # until the orphaned run, told by the kernel that its parent died, exits
    p.wait()
    second = out_dir / "resnet20-digits-constant-lr0.05-e2-b256-s2.h5"
    assert "SIGTERM: stopped" in rest, rest
    with open_run(second) as run:
        assert run.state == "stopped" and run.resumable

    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "4 runs in" in r.stderr and "1 complete, 1 to resume, 2 to start" in r.stderr
    assert "completed: 3" in r.stderr and "skipped (already complete): 1" in r.stderr
    files = sorted(out_dir.glob("*.h5"))
    grid = set()
    for f in files:
        with open_run(f) as run:
            assert run.state == "complete" and list(run.epochs("val")) == [0, 1, 2]
            assert f.name == TrainConfig.from_dict(run.config).run_name()
            grid.add((run.config["schedule"], run.config["seed"]))
    assert len(files) == 4 and grid == {("constant", 1), ("constant", 2), ("cosine", 1), ("cosine", 2)}

    table = run_dyn("table", *files)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if line.startswith("|")]
    assert any("constant" in row for row in rows) and any("cosine" in row for row in rows)


@pytest.mark.parametrize("task, nproc", [(2, "1"), (3, "2")])
def test_slurm_example_trains_its_line_of_the_sweep(capsys, tmp_path, task, nproc):
    stub = tmp_path / "bin" / "dyn"  # `dyn sweep` for real; `dyn train` only notes its arguments
    stub.parent.mkdir()
    stub.write_text(f"#!/bin/sh\nif [ \"$1\" = sweep ]; then exec {shlex.quote(sys.executable)} -m dyn \"$@\"; fi\n"
                    f"printf '%s\\n' \"$@\" > {shlex.quote(str(tmp_path / 'args'))}\n")
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{stub.parent}:{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": str(task),
           "PRESET": "table2", "DATA_DIR": "cifar", "OUT_DIR": str(tmp_path / "runs"), "NPROC": nproc,
           "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", str(ROOT / "examples" / "slurm_array.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    extra = ["--nproc", nproc] if nproc != "1" else []
    code, out, _ = dyn(capsys, "sweep", "--preset", "table2", "--data-dir", "cifar", "--out-dir", tmp_path / "runs",
                       *extra, "--print")
    want = shlex.split(out.splitlines()[task - 1])[1:]
    assert (tmp_path / "args").read_text().splitlines() == want
    assert "--lr" in want and want[want.index("--lr") + 1] == ["0.01", "0.02", "0.05"][task - 1]

    env["SLURM_ARRAY_TASK_ID"] = "7"  # table2 has 6 runs
    r = subprocess.run(["bash", str(ROOT / "examples" / "slurm_array.sh")], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "fewer runs" in r.stderr


def test_readme_sweeps_are_valid(capsys):
    text = (ROOT / "README.md").read_text()
    lines = [line.split("#")[0].split() for line in text.splitlines() if line.startswith("dyn sweep --preset")]
    assert [words[3] for words in lines] == ["table1", "table2", "table3"]
    for words in lines:
        code, out, err = dyn(capsys, *words[1:], "--print")
        assert code == 0 and len(out.splitlines()) == {"table1": 15, "table2": 6, "table3": 3}[words[3]], err


def test_scale_out_doc_commands_are_valid(capsys):
    """Every dyn sweep line of docs/scale-out.md expands; every flag of its dyn train lines exists."""
    text = (ROOT / "docs" / "scale-out.md").read_text()
    blocks = "\n".join(re.findall(r"```bash\n(.*?)\n```", text, re.S)).replace("\\\n", " ")
    lines = [line.split("#")[0].split() for line in blocks.splitlines()]
    sweeps = [w for w in lines if w[:2] == ["dyn", "sweep"] and "--gpus" not in w]
    assert len(sweeps) >= 4
    for words in sweeps:
        code, out, err = dyn(capsys, *words[1:], *([] if "--print" in words else ["--print"]))
        assert code == 0 and out, err
    trains = [w for w in lines if w[:2] == ["dyn", "train"] or " -m dyn train " in f" {' '.join(w)} "]
    help_text = train.get_help(train.make_context("train", []))
    assert len(trains) >= 2
    for words in trains:
        assert all(flag in help_text for flag in words if flag.startswith("--") and "nproc-per-node" not in flag)
