"""Crash safety with real processes: SIGKILLed writers, resumed writers, live readers."""

import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dyn import open_run
from dyn.inspect import summary
from dyn.synthetic import Synthetic

SPEC = dict(epochs=240, samples=1003, splits=("val", "test"), decays=(0.9, 0.99), weights_every=3,
            n_params=20000)

WRITER = """
import sys, time
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter
path, pause = sys.argv[1], float(sys.argv[2])
spec = Synthetic(**{spec!r})
import os
w = RunWriter.resume(path) if os.path.exists(path) else RunWriter.create(path, spec.layout(), {{}})
start = w.rows("metrics")
print("ready", start, flush=True)
for epoch, kw in spec.records():
    if epoch >= start:
        w.append(epoch, **kw)
        print("committed", epoch, flush=True)
        time.sleep(pause)
w.finish()
w.close()
print("done", flush=True)
""".format(spec=SPEC)


@pytest.fixture(scope="module")
def expected():
    return dict(Synthetic(**SPEC).records())


def start_writer(path, pause=0.0):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(pause)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def check_committed(path, expected, at_least):
    """Every committed epoch equals what the writer was given; returns the committed count."""
    with open_run(path) as run:
        n = run.rows("metrics")
        assert n >= at_least, f"{at_least} epochs were reported complete, only {n} readable"
        for s in run.splits:
            assert run.rows(f"split/{s}") == n
            for net in run.networks:
                bits = run.correct(s, net)
                for e in range(n):
                    np.testing.assert_array_equal(bits[e], expected[e]["evals"][s][net]["correct"])
        for e in run.weight_epochs():
            for net in run.networks:
                np.testing.assert_array_equal(run.params(net, e), expected[e]["weights"][net][0])
        m = run.metrics()
        assert list(m["epoch"]) == list(range(n))
    summary(path)  # what `dyn inspect` shows opens too
    return n


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_completed_epoch(tmp_path, expected):
    path = tmp_path / "run.h5"
    rnd = random.Random(1234)
    kills = 0
    for trial in range(30):
        p = start_writer(path)
        if trial < 3:  # also kill while the file is being created
            time.sleep(rnd.uniform(0.0, 1.0))
        else:
            assert p.stdout.readline().startswith("ready")
            time.sleep(rnd.uniform(0.0, 0.12))
        p.send_signal(signal.SIGKILL)
        out, _ = p.communicate()
        if "done" in out:
            break
        kills += 1
        reported = [int(line.split()[1]) for line in out.splitlines() if line.startswith("committed")]
        if not path.exists():
            assert not reported
            continue
        check_committed(path, expected, at_least=max(reported, default=-1) + 1)
    assert kills >= 20
    # The same command resumes the run to the end: equal, bit for bit, to an uninterrupted run.
    p = start_writer(path)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert check_committed(path, expected, SPEC["epochs"]) == SPEC["epochs"]
    with open_run(path) as run:
        assert run.state == "complete"


@pytest.mark.slow
def test_reader_follows_a_live_writer(tmp_path, expected):
    path = tmp_path / "live.h5"
    p = start_writer(path, pause=0.01)
    assert p.stdout.readline().startswith("ready")
    seen, reads, follow = 0, 0, None
    try:
        while p.poll() is None or reads < 100:
            if reads % 2:
                with open_run(path) as run:
                    n = check_rows(run, expected)
            else:
                follow = follow or open_run(path)
                n = check_rows(follow.refresh(), expected)
            assert n >= seen, "epochs went backwards"
            seen, reads = n, reads + 1
            if p.poll() is not None and reads >= 100:
                break
    finally:
        if follow:
            follow.close()
        p.wait(timeout=60)
    assert p.returncode == 0
    assert reads >= 100 and seen == SPEC["epochs"]


def check_rows(run, expected):
    """The newest committed row of every stream is whole and right (no torn epoch)."""
    n = run.rows("metrics")
    if n:
        e = n - 1
        for s in run.splits:
            assert run.rows(f"split/{s}") >= n
            for net in run.networks:
                np.testing.assert_array_equal(run.correct(s, net, slice(e, e + 1))[0],
                                              expected[e]["evals"][s][net]["correct"])
        assert run.metrics()["epoch"].iloc[-1] == e
    return n
