"""dyn train on several processes: torchrun with gloo on CPU, 2 ranks and 1, against plain runs."""

import hashlib
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from dyn import open_run
from dyn.cli import main
from dyn.errors import UsageError
from helpers import ROOT, run_dyn
from test_train_run import assert_same_records
from dyn.train.ranks import check_shards, loss_scale, shard, torchrun_env

TINY = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9,0.99",
        "--batch-size", "256", "--no-progress"]
# one thread per process: 2 ranks on 2 cores, and the same arithmetic in runs compared bit for bit
ENV = {"OMP_NUM_THREADS": "1"}
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]


def torchrun_cmd(nproc, *args):
    return [*TORCHRUN, f"--nproc-per-node={nproc}", "-m", "dyn", "train", *TINY, *map(str, args)]


def torchrun(nproc, *args, timeout=600):
    return subprocess.run(torchrun_cmd(nproc, *args), cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, **ENV}, timeout=timeout)


def file_digest(path, epoch):
    """sha256 of every network's weights at `epoch`, read from the file (Recorder.weights_digest's order)."""
    h = hashlib.sha256()
    with open_run(path) as run:
        for net in run.networks:
            h.update(net.encode())
            h.update(run.params(net, epoch).tobytes())
            h.update(run.buffers(net, epoch).tobytes())
    return h.hexdigest()


def dyn(capsys, monkeypatch, *args):
    """`dyn ARGS` in this process, for input refused before anything starts: (exit code, stderr)."""
    def no_exec(*a):
        raise AssertionError(f"dyn would have started {a[1]}")

    monkeypatch.setattr(os, "execve", no_exec)  # a check that let bad input through must not become torchrun
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """An uninterrupted 2-epoch run on 2 processes: the reference for the killed one."""
    out = tmp_path_factory.mktemp("ddp") / "two.h5"
    r = torchrun(2, "--epochs", "2", "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r.stderr


# ------------------------------------------------------------------- in-process
def test_shards_cover_every_item_once_in_order():
    for n in (0, 1, 5, 53, 256):
        for world in (1, 2, 3, 8):
            parts = [shard(n, r, world) for r in range(world)]
            assert parts[0].start == 0 and parts[-1].stop == n
            assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
            sizes = [p.stop - p.start for p in parts]
            assert max(sizes) - min(sizes) <= 1


def test_sharded_batches_make_up_the_one_process_batches():
    from dyn.train.data import load_dataset

    data = load_dataset("digits")
    whole = list(data.train_batches(256, seed=7).epoch())  # 1,077 samples: 4 x 256 and 53
    ranks = [data.train_batches(256, seed=7, shard=(r, 3)) for r in range(3)]
    parts = [list(b.epoch()) for b in ranks]
    assert len(whole) == 5 and all(len(p) == 5 for p in parts)
    for k, (x, y) in enumerate(whole):
        np.testing.assert_array_equal(torch.cat([p[k][0] for p in parts]).numpy(), x.numpy())
        np.testing.assert_array_equal(torch.cat([p[k][1] for p in parts]).numpy(), y.numpy())
    assert [len(p[4][1]) for p in parts] == [17, 18, 18] and ranks[0].global_size == 53


def test_scaled_shard_losses_average_to_the_global_batch_gradient():
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 4)
    x, y = torch.randn(53, 6), torch.randint(0, 4, (53,))  # a last batch, split 17/18/18 over 3 ranks

    def grad(loss):
        model.zero_grad()
        loss.backward()
        return model.weight.grad.clone()

    ce = torch.nn.functional.cross_entropy
    want = grad(ce(model(x), y))
    world = 3
    per_rank = []
    for r in range(world):
        part = shard(len(y), r, world)
        n = part.stop - part.start
        per_rank.append(grad(ce(model(x[part]), y[part]) * loss_scale(n, world, len(y))))
    ddp = sum(per_rank) / world  # what DDP's all-reduce hands every rank
    torch.testing.assert_close(ddp, want, rtol=1e-6, atol=1e-7)
    unscaled = sum(grad(ce(model(x[shard(53, r, 3)]), y[shard(53, r, 3)])) for r in range(3)) / 3
    assert not torch.allclose(unscaled, want, rtol=1e-6, atol=1e-7)  # the scaling is what makes it right
    assert loss_scale(128, 2, 256) == 1.0 and loss_scale(53, 1, 53) == 1.0


