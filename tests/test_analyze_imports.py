"""analyze never imports torch, and its analyses never import matplotlib."""

import re
import subprocess
import sys
from pathlib import Path

import dyn.analyze

ROOT = Path(dyn.analyze.__file__).parent
# every analysis (measures/) is pure and every command (commands/) a command module, by folder
PURE = ["bits", "histogram", "kernels", "networks", "runs", "tables", "window", "posthoc", "fileio", "half"] + sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in (ROOT / "measures").glob("*.py"))
PLOT = ["plot", "plot.style", "plot.save", "plot.stability", "plot.misclassification",
        "plot.barcode", "plot.weight_diff", "plot.accuracy", "plot.agreement", "plot.decays", "plot.dynamics"]
CLI = ["api", "figures", "cli", "command", "inputs", "naming", "stream", "output", "options", "posthoc_cli",
       "per_sample"] + sorted(
    ".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in (ROOT / "commands").glob("*.py"))


def test_every_module_is_listed():
    found = {".".join(p.relative_to(ROOT).with_suffix("").parts) for p in ROOT.rglob("*.py")}
    found = {m.removesuffix(".__init__") for m in found} - {"__init__"}
    assert found == set(PURE) | set(PLOT) | set(CLI)


def test_importing_analyses_and_plot_modules_loads_neither_torch_nor_matplotlib():
    mods = ", ".join(f"dyn.analyze.{m}" for m in PURE + PLOT)
    code = (f"import sys, {mods}\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib'))\n"
            "print(bad)\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_command_modules_load_neither_torch_nor_matplotlib_nor_pandas():
    # pandas only for `dyn table` and --lr, inside those functions: it costs ~0.5 s of start-up
    mods = ", ".join(f"dyn.analyze.{m}" for m in CLI)
    code = (f"import sys, {mods}\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'matplotlib', 'pandas'))\n"
            "assert not bad, bad\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_no_source_line_imports_torch():
    root = Path(dyn.analyze.__file__).parent
    pattern = re.compile(r"^\s*(import\s+torch|from\s+torch)\b", re.M)
    offenders = [str(p) for p in root.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []
