"""SIGKILL of `dyn train` at 30 moments, then one `--resume`: nothing is lost, nothing differs.

The moments: random ones (a random progress line of the process, then a random delay: in
training, in evaluation, in the writes), and, through the writer's test-only pause points
($DYN_TEST_PAUSE, dynamics/writer.py), moments inside the epoch-end write (half of the datasets
written, or all flushed but /status not yet committed), inside a resume (the file repaired but
not yet shrunk back, shrunk but not yet in SWMR mode, or in its first epoch) and inside the
creation of the file. After every kill the file opens with the reader and with `dyn inspect`,
and every epoch the process had reported complete is there, equal bit for bit to the same epoch
of an uninterrupted run. At the end, `dyn train --resume` in a fresh interpreter finishes the
run and the whole file equals the uninterrupted run's, bit for bit.

The killed processes are `dyn train` forked from a pre-imported parent (tests/forkserver.py),
which saves the 3-14 s of `import torch` per start; the uninterrupted run and the final resume
are fresh interpreters.
"""

import json
import random
import signal
import time
from collections import Counter

import numpy as np
import pytest

from dyn import open_run
from helpers import DIGITS, DIGITS_EPOCHS, assert_same_records, run_dyn

KILLS = 30
PAUSE = 0.3  # seconds the writer waits at the chosen point: the kill lands inside it
TRAIN = ["train", *DIGITS, "--epochs", str(DIGITS_EPOCHS), "--resume"]


def records(path) -> dict:
    """Everything a run file commits, per epoch: the reference to compare killed runs with."""
    with open_run(path) as run:
        out = {"rows": run.rows("metrics"), "weight_epochs": run.weight_epochs(), "splits": {}, "weights": {}}
        for split in ("val", "test"):
            out["splits"][split] = {net: (run.correct_packed(split, net), run.predicted(split, net),
                                          run.loss(split, net)) for net in run.networks}
        for e in run.weight_epochs():
            out["weights"][int(e)] = {net: (run.params(net, e), run.buffers(net, e)) for net in run.networks}
        m = run.metrics()
        out["metrics"] = m[[c for c in m.columns if c != "seconds"]].to_numpy()
    return out


def check_intact(path, ref, reported: int) -> int:
    """The file of a killed run opens; every committed epoch equals the reference's; at least
    epochs 0..reported are committed. Returns the committed epochs."""
    with open_run(path) as run:
        assert run.state == "interrupted", run.state
        n = run.rows("metrics")
        assert n >= reported + 1, f"epoch {reported} was reported complete, the file commits {n} epochs"
        assert list(run.metrics()["epoch"]) == list(range(n))
        np.testing.assert_array_equal(
            run.metrics()[[c for c in run.metric_columns if c != "seconds"]].to_numpy(), ref["metrics"][:n])
        for split in ("val", "test"):
            assert run.rows(f"split/{split}") == n
            assert list(run.epochs(split)) == list(range(n))
            for net in run.networks:
                for got, want in zip((run.correct_packed(split, net), run.predicted(split, net),
                                      run.loss(split, net)), ref["splits"][split][net]):
                    np.testing.assert_array_equal(got, want[:n])
        we = run.weight_epochs()
        assert list(we) == list(range(n))  # --checkpoint-every 1
        for e in we:
            for net in run.networks:
                np.testing.assert_array_equal(run.params(net, e), ref["weights"][int(e)][net][0])
                np.testing.assert_array_equal(run.buffers(net, e), ref["weights"][int(e)][net][1])
        if n:
            assert run.resumable and run.resume_state()[0] == n - 1
    return n


def plan(rnd):
    """(kind, environment, the line after which to kill, the delay after it), kill after kill."""
    def nth(j):
        seen = [0]

        def match(line):
            seen[0] += 1
            return seen[0] == j
        return match

    def anytime():  # the j-th line of the process (0: its start), then up to 0.8 s
        j = rnd.randrange(0, 10)
        return "random", {"DYN_TEST_PAUSE": "0"}, nth(j) if j else None, rnd.uniform(0, 0.8)

    # the creation of the file, killed before its rename, then after it but before epoch 0 is in
    yield "create", {"DYN_TEST_PAUSE": f"{PAUSE}:create"}, has("create: built"), rnd.uniform(0, PAUSE)
    yield "no epoch yet", {"DYN_TEST_PAUSE": "0"}, has("open: ready"), rnd.uniform(0, 0.3)
    rest = [anytime() for _ in range(13)]
    for _ in range(8):
        point = rnd.choice(["half written", "flushed"])
        rest.append(("write", {"DYN_TEST_PAUSE": f"{PAUSE}:{point}"}, has(point), rnd.uniform(0, PAUSE)))
    for _ in range(7):
        point = rnd.choice(["open: repaired", "open: shrunk", "open: ready"])
        rest.append(("resume", {"DYN_TEST_PAUSE": f"{PAUSE}:open"}, has(point), rnd.uniform(0, PAUSE)))
    rnd.shuffle(rest)
    yield from rest
    while True:  # should a kill come too late (the run finished), one more
        yield anytime()


