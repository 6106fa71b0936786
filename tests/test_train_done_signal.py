"""Once a run is complete, an interrupt changes nothing about its exit (issue 19, point 9):
`dyn train` exits 0 for a Ctrl-C or SIGTERM that arrives after `done:`, and `dyn sweep`
counts a run whose file is complete as completed whatever its process's exit."""

import signal
import sys

import pytest

from dyn import open_run
from helpers import DIGITS


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_after_done_leaves_exit_0(forkserver, tmp_path, sig):
    out = tmp_path / "x.h5"
    # the process pauses on its way out, after the Trainer returned: the signal lands there
    child = forkserver.start("train", *DIGITS, "--epochs", 1, "--out", out,
                             env={"DYN_TEST_PAUSE": "3:train: returning"})
    assert child.wait_line(lambda line: line == "dyn-test: train: returning", timeout=300)
    child.kill(sig)
    r = child.wait(60)
    assert (r.code, r.signal) == (0, None), r.stderr
    assert f"done: {out}" in r.stderr
    assert "interrupted" not in r.stderr
    with open_run(out) as run:
        assert run.state == "complete"


def test_sweep_counts_a_complete_file_as_completed_whatever_the_exit(tmp_path):
    from dyn.train.config import TrainConfig
    from dyn.train.sweep import Run, Runner

    runs = [Run(TrainConfig(seed=k), tmp_path / f"r{k}.h5") for k in range(2)]

    def command(run):  # seed 0: completes its file, then "is interrupted"; seed 1: only interrupted
        write = f"Synthetic(epochs=2, samples=10, n_params=10).write({str(run.out)!r}); " if run.cfg.seed == 0 else ""
        return [sys.executable, "-c", f"from dyn.synthetic import Synthetic; {write}raise SystemExit(130)"]

    lines = []
    Runner([{}], command=command, echo=lines.append).run(runs)
    assert [r.result for r in runs] == ["completed", "failed"], lines
