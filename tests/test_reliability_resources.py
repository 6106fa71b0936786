"""Resource faults: a full disk during training, an output folder dyn may not write, a run file
on a read-only path. Real `dyn` processes (tests/forkserver.py) with a file size limit
(RLIMIT_FSIZE) or as an unprivileged user, since root ignores permission bits.
"""

import hashlib
import os
import shutil
import tempfile

import pytest

from dyn import open_run
from helpers import DIGITS, DIGITS_EPOCHS, assert_same_records

TRAIN = ["train", *DIGITS, "--epochs", str(DIGITS_EPOCHS)]
# root passes every permission check: the permission cases run as `nobody`
NOBODY = (65534, 65534) if os.geteuid() == 0 else None


@pytest.fixture
def public():
    """A folder every user can reach (pytest's own are private to their owner)."""
    folder = tempfile.mkdtemp(prefix="dyn-test-")
    os.chmod(folder, 0o755)
    yield folder
    for dirpath, dirnames, _ in os.walk(folder):
        for d in dirnames:
            os.chmod(os.path.join(dirpath, d), 0o755)
    shutil.rmtree(folder)


def test_full_disk_stops_training_with_a_message_and_the_run_resumes(forkserver, digits_reference, tmp_path):
    path = tmp_path / "run.h5"
    limit = digits_reference.stat().st_size // 2  # room for about half of the run's epochs
    r = forkserver.run(*TRAIN, "--out", path, fsize=limit, timeout=600)
    assert r.code == 1 and r.signal is None, r.stderr
    error = [line for line in r.stderr.splitlines() if line.startswith("dyn: error:")]
    assert len(error) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "not enough room to record epoch" in error[0] and "file size limit" in error[0], error[0]
    with open_run(path) as run:
        kept = run.rows("metrics")
        assert run.state == "stopped" and run.resumable and 0 < kept < DIGITS_EPOCHS + 1
    assert f"keeps epochs up to {kept - 1}" in error[0] and error[0].endswith(f"Continue with: dyn train --resume --out {path}")
    assert path.stat().st_size <= limit
    r = forkserver.run(*TRAIN, "--out", path, "--resume", timeout=600)  # room again
    assert r.code == 0, r.stderr
    assert_same_records(digits_reference, path)


def test_an_output_folder_without_write_permission_is_refused_before_any_work(forkserver, public):
    locked = os.path.join(public, "locked")
    os.mkdir(locked, 0o555)
    if NOBODY is None:
        os.chmod(locked, 0o555)
    r = forkserver.run(*TRAIN, "--out", os.path.join(locked, "run.h5"), user=NOBODY, timeout=120)
    # refused in prepare(), before the data, the model or the file: one line and nothing else
    assert r.code == 2, r.stderr
    out = os.path.join(locked, "run.h5")
    assert r.stderr.strip() == f"dyn: error: --out: {out}: folder {locked} is not writable (Permission denied)"
    assert os.listdir(locked) == []


def test_a_run_on_a_read_only_path_can_be_analysed(forkserver, digits_reference, public):
    folder = os.path.join(public, "runs")
    os.mkdir(folder)
    path = os.path.join(folder, digits_reference.name)  # the same name: the same labels
    shutil.copy(digits_reference, path)
    os.chmod(path, 0o444)
    os.chmod(folder, 0o555)
    digest = hashlib.sha256(open(path, "rb").read()).hexdigest()
    figures = os.path.join(public, "figures")
    os.mkdir(figures, 0o777)
    os.chmod(figures, 0o777)
    for command in (["inspect", "--json"], ["analyze", "stability", "--json"], ["analyze", "flips", "--json"],
                    ["analyze", "histogram", "--json"], ["analyze", "weight-diff", "--json"],
                    ["analyze", "accuracy", "--json"], ["table", "--format", "csv"]):
        as_owner = forkserver.run(*command, digits_reference, timeout=120)
        r = forkserver.run(*command, path, user=NOBODY, timeout=120)
        assert r.code == 0 and r.stderr == "", (command, r.stderr)
        def where(text):  # the same output but for where the file is
            return text.replace(path, "RUN").replace(str(digits_reference), "RUN")

        assert where(r.stdout) == where(as_owner.stdout), command
    r = forkserver.run("analyze", "report", path, "--out-dir", os.path.join(figures, "report"), user=NOBODY, timeout=300)
    assert r.code == 0, r.stderr
    assert {"index.html", "stability-reference.png", "flips-reference.png", "weight-diff.png"} <= set(
        os.listdir(os.path.join(figures, "report")))
    assert os.listdir(folder) == [digits_reference.name]  # no lock, no temporary
    assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest
