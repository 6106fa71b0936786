"""A full disk (simulated with RLIMIT_FSIZE) stops a writer before it can damage the file."""

import resource
import subprocess
import sys

import numpy as np

from dyn import open_run
from dyn.synthetic import Synthetic

SPEC = dict(epochs=60, samples=1003, splits=("val", "test"), decays=(0.9, 0.99), weights_every=3, n_params=20000)
WRITER = f"""
import os, sys
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter
from dyn.errors import DiskFull
spec = Synthetic(**{SPEC!r})
path = sys.argv[1]
w = RunWriter.resume(path) if os.path.exists(path) else RunWriter.create(path, spec.layout(), {{}})
start = w.rows("metrics")
try:
    for epoch, kw in spec.records():
        if epoch >= start:
            w.append(epoch, **kw)
    w.finish()
except DiskFull as e:
    print(e)
    sys.exit(1)
finally:
    w.close()
"""


def write(path, limit=None):
    def cap():
        if limit:
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-c", WRITER, str(path)], capture_output=True, text=True,
                          preexec_fn=cap, timeout=300)


def test_file_size_limit_stops_cleanly_and_the_run_resumes_bit_for_bit(tmp_path):
    path = tmp_path / "run.h5"
    r = write(path, limit=6_000_000)
    assert r.returncode == 1, r.stderr
    assert "not enough room to record epoch" in r.stdout and "file size limit" in r.stdout
    assert "Traceback" not in r.stderr and "Segmentation" not in r.stderr
    with open_run(path) as run:
        kept = run.rows("metrics")
        assert run.state == "stopped" and 0 < kept < SPEC["epochs"]
    assert f"keeps epochs up to {kept - 1}" in r.stdout
    r = write(path)  # room again: the same command finishes the run
    assert r.returncode == 0, r.stderr
    expected = dict(Synthetic(**SPEC).records())
    with open_run(path) as run:
        assert run.state == "complete" and run.rows("metrics") == SPEC["epochs"]
        for s in run.splits:
            for n in run.networks:
                bits = run.correct(s, n)
                for e in range(SPEC["epochs"]):
                    np.testing.assert_array_equal(bits[e], expected[e]["evals"][s][n]["correct"])
        for e in run.weight_epochs():
            for n in run.networks:
                np.testing.assert_array_equal(run.params(n, e), expected[e]["weights"][n][0])
