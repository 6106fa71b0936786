"""The analysis stage without Linux-only calls (issue 19, point 14): no fcntl (Windows), no
os.preadv/os.pread (Windows), no /proc (macOS, Windows). Every analysis command, dyn inspect
and dyn table run in a child interpreter from which those are taken away, and give the same
numbers as on the normal path; a run that says *running* is then possibly live, and the
output says so."""

import json
import os
import subprocess
import sys

import h5py
import pytest

from dyn.synthetic import Synthetic
from helpers import ROOT

# Taken away before dyn is imported: `import fcntl` fails, os.preadv and os.pread are gone,
# /proc cannot be opened. os.lseek is counted, to show the fallback read really ran.
STRIP = """
import builtins, io, os, sys
class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ModuleNotFoundError("No module named 'fcntl'", name=name)
sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())
del os.preadv, os.pread
_open = io.open
def _no_proc(file, *a, **k):
    if str(file).startswith("/proc"):
        raise FileNotFoundError(2, "No such file or directory", str(file))
    return _open(file, *a, **k)
builtins.open = io.open = _no_proc
_lseek, _seeks = os.lseek, [0]
def _counted(*a):
    _seeks[0] += 1
    return _lseek(*a)
os.lseek = _counted
import atexit
atexit.register(lambda: print(f"LSEEKS={_seeks[0]}", file=sys.stderr))
"""
PROBE = """
import dyn.hdf5, dyn.lock
assert dyn.lock.fcntl is None and not hasattr(os, "preadv")
print("LIBHDF5=" + str(dyn.hdf5._libhdf5() is not None), file=sys.stderr)
"""


def dyn(*args, strip: bool):
    code = (STRIP + PROBE if strip else "import sys\n") + (
        "from dyn.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        "else:\n    code = 0\nsys.exit(code)\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "DYN_KERNELS": "numpy" if strip else os.environ.get("DYN_KERNELS", "")},
                       timeout=300)
    assert r.returncode == 0, r.stderr
    return r


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Synthetic(epochs=9, samples=301, decays=(0.9, 0.99), weights_every=2, images=True).write(
        tmp_path_factory.mktemp("portable") / "run.h5")


COMMANDS = {
    "inspect": ["inspect", "{run}", "--json"],
    "stability": ["analyze", "stability", "{run}", "--json"],
    "histogram": ["analyze", "histogram", "{run}", "--json"],
    "flips": ["analyze", "flips", "{run}", "--json", "--top", "5"],
    "weight-diff": ["analyze", "weight-diff", "{run}", "--json", "--include-buffers"],
    "accuracy": ["analyze", "accuracy", "{run}", "--json", "--split", "test"],
    "agreement": ["analyze", "agreement", "{run}", "--json", "--net", "sgd,ema-0.99"],
    "table": ["table", "{run}", "--format", "json"],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_same_numbers_without_linux_calls(run, name):
    argv = [a.format(run=run) for a in COMMANDS[name]]
    normal, stripped = dyn(*argv, strip=False), dyn(*argv, strip=True)
    assert "LIBHDF5=True" in stripped.stderr  # found beside h5py, not through /proc/self/maps
    assert json.loads(stripped.stdout) == json.loads(normal.stdout)
    if name in ("stability", "histogram", "flips", "agreement", "accuracy"):
        # the correctness bits came through the seek-and-read fallback, not h5py
        assert int(stripped.stderr.split("LSEEKS=")[1].split()[0]) > 0


@pytest.mark.slow
def test_report_writes_the_same_files(run, tmp_path):
    dyn("analyze", "report", run, "--out-dir", tmp_path / "a", "--format", "svg", strip=False)
    dyn("analyze", "report", run, "--out-dir", tmp_path / "b", "--format", "svg", strip=True)
    a = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert a == sorted(p.name for p in (tmp_path / "b").iterdir()) and any(n.endswith(".csv") for n in a)
    for n in a:
        if n.endswith(".csv"):
            assert (tmp_path / "a" / n).read_text() == (tmp_path / "b" / n).read_text(), n


def _running(path, sidecar: bool):
    """A run that says running, as a killed writer leaves it; with the sidecar lock file a
    writer leaves where it cannot flock (Windows)."""
    Synthetic(epochs=3, samples=40, decays=(0.9,), weights_every=0).write(path)
    with h5py.File(path, "r+") as f:
        status = f["status"][...]
        status[0] = 0  # running (docs/format.md)
        f["status"][...] = status
    if sidecar:
        (path.parent / f".{path.name}.lock").write_text("4242")
    return path


def test_a_running_run_without_file_locks_is_possibly_live(tmp_path):
    run = _running(tmp_path / "r.h5", sidecar=True)
    text = dyn("inspect", run, strip=True).stdout
    assert "state      running  (possibly live: this platform has no file locks (fcntl)" in text
    shown = json.loads(dyn("inspect", run, "--json", strip=True).stdout)
    assert shown["state"] == "running" and shown["writer_alive"] is None and not shown["resumable"]
    st = dyn("analyze", "stability", run, strip=True)
    assert f"dyn: note: {run} says it is running and may be written as we read" in st.stderr
    # with file locks, the free lock proves the writer dead
    assert json.loads(dyn("inspect", run, "--json", strip=False).stdout)["state"] == "interrupted"
    # without them, no lock file at all means no writer either
    bare = _running(tmp_path / "bare.h5", sidecar=False)
    assert json.loads(dyn("inspect", bare, "--json", strip=True).stdout)["state"] == "interrupted"


def test_writer_lock_without_fcntl_is_an_exclusive_lock_file(tmp_path, monkeypatch):
    import dyn.lock as lock
    from dyn.errors import WriterBusy

    monkeypatch.setattr(lock, "fcntl", None)
    path = tmp_path / "r.h5"
    first = lock.WriterLock(path).acquire()
    assert lock.writer_alive(path) is None
    with pytest.raises(WriterBusy, match=r"its lock file .*\.r\.h5\.lock exists: another process \(pid \d+\)"):
        lock.WriterLock(path).acquire()
    first.release()
    assert lock.writer_alive(path) is False and not lock.lock_path(path).exists()
    lock.WriterLock(path).acquire().release()


def test_fallback_reads_equal_preadv(tmp_path, monkeypatch):
    import numpy as np

    from dyn.analyze import fileio

    data = np.random.default_rng(0).integers(0, 256, 100_000, dtype=np.uint8)
    (tmp_path / "f").write_bytes(data.tobytes())
    fd = fileio.open_binary(tmp_path / "f")
    try:
        want = [fileio.read_at(fd, n, o) for n, o in ((10, 0), (4096, 777), (50, 99_990), (5, 200_000))]
        monkeypatch.delattr(os, "preadv")
        monkeypatch.delattr(os, "pread")
        got = [fileio.read_at(fd, n, o) for n, o in ((10, 0), (4096, 777), (50, 99_990), (5, 200_000))]
    finally:
        os.close(fd)
    assert got == want and [len(g) for g in got] == [10, 4096, 10, 0]
    assert got[1] == data[777:777 + 4096].tobytes()
