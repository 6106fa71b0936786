"""Helpers shared by the tests: running `dyn` in a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The cheapest real training run: ResNet-20 on the digits, 3 steps an epoch, one EMA network,
# weights and resume state at every epoch. The reliability tests kill, stop, starve and resume
# it, and compare the result with `digits_reference` (conftest.py), the same run uninterrupted.
DIGITS = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9",
          "--batch-size", "512", "--checkpoint-every", "1", "--no-progress"]
DIGITS_EPOCHS = 6

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
        "from dyn.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        f"{code_after}\n"
        "sys.exit(code)\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True,
                          cwd=cwd or ROOT, env={**os.environ, **(env or {})}, timeout=timeout)


def assert_same_records(a, b):
    """Run `b` is complete and holds exactly the records of run `a`, bit for bit: every split's
    epochs, correctness bits, predictions, losses, probabilities and margins (where the split
    has them), every weight record, and every metric but the wall-clock `seconds`."""
    import numpy as np

    from dyn import open_run

    with open_run(a) as ra, open_run(b) as rb:
        assert rb.state == "complete"
        assert ra.splits == rb.splits and ra.networks == rb.networks
        for split in ra.splits:
            np.testing.assert_array_equal(ra.epochs(split), rb.epochs(split))
            assert any(ra.has(split, net, "correct") for net in ra.networks), split
            for net in ra.networks:
                for key in ("correct", "predicted", "loss", "prob", "margin"):
                    assert ra.has(split, net, key) == rb.has(split, net, key), (split, net, key)
                    if ra.has(split, net, key):
                        read = "correct_packed" if key == "correct" else key
                        np.testing.assert_array_equal(getattr(ra, read)(split, net), getattr(rb, read)(split, net),
                                                      err_msg=f"{split} {net} {key}")
        np.testing.assert_array_equal(ra.weight_epochs(), rb.weight_epochs())
        for e in ra.weight_epochs():
            for net in ra.networks:
                np.testing.assert_array_equal(ra.params(net, e), rb.params(net, e))
                np.testing.assert_array_equal(ra.buffers(net, e), rb.buffers(net, e))
        cols = [c for c in ra.metrics().columns if c != "seconds"]
        np.testing.assert_array_equal(ra.metrics()[cols].to_numpy(), rb.metrics()[cols].to_numpy())


def TableRow(name, shape, offset, size, kind, dtype):
    """A row of the parameter table (dyn.layout.Param) given as (name, shape, offset, size, kind,
    dtype), with its size checked against its shape (a Param's size is its shape's)."""
    from dyn.layout import Param

    row = Param(name, shape, kind, dtype, offset)
    assert row.size == size, f"{name}: shape {shape} holds {row.size} values, not {size}"
    return row