def test_torchrun_environment_is_all_or_nothing():
    full = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    assert torchrun_env({}) is None
    assert torchrun_env(full) == (1, 2, 1)
    with pytest.raises(UsageError, match="half set.*MASTER_ADDR, MASTER_PORT not"):
        torchrun_env({k: full[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK")})
    with pytest.raises(UsageError, match="not a valid torchrun rank"):
        torchrun_env({**full, "RANK": "2"})
    with pytest.raises(UsageError, match="integers"):
        torchrun_env({**full, "WORLD_SIZE": "two"})


def test_every_rank_must_get_samples_of_every_batch():
    check_shards(1077, 256, 2)  # last batch 53: 26 and 27
    with pytest.raises(UsageError, match="--batch-size: 1 "):
        check_shards(1077, 1, 2)
    with pytest.raises(UsageError, match="gives a batch of 5"):
        check_shards(1077, 268, 8)  # 1077 = 4 x 268 + 5


def test_nproc_passes_on_the_command_line_it_was_given():
    from dyn.train.cli import command_line, train

    args = ["--decay", "0.9", "--decay", "0.99,0.999", "--lr", "0.05", "--no-progress", "--sync-bn",
            "--out", "x.h5", "--nproc", "2", "--compile", "--resume"]
    ctx = train.make_context("train", list(args))
    again = command_line(ctx, drop=("nproc",))
    assert "--nproc" not in again
    back = train.make_context("train", again)
    assert {k: v for k, v in back.params.items() if k != "nproc"} == \
        {k: v for k, v in ctx.params.items() if k != "nproc"}


# ----------------------------------------------------------------- processes
def test_one_process_under_torchrun_equals_a_plain_run_bit_for_bit(tmp_path):
    plain, ddp = tmp_path / "plain.h5", tmp_path / "ddp.h5"
    r = run_dyn("train", *TINY, "--epochs", "2", "--out", plain, env=ENV)
    assert r.returncode == 0, r.stderr
    r = run_dyn("train", *TINY, "--epochs", "2", "--nproc", "1", "--out", ddp, env=ENV)  # starts torchrun
    assert r.returncode == 0, r.stderr
    assert f"1 processes hold identical weights: sha256 {file_digest(ddp, 2)}" in r.stderr
    assert_same_records(plain, ddp)
    with open_run(ddp) as run:
        assert run.config["environment"]["world_size"] == 1


def test_two_processes_record_a_valid_run_with_identical_weights(two_ranks):
    from dyn.train.data import load_dataset, normalize
    from dyn.train.models import build_model

    out, err = two_ranks
    # each rank's digest of its final SGD and EMA weights, gathered: all equal, and equal to the file's
    assert f"2 processes hold identical weights: sha256 {file_digest(out, 2)}" in err
    assert err.count("epoch 2/2") == 1  # rank 0 alone reports
    data = load_dataset("digits")
    with open_run(out) as run:
        assert run.state == "complete" and run.config["environment"]["world_size"] == 2
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"]
        assert list(run.epochs("val")) == [0, 1, 2] and list(run.epochs("train")) == [2]
        m = run.metrics()
        assert list(m["iteration"]) == [0, 5, 10]  # global batches of 256, not per-rank ones
        torch.manual_seed(1111)  # the seed's initial weights, as one process builds them
        init = build_model("resnet20", 10, in_channels=1).state_dict()
        for name, value in run.state_dict("sgd", 0).items():
            np.testing.assert_array_equal(value, init[name].numpy())
        # the gathered per-sample records equal a separate evaluation of the stored weights
        for net in run.networks:
            model = build_model("resnet20", 10, in_channels=1)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in run.state_dict(net, 2).items()})
            model.eval()
            for split in ("val", "test", "train", "train-augmented"):
                x, y = data.train_augmented() if split == "train-augmented" else data.split(split)
                with torch.no_grad():
                    pred = model(normalize(x, data.mean, data.std)).argmax(1).numpy()
                np.testing.assert_array_equal(run.correct(split, net)[-1], pred == y.numpy())
                np.testing.assert_array_equal(run.predicted(split, net)[-1], pred)


def _rank_pid(parent: int, rank: int) -> int | None:
    """The worker of torchrun process `parent` whose environment says RANK=rank."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == parent and f"RANK={rank}".encode() in env:
            return int(pid)
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the rank's process in /proc")
def test_a_killed_rank_ends_the_job_and_the_run_resumes_bit_for_bit(two_ranks, tmp_path, capsys, monkeypatch):
    out = tmp_path / "killed.h5"
    p = subprocess.Popen(torchrun_cmd(2, "--epochs", "2", "--out", out), cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **ENV})
    for line in p.stderr:  # rank 0 has committed epoch 1: kill rank 1 during epoch 2
        if line.startswith("epoch 1/2"):
            os.kill(_rank_pid(p.pid, 1), signal.SIGKILL)
            break
    t0 = time.monotonic()
    rest = p.stderr.read()
    p.wait(timeout=120)
    assert p.returncode != 0 and time.monotonic() - t0 < 120  # the whole job ended, nobody hangs
    assert "Continue with: dyn train --resume --nproc 2" in rest
    with open_run(out) as run:
        assert run.state == "interrupted" and run.resumable and run.rows("metrics") == 2
    code, err = dyn(capsys, monkeypatch, "train", "--resume", "--out", out)  # one process would not continue it exactly
    assert code == 2 and err.startswith("dyn: error: --nproc: ") and "--nproc 2" in err and err.count("\n") == 1
    r = torchrun(2, "--resume", "--out", out)
    assert r.returncode == 0, r.stderr
    assert_same_records(two_ranks[0], out)


@pytest.mark.parametrize("env, args, flag", [
    ({"RANK": "0", "WORLD_SIZE": "2"}, [], "torchrun's environment is half set"),
    ({}, ["--nproc", "0"], "--nproc: must be >= 1"),
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1"},
     ["--nproc", "2"], "--nproc: this process already runs under torchrun"),
    ({}, ["--nproc", "2", "--sync-bn", "--device", "cpu"], "--sync-bn: "),
    ({}, ["--nproc", "2", "--device", "cuda"], "--device cuda: "),
    ({}, ["--nproc", "2", "--batch-size", "1"], "--batch-size: 1 "),
])
def test_bad_distributed_input_is_one_line_and_starts_nothing(tmp_path, capsys, monkeypatch, env, args, flag):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    out = tmp_path / "x.h5"
    code, err = dyn(capsys, monkeypatch, "train", *TINY, "--epochs", "1", *args, "--out", out)
    assert code == 2, err
    assert err.startswith(f"dyn: error: {flag}") and err.count("\n") == 1, err
    assert list(tmp_path.iterdir()) == []
