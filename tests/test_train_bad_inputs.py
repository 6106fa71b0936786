"""`dyn train` refuses bad input with one line naming the flag, exit 2, no traceback, nothing written.

Every case runs in a fresh interpreter in its own folder; the folder's listing (hidden files
such as `.x.h5.lock` and half-written temporaries included) and the bytes of every file in it
are compared before and after, so "nothing written" covers the run file, its lock and the
untouched inputs (an existing run stays byte for byte the same).
"""

import hashlib
import os
import shutil

import h5py
import numpy as np
import pytest
import torch

from dynamics import open_run
from helpers import run_dyn

TINY = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9,0.99",
        "--batch-size", "256", "--epochs", "1", "--no-progress"]
# before each case's own flags (click keeps the last value of a flag given twice); should a
# check be missing, one epoch on the digits ends the run soon, and the case fails on its code
BASE = ["--dataset", "digits", "--epochs", "1", "--no-progress"]
ROOT_USER = os.geteuid() == 0  # root ignores permission bits: a chmod-ed folder does not stop it


@pytest.fixture(scope="module")
def complete_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("done") / "done.h5"
    r = run_dyn("train", *TINY, "--out", out)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture
def work(tmp_path, complete_run):
    """A folder holding the inputs the cases refer to."""
    shutil.copy(complete_run, tmp_path / "done.h5")
    shutil.copy(complete_run, tmp_path / "stopped.h5")
    # a run stopped after its last complete epoch is this same file with /status saying so
    with h5py.File(tmp_path / "stopped.h5", "r+") as f:
        status = f["status"][...]
        status[0] = 3  # state: stopped (docs/format.md)
        f["status"][...] = status
    with open_run(tmp_path / "stopped.h5") as run:
        assert run.state == "stopped" and run.resumable
    (tmp_path / "afile").write_text("not a folder")
    (tmp_path / "adir").mkdir()
    (tmp_path / "empty").mkdir()
    (tmp_path / "locked").mkdir()
    os.chmod(tmp_path / "locked", 0o500)
    yield tmp_path
    os.chmod(tmp_path / "locked", 0o700)


def snapshot(folder):
    """Every path under `folder` with the hash of its bytes (None for folders)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        for d in dirnames:
            out[os.path.relpath(os.path.join(dirpath, d), folder)] = None
        for name in filenames:
            p = os.path.join(dirpath, name)
            out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
AS_ROOT = pytest.mark.skipif(ROOT_USER, reason="root writes into a read-only folder; the /proc and "
                                               "file-as-parent cases test unwritable --out instead")

def case(name, args, code, fragment, *marks):
    return pytest.param(name, args, code, fragment, id=name, marks=marks)


CASES = [
    # id, arguments (after BASE), exit code, fragment(s) of the message
    case("schedule", ["--schedule", "sawtooth"], 2, "'--schedule'"),
    case("model", ["--model", "resnet19"], 2, "'--model'"),
    case("dataset", ["--dataset", "mnist"], 2, "'--dataset'"),
    case("decay-0", ["--decay", "0"], 2, "--decay: 0.0 is outside (0, 1)"),
    case("decay-1", ["--decay", "1"], 2, "--decay: 1.0 is outside (0, 1)"),
    case("decay-above-1", ["--decay", "1.5"], 2, "--decay: 1.5 is outside (0, 1)"),
    case("decay-not-a-number", ["--decay", "0.9,abc"], 2, "--decay: expected numbers"),
    case("decay-repeated", ["--decay", "0.9,0.9"], 2, "--decay: decays repeat"),
    case("lr-0", ["--lr", "0"], 2, "--lr: must be > 0"),
    case("lr-negative", ["--lr", "-0.1"], 2, "--lr: must be > 0"),
    case("epochs-0", ["--epochs", "0"], 2, "--epochs: must be >= 1"),
    case("milestones-decreasing", ["--milestones", "135,90"], 2, "--milestones: must be increasing"),
    case("batch-larger-than-train-set", ["--batch-size", "5000"], 2,
         "--batch-size: 5000 is larger than the training set (1,077 samples)"),
    case("val-size-too-large", ["--val-size", "2000"], 2, "--val-size"),
    case("device-cuda", ["--device", "cuda"], 2, "--device cuda: no CUDA device", NO_CUDA),
    case("resume-and-overwrite", ["--resume", "--overwrite", "--out", "{work}/stopped.h5"], 2,
         "--resume and --overwrite"),
    case("resume-other-lr", ["--resume", "--lr", "0.1", "--out", "{work}/stopped.h5"], 2,
         "--lr: 0.1 contradicts the run being resumed"),
    case("resume-other-decays", ["--resume", "--decay", "0.9", "--out", "{work}/stopped.h5"], 2,
         ("--decay:", "contradicts the run being resumed")),
    case("resume-complete", ["--resume", "--out", "{work}/done.h5"], 0, "already complete, nothing to resume"),
    case("out-exists", ["--out", "{work}/done.h5"], 2, "already exists; continue it with --resume"),
    case("out-is-a-directory", ["--out", "{work}/adir"], 2, ("--out", "is a directory")),
    case("out-parent-is-a-file", ["--out", "{work}/afile/x.h5"], 2, "--out:"),
    case("out-read-only-folder", ["--out", "{work}/locked/x.h5"], 2, "is not writable", AS_ROOT),
    case("out-under-proc", ["--out", "/proc/x.h5"], 2, "--out:"),
    case("out-missing-under-proc", ["--out", "/proc/dyn-missing/x.h5"], 2, "--out:"),
    case("cifar10-missing", ["--dataset", "cifar10", "--data-dir", "{work}/empty"], 2,
         "CIFAR-10 not found in {work}/empty: put cifar-10-python.tar.gz"),
]


@pytest.mark.parametrize("name, args, code, fragment", CASES)
def test_bad_input_is_refused_in_one_line_and_writes_nothing(work, name, args, code, fragment):
    args = [a.format(work=work) for a in args]
    if "--out" not in args:
        args += ["--out", str(work / "x.h5")]
    before = snapshot(work)
    # the child is killed after 100 s: a missing data set must fail fast, never download or hang
    r = run_dyn("train", *BASE, *args, cwd=work, timeout=100)
    assert r.returncode == code, r.stderr
    for f in [fragment] if isinstance(fragment, str) else fragment:
        assert f.format(work=work) in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr  # click's usage errors too
    assert snapshot(work) == before


def test_a_refused_run_creates_no_folder(tmp_path):
    r = run_dyn("train", *TINY, "--batch-size", "5000", "--out", tmp_path / "new" / "x.h5", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert list(tmp_path.iterdir()) == []
