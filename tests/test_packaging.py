"""One import root: the installed package is `dyn` (dyn, dyn.train, dyn.analyze), from the
repository's folders dynamics/, train/ and analyze/ (pyproject.toml's package-dir); the arrows
point train -> core <- analyze; and a user's own train.py or analyze/ shadows nothing."""

import ast
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {"dyn": "dynamics", "dyn.train": "train", "dyn.analyze": "analyze"}


def _modules_named(path: Path) -> set[str]:
    """Every module a source file imports (absolute, relative ones resolved to `dyn...`), and
    every dotted name in a string that looks like a module path ('dyn.train.cli:train')."""
    pkg = _package_of(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names |= set(re.findall(r"\b(?:dyn\.)?(?:train|analyze)\.[a-z_]+\b", node.value))
    return names


def _package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    pkg = next(p for p, folder in FOLDERS.items() if rel.parts[0] == folder)
    return ".".join([pkg, *rel.parts[1:-1]])


def _sources(folder):
    return sorted((ROOT / folder).rglob("*.py"))


def _stage(name: str) -> str | None:
    for stage in ("train", "analyze"):
        if re.match(rf"^(dyn\.)?{stage}(\.|$)", name):
            return stage
    return None


def test_the_core_names_neither_stage():
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p in _sources("dynamics") for n in sorted(_modules_named(p))
                 if _stage(n)]
    assert offenders == []


@pytest.mark.parametrize("stage,other", [("train", "analyze"), ("analyze", "train")])
def test_a_stage_never_imports_the_other(stage, other):
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p in _sources(stage) for n in sorted(_modules_named(p))
                 if _stage(n) == other]
    assert offenders == []


def test_the_check_sees_what_it_forbids(tmp_path):
    """The scanner flags the three shapes it must: absolute, relative-from-core and strings."""
    probe = ROOT / "dynamics" / "_probe_import_direction.py"
    probe.write_text("from dyn.train import loop\nfrom .. import x\nT = 'dyn.analyze.cli:analyze'\n")
    try:
        names = _modules_named(probe)
    finally:
        probe.unlink()
    assert {"dyn.train", "dyn.analyze.cli"} <= names and any(_stage(n) for n in names)


def test_importing_the_core_loads_no_stage():
    code = ("import sys, dyn, dyn.cli, dyn.reader, dyn.writer, dyn.inspect, dyn.importers.cli, "
            "dyn.importers.checkpoints, dyn.importers.predictions\n"
            "bad = sorted(m for m in sys.modules if m.startswith(('dyn.train', 'dyn.analyze', 'torch')))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path("/"))
    assert r.returncode == 0, r.stderr


def test_every_package_folder_is_in_pyproject():
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert conf["package-dir"] == FOLDERS
    found = set()
    for pkg, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([pkg, *init.parent.relative_to(ROOT / folder).parts]))
    assert set(conf["packages"]) == found


# --------------------------------------------------------------------------- installs

def _no_torch_pth(site: Path):
    """A .pth that blocks torch in that interpreter, as on an analysis-only install."""
    (site / "zz_no_torch.pth").write_text(
        "import sys; sys.meta_path.insert(0, type('B', (), {'find_spec': staticmethod(lambda n, p=None, t=None: "
        "(_ for _ in ()).throw(ModuleNotFoundError(n, name=n)) if n.split('.')[0] in ('torch', 'torchvision') "
        "else None)})())\n")


