"""benchmarks/gpu_suite.sh on a machine like the lent GPU machine (issue 22, points 1 and 7), as far
as a test can make one: an interpreter called python3 (and no `python`) that does not have dyn
installed but has every other package, a PATH with nothing else, and no package index to reach.
The suite must install dyn itself, from this checkout, fetching nothing; run every step (on this
CPU, tiny sizes: --dry-run); and leave in $OUT only a few small logs."""

import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from helpers import ROOT

TOOLS = ("bash", "sh", "timeout", "tee", "mktemp", "mkdir", "dirname", "rm", "tail", "cat", "env", "uname")


def site_dirs():
    """This interpreter's package folders (a venv may chain to another through a .pth)."""
    first = Path(sysconfig.get_paths()["purelib"])
    dirs = [first]
    for pth in first.glob("*.pth"):
        for line in pth.read_text().splitlines():
            if line and not line.startswith(("import", "#")) and Path(line).is_dir():
                dirs.append(Path(line))
    return dirs


def fake_machine(tmp):
    """(PATH, env) of a python3 that has every package of this one except dyn."""
    packages = tmp / "site"
    packages.mkdir()
    for d in site_dirs():
        for entry in d.iterdir():
            name = entry.name.lower()
            if (name.startswith(("dyn", "__editable__")) or name.endswith(".pth") or name == "__pycache__"
                    or (packages / entry.name).exists()):
                continue
            (packages / entry.name).symlink_to(entry)
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run([str(venv / "bin" / "python3"), "-c",
                              "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "zz_packages.pth").write_text(f"{packages}\n")
    (venv / "bin" / "python").unlink()  # python3 (and python3.X) only, as on the GPU machine
    bin_ = tmp / "bin"
    bin_.mkdir()
    for tool in TOOLS:
        (bin_ / tool).symlink_to(shutil.which(tool))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    # the venv's own bin/: a python3 started through a link elsewhere would not find its pyvenv.cfg
    env.update(PATH=f"{venv / 'bin'}:{bin_}", HOME=str(tmp), TMPDIR=str(tmp), PIP_NO_CACHE_DIR="1",
               PIP_INDEX_URL="http://127.0.0.1:9/simple",  # any fetch fails at once
               http_proxy="http://127.0.0.1:9", https_proxy="http://127.0.0.1:9", OMP_NUM_THREADS="1")
    return bin_, env


def run(env, *args, cwd=ROOT, timeout=600):
    return subprocess.run(list(args), capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def machine(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-machine")
    bin_, env = fake_machine(tmp)
    # the premise: from outside the checkout, no dyn and no `python`
    r = run(env, "python3", "-c", "import dyn", cwd=tmp)
    assert "No module named 'dyn'" in r.stderr
    assert shutil.which("python", path=env["PATH"]) is None
    assert run(env, "python3", "-c", "import torch, h5py, click, pandas").returncode == 0
    return tmp, env


def test_dyn_path_makes_the_checkout_importable_without_pip(machine):
    """The suite's fallback where pip cannot install (setuptools older than pyproject needs)."""
    tmp, env = machine
    dest = tmp / "path"
    assert run(env, "python3", str(ROOT / "benchmarks" / "dyn_path.py"), str(dest)).returncode == 0
    env = {**env, "PYTHONPATH": str(dest)}
    r = run(env, "python3", "-c", "import dyn.train.loop, dyn.analyze.measures.stability, dyn.importers, os; "
            "print(os.path.realpath(dyn.train.loop.__file__))", cwd=tmp)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == str(ROOT / "train" / "loop.py")
    r = run(env, "python3", "-m", "dyn", "--help", cwd=tmp)  # subcommands come from entry points
    assert r.returncode == 0, r.stderr
    assert re.search(r"^  train ", r.stdout, re.M) and re.search(r"^  analyze ", r.stdout, re.M), r.stdout


@pytest.mark.slow
def test_the_suite_dry_run_installs_dyn_runs_every_step_and_brings_back_only_small_logs(machine):
    tmp, env = machine
    out = tmp / "out"
    r = run({**env, "OUT": str(out)}, "bash", "benchmarks/gpu_suite.sh", "--dry-run", timeout=1200)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log
    assert "== installing dyn from" in log, log  # nothing was installed before
    assert "PYTHONPATH instead" not in log, log  # pip did it, without an index
    for step in ("ema", "train", "record", "sweep", "run"):
        assert re.search(rf"^== {step}: exit 0 after \d+ s$", log, re.M), log
    # point 7: logs only, at most 8 files of at most 16 MiB, none below $OUT/a/b/
    files = [p for p in out.rglob("*") if p.is_file()]
    assert 1 <= len(files) <= 8 and all(p.stat().st_size <= 16 * 2**20 for p in files), files
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    assert sorted(p.name for p in files) == ["ema.txt", "env.txt", "estimate.txt", "record.txt", "run.txt",
                                             "sweep.txt", "train.txt"]
    assert not list(tmp.glob("dyn-gpu-suite.*")), "the scratch folder (run.h5) is left behind"
    text = {p.stem: p.read_text() for p in files}
    assert re.search(r"^dyn \S+ from .+/__init__.py$", text["env"], re.M), text["env"]
    assert len(re.findall(r"^dyn's fused copy \((contiguous|channels_last)\): 0 of \d+ ", text["ema"], re.M)) == 2
    train = text["train"].split("CIFAR-shaped")[1]  # the section with the reference loop
    assert train.index("reference: PIL") < train.index("dyn eager") < train.index("dyn deterministic")
    assert re.search(r"^predictions stacked vs plain: \d+ of [\d,]+ flipped, \d+ where the top-2 gap > 0.001",
                     text["record"], re.M), text["record"]
    assert re.search(r"^dyn train on .+: \d+\.\d\d s per epoch", text["estimate"], re.M), text["estimate"]
    assert re.search(r"^  2 +\d+\.\d\d +\d+\.\d\d +\d+\.\d\d$", text["sweep"], re.M), text["sweep"]