def has(text):
    return lambda line: line.startswith("dyn-test:") and text in line


def kill_when(child, match, delay: float) -> list[str]:
    """SIGKILL `child` `delay` s after its first stderr line that `match`es (None: its start);
    returns every line it wrote. A child that ends first is not killed."""
    lines, fire = [], (time.monotonic() + delay if match is None else None)
    while child.poll() is None:
        for line in child.new_lines():
            lines.append(line)
            if fire is None and match(line):
                fire = time.monotonic() + delay
        if fire is not None and time.monotonic() >= fire:
            child.kill(signal.SIGKILL)
            break
        time.sleep(0.002)
    child.wait(120)
    return lines + child.new_lines()


def where_killed(lines: list[str], resumed: bool) -> str:
    """What the process was doing when it died, from its last words."""
    trace = [line[len("dyn-test: "):] for line in lines if line.startswith("dyn-test: ")]
    if trace and trace[-1].startswith("epoch") and not trace[-1].endswith("committed"):
        return "in the epoch-end write"
    if trace and trace[-1] == "create: built":
        return "in the creation of the file"
    if resumed and "open: ready" not in trace:
        return "in a resume's repair of the file"
    if resumed and not any(t.endswith("committed") for t in trace):
        return "in a resume's first epoch"
    return "in training or evaluation"


def reported_epoch(lines: list[str]) -> int:
    """The last epoch the process said was complete (-1: none)."""
    done = [int(line.split()[2]) for line in lines
            if line.startswith("dyn-test: epoch") and "metrics" in line and line.endswith("committed")]
    done += [int(line.split()[1].split("/")[0]) for line in lines if line.startswith("epoch ")]
    return max(done, default=-1)


@pytest.mark.slow
def test_thirty_kills_lose_no_epoch_and_the_resumed_run_equals_an_uninterrupted_one(
        forkserver, digits_reference, tmp_path):
    ref = records(digits_reference)
    path = tmp_path / "run.h5"
    rnd = random.Random(20261128)
    landed, lineages, started = Counter(), 0, time.monotonic()
    for kind, env, match, delay in plan(rnd):
        if sum(landed.values()) == KILLS:
            break
        resumed = path.exists()
        child = forkserver.start(*TRAIN, "--out", path, env=env)
        lines = kill_when(child, match, delay)
        status = child.status
        assert "Traceback" not in "\n".join(lines), "\n".join(lines)
        if "code" in status:  # finished before the kill: a fast machine; start a new lineage
            assert status["code"] == 0, "\n".join(lines)
            assert_same_records(digits_reference, path)
            path.unlink()
            lineages += 1
            continue
        assert status["signal"] == signal.SIGKILL
        landed[(kind, where_killed(lines, resumed))] += 1
        reported = reported_epoch(lines)
        if not path.exists():
            assert reported == -1
            continue
        check_intact(path, ref, reported)
        r = forkserver.run("inspect", path, "--json", timeout=60)
        assert r.code == 0, r.stderr
        shown = json.loads(r.stdout)
        with open_run(path) as run:
            assert shown["state"] == "interrupted" and shown["metrics"]["rows"] == run.rows("metrics")
            assert [s["records"] for s in shown["splits"]] == [run.rows(f"split/{s}") for s in run.splits]
    print(f"\n{KILLS} kills in {time.monotonic() - started:.0f} s:", dict(sorted(landed.items())),
          "completed lineages:", lineages)
    assert sum(n for (kind, where), n in landed.items() if where == "in the epoch-end write") >= 8
    assert sum(n for (kind, where), n in landed.items() if where.startswith("in a resume")) >= 7
    # One more, between the last records (the training set, clean and augmented, after the last
    # epoch) and the mark that the run is complete.
    child = forkserver.start(*TRAIN, "--out", path,
                             env={"DYN_TEST_PAUSE": f"{PAUSE}:split/train-augmented): committed"})
    lines = kill_when(child, has("split/train-augmented): committed"), PAUSE / 2)
    assert child.status.get("signal") == signal.SIGKILL, "\n".join(lines)
    with open_run(path) as run:
        assert run.state == "interrupted" and run.rows("split/train") == run.rows("split/train-augmented") == 1
    # One `dyn train --resume`, a fresh interpreter, finishes the run: equal to the uninterrupted one.
    r = run_dyn(*TRAIN, "--out", path)
    assert r.returncode == 0, r.stderr
    assert_same_records(digits_reference, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.h5"]  # no lock, no temporary left