@pytest.mark.slow
def test_the_wheel_installs_one_root_and_runs_without_torch(tmp_path, forkserver_free_run):
    """Build the real wheel, install it (--no-deps) into a fresh venv whose other packages come
    from the test venv's site-packages, with torch blocked: `dyn` works, `train` is no module."""
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                        "-w", wheels, ROOT], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    (wheel,) = wheels.glob("dyn_ema-*.whl")
    import zipfile

    tops = {n.split("/")[0] for n in zipfile.ZipFile(wheel).namelist()}
    assert tops == {"dyn", wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info"}
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    r = subprocess.run([sys.executable, "-m", "pip", "--python", py, "install", "-q", "--no-deps", "--no-index",
                        wheel], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    deps = next(p for p in sys.path if p.endswith("site-packages") and (Path(p) / "h5py").is_dir())
    (site / "zz_deps.pth").write_text(deps + "\n")  # a path line: its own .pth files (dyn's editable finder) stay unread
    _no_torch_pth(site)
    work = tmp_path / "work"
    work.mkdir()

    def run(*args):
        return subprocess.run([*args], capture_output=True, text=True, cwd=work,
                              env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})

    r = run(py, "-c", "import dyn, dyn.analyze, dyn.analyze.kernels as k, sys; print(dyn.__file__); "
                      "print(k.backend()); assert 'torch' not in sys.modules")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].startswith(str(site))
    assert r.stdout.splitlines()[1] == "C"  # the wheel carries the built C kernels
    for name in ("train", "analyze", "dynamics"):
        r = run(py, "-c", f"import {name}")
        assert f"No module named '{name}'" in r.stderr, (name, r.stderr)
    run_file = forkserver_free_run(work / "run.h5")
    r = run(venv / "bin" / "dyn", "analyze", "stability", run_file)
    assert r.returncode == 0 and "stability" in r.stdout, r.stderr
    r = run(py, "-m", "dyn", "--help")
    assert r.returncode == 0 and all(c in r.stdout for c in ("train", "sweep", "analyze", "table", "import"))
    r = run(venv / "bin" / "dyn", "train", "--dataset", "digits")
    assert r.returncode == 2 and "pip install 'dyn-ema[train]'" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture
def forkserver_free_run():
    def make(path):
        from dyn.synthetic import Synthetic

        return Synthetic(epochs=5, samples=64, decays=(0.9,)).write(path)
    return make


USER_TRAIN_PY = '''
"""A user's own training script, named train.py, beside their own analyze/ and dynamics/."""
import numpy as np
import torch
import torch.nn as nn

import analyze, dynamics                     # the user's own packages, not dyn's
from dyn.train.recorder import Recorder
import dyn.analyze

assert analyze.MINE and dynamics.MINE
torch.manual_seed(0)
x, y = torch.randn(96, 4), torch.randint(0, 3, (96,))
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
rec = Recorder.create("run.h5", model, [0.9], {"val": (x[:32], y[:32])}, num_classes=3, optimizer=opt)
for epoch in range(1, 4):
    for i in range(32, 96, 16):
        loss = nn.functional.cross_entropy(model(x[i:i + 16]), y[i:i + 16])
        opt.zero_grad(); loss.backward(); opt.step()
        rec.step(loss)
    rec.end_epoch(epoch)
rec.finish()
with dyn.open_run("run.h5") as run:
    print("epochs", run.epochs("val").tolist(), "networks", run.networks)
stab = dyn.analyze.stability("run.h5")       # the analyses from Python, as a notebook calls them
wd = dyn.analyze.weight_difference("run.h5")
print("stability rows", len(stab), "accuracy", stab["accuracy"].round(4).tolist()[:4])
print("weight rows", len(wd), "networks", sorted(set(wd["network"])))
with dyn.open_run("run.h5") as run:
    bits = run.correct("val", "sgd")
print("by hand", np.round(bits.mean(axis=1), 4).tolist())
'''


@pytest.mark.slow
def test_a_users_train_py_beside_their_own_analyze_and_dynamics(tmp_path):
    (tmp_path / "train.py").write_text(textwrap.dedent(USER_TRAIN_PY))
    for name in ("analyze", "dynamics"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("MINE = True\n")
    r = subprocess.run([sys.executable, "train.py"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "epochs [0, 1, 2, 3] networks ['sgd', 'ema-0.9']" in r.stdout
    out = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert out["stability"].startswith("rows 8 accuracy")  # 4 epochs x (sgd, ema-0.9)
    assert out["stability"].split("accuracy ")[1] == out["by"].split("hand ")[1]  # sgd's, counted by hand
    assert out["weight"] == "rows 4 networks ['ema-0.9']"
