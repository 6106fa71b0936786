"""docs/analyze.md: its Python example runs, and every command and flag it names exists."""

import re
import subprocess
import sys

from dyn.synthetic import Synthetic

from helpers import ROOT, run_dyn

DOC = (ROOT / "docs" / "analyze.md").read_text()


def test_python_example_runs(tmp_path):
    path = Synthetic(epochs=12, samples=99, decays=(0.9995,)).write(tmp_path / "constant.h5")
    (code,) = re.findall(r"```python\n(.*?)```", DOC, re.S)
    r = subprocess.run([sys.executable, "-c", code.replace("runs/constant.h5", str(path))], capture_output=True,
                       text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("[") >= 4  # the arrays it prints


def test_documented_flags_exist():
    helps = {cmd: run_dyn("analyze", cmd, "--help").stdout
             for cmd in ("stability", "histogram", "flips", "weight-diff", "accuracy", "agreement", "decays", "report",
                         "forgetting", "datamap", "aum", "settling")}
    helps["table"] = run_dyn("table", "--help").stdout
    examples = re.findall(r"^dyn (?:analyze (\S+)|(table)) (.*)$", DOC, re.M)
    assert len(examples) >= 9
    for sub, table, rest in examples:
        for flag in re.findall(r"--[a-z-]+", rest):
            assert flag in helps[sub or table], (sub or table, flag)
    for flag in set(re.findall(r"`(--[a-z-]+)", DOC)):
        assert any(flag in h for h in helps.values()), flag
