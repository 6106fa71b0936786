"""`dyn train` refused before it starts: no run file, and not even the folder --out names.

The table of what `dyn train` refuses (flags, values, --out, --resume) is in
tests/test_bad_inputs.py, with every other command's; this is what needs a fresh interpreter.
"""

from helpers import run_dyn

TINY = ["--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9,0.99",
        "--batch-size", "256", "--epochs", "1", "--no-progress"]


def test_a_refused_run_creates_no_folder(tmp_path):
    r = run_dyn("train", *TINY, "--batch-size", "5000", "--out", tmp_path / "new" / "x.h5", cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert list(tmp_path.iterdir()) == []
