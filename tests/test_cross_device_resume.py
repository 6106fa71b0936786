"""--resume on another device type than the run was trained on (issue 22, point 3).

A CPU generator's state (5,056 bytes) does not load into a CUDA generator (16 bytes), nor the
reverse: across device types the data order is re-seeded from (seed, epoch) instead, and the
run says it is no longer bit-identical. No CUDA here: the CUDA side is a stand-in generator that
behaves as torch's CUDA one does (a 16-byte state; set_state refuses any other size).
"""

import signal
import subprocess
import sys

import pytest
import torch

from dyn import open_run
from dyn.train.data import TrainBatches, load_dataset, reseed, saved_device
from helpers import DIGITS, DIGITS_EPOCHS, ROOT, assert_same_records, run_dyn


class CudaLikeGenerator:
    """torch.Generator(device="cuda") as far as TrainBatches uses it: Philox, a 16-byte state."""

    def __init__(self):
        self.state, self.seeds = torch.zeros(16, dtype=torch.uint8), []

    def get_state(self):
        return self.state.clone()

    def set_state(self, state):
        if state.numel() != 16:
            raise RuntimeError(f"RNG state is wrong size: {state.numel()}")  # what torch raises
        self.state = state.clone()

    def manual_seed(self, seed):
        self.seeds.append(seed)
        return self


def batches(seed=7):
    data = load_dataset("digits")
    return TrainBatches(data.train_images, data.train_labels, batch_size=256, mean=data.mean, std=data.std,
                        pad=1, seed=seed)


def test_a_cpu_state_resumed_on_cuda_reseeds_from_seed_and_epoch():
    cpu = batches()
    next(cpu.epoch())  # mid-epoch: the state holds the epoch's start and position 1
    state = cpu.state_dict()
    assert state["device"] == "cpu" and state["generator"].numel() == 5056
    cuda = batches()
    cuda.generator, cuda.device_type = CudaLikeGenerator(), "cuda"
    assert cuda.load_state_dict(state, epoch=3) == "cpu"
    assert cuda.generator.seeds == [reseed(7, 3)] and cuda._position == 1 and cuda._epoch_start is None
    # the old code passed the CPU state on, and the CUDA generator refused it with a traceback
    try:
        CudaLikeGenerator().set_state(state["generator"])
    except RuntimeError as e:
        assert "wrong size: 5056" in str(e)
    else:
        raise AssertionError("a 16-byte generator took a 5,056-byte state")


def test_a_cuda_state_resumed_on_the_cpu_gives_the_reseeded_order():
    cuda_state = {"generator": torch.arange(16, dtype=torch.uint8), "position": 0}  # no "device": an older run
    assert saved_device(cuda_state) == "cuda"
    b = batches()
    assert b.load_state_dict(cuda_state, epoch=2) == "cuda"
    fresh = batches(seed=reseed(7, 2))  # what re-seeding must amount to: a generator seeded so
    for (x, y), (x2, y2) in zip(b.epoch(), fresh.epoch()):
        assert torch.equal(x, x2) and torch.equal(y, y2)
    assert reseed(7, 2) != reseed(7, 3) != reseed(8, 2)  # each epoch and seed its own order
    b2 = batches()
    try:
        b2.load_state_dict(cuda_state)  # without the epoch there is nothing to re-seed from
    except ValueError as e:
        assert str(e) == "the data order was drawn on cuda and cannot continue on cpu"
    else:
        raise AssertionError("loaded a CUDA state into a CPU generator")


def test_same_device_type_state_loads_as_before():
    a = batches()
    next(a.epoch())
    b = batches(seed=99)
    assert b.load_state_dict(a.state_dict(), epoch=0) == "cpu"
    for (x, y), (x2, y2) in zip(a.epoch(), b.epoch()):
        assert torch.equal(x, x2) and torch.equal(y, y2)


@pytest.mark.slow
def test_a_run_started_on_cpu_resumes_as_auto_without_cuda_bit_for_bit(digits_reference, tmp_path):
    """--device cpu stored, --device auto given on a machine with no CUDA: the same device type,
    so the resume is exact and says nothing about re-seeding."""
    out = tmp_path / "cpu.h5"
    cmd = [sys.executable, "-m", "dyn", "train", *DIGITS, "--epochs", str(DIGITS_EPOCHS), "--device", "cpu",
           "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:
        if line.startswith("epoch 2/"):
            p.send_signal(signal.SIGINT)  # stops cleanly after the epoch it is in
            break
    p.communicate()
    with open_run(out) as run:
        assert run.config["device"] == "cpu" and run.resumable and run.state == "stopped"
    r = run_dyn("train", "--resume", "--device", "auto", "--out", out, "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "re-seeded" not in r.stderr and "Traceback" not in r.stderr
    assert_same_records(digits_reference, out)
