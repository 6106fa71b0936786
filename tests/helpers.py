"""Helpers shared by the tests: running `dyn` in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# Block torch (and anything else named) in a child interpreter, as on an analysis-only install.
BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Block())
"""


def run_dyn(*args, block=(), cwd=None, env=None, timeout=300, code_after=""):
    """Run `dyn ARGS` in a fresh interpreter; returns CompletedProcess (text)."""
    code = BLOCK.format(blocked=set(block)) + (
        "from dynamics.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        f"{code_after}\n"
        "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})}, timeout=timeout)
