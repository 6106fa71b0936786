"""`dyn train` killed at the edges of a run: while creating its file, after creating it but
before epoch 0 is recorded, and after its last records but before it is marked complete. Each
once left a file that `dyn train --resume` could not continue (found by the 30 kills of
test_reliability_kill_train.py; here each on its own, at the moment the writer's test-only
pause points, dynamics/faults.py, hold it).
"""

import signal

from dyn import open_run
from helpers import DIGITS, DIGITS_EPOCHS, assert_same_records

TRAIN = ["train", *DIGITS, "--epochs", str(DIGITS_EPOCHS), "--resume"]


def killed_at(forkserver, path, point):
    """Start the run, SIGKILL it while the writer waits at `point`; its stderr lines."""
    child = forkserver.start(*TRAIN, "--out", path, env={"DYN_TEST_PAUSE": f"2:{point}"})
    assert child.wait_line(lambda line: line.startswith("dyn-test:") and point in line, timeout=300)
    child.kill(signal.SIGKILL)
    assert child.wait(60).signal == signal.SIGKILL


def test_killed_while_creating_leaves_no_temporary_behind(forkserver, tmp_path):
    path = tmp_path / "run.h5"
    killed_at(forkserver, path, "create: built")
    assert not path.exists() and [p.name for p in tmp_path.iterdir() if "tmp-" in p.name]
    killed_at(forkserver, path, "epoch 0 ")  # the next start clears the dead one's temporary
    assert [p.name for p in tmp_path.iterdir() if "tmp-" in p.name] == []


def test_killed_before_epoch_0_is_recorded_starts_again(forkserver, digits_reference, tmp_path):
    path = tmp_path / "run.h5"
    killed_at(forkserver, path, "epoch 0 (metrics, split/val, split/test, weights): flushed")
    with open_run(path) as run:
        assert run.state == "interrupted" and run.rows("metrics") == 0 and not run.resumable
    r = forkserver.run(*TRAIN, "--out", path, timeout=600)
    assert r.code == 0, r.stderr
    assert f"{path}: interrupted before its first epoch was recorded; starting it again" in r.stderr
    assert_same_records(digits_reference, path)


def test_killed_after_its_last_records_completes(forkserver, digits_reference, tmp_path):
    path = tmp_path / "run.h5"
    path.write_bytes(digits_reference.read_bytes())
    with open_run(path) as run:
        last = run.rows("metrics") - 1
    # a run killed there: every record in, /status still saying running, its writer gone
    import h5py

    with h5py.File(path, "r+") as f:
        status = f["status"][...]
        status[0] = 0
        f["status"][...] = status
    with open_run(path) as run:
        assert run.state == "interrupted" and run.rows("split/train") == 1 and run.resume_state()[0] == last
    r = forkserver.run(*TRAIN, "--out", path, timeout=300)
    assert r.code == 0, r.stderr
    assert_same_records(digits_reference, path)


def test_killed_while_a_resume_drops_uncommitted_rows_stays_readable(forkserver, digits_reference, tmp_path):
    """Between opening the file for writing and switching to SWMR, the superblock says "open
    for write" without "SWMR", which no read mode of HDF5 accepts: the reader clears the flags
    in what it reads (never in the file), and the next resume completes the run."""
    import hashlib

    from dyn.superblock import read_superblock

    path = tmp_path / "run.h5"
    killed_at(forkserver, path, "epoch 1 (metrics, split/val, split/test, weights): flushed")
    killed_at(forkserver, path, "open: shrunk")
    assert read_superblock(path).flags == 0x01  # write, not SWMR write
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with open_run(path) as run:
        assert run.state == "interrupted" and run.rows("metrics") == 1
        first = run.correct_packed("val", "sgd")
    with open_run(digits_reference) as ref:
        assert (first == ref.correct_packed("val", "sgd", slice(0, 1))).all()
    r = forkserver.run("inspect", path, "--json", timeout=120)
    assert r.code == 0 and '"state": "interrupted"' in r.stdout, r.stderr
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before  # reading wrote nothing
    r = forkserver.run(*TRAIN, "--out", path, timeout=600)
    assert r.code == 0, r.stderr
    assert_same_records(digits_reference, path)
