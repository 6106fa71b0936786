"""Analysis of a run while `dyn train` writes it: 100 rounds of `dyn analyze stability`,
`dyn analyze flips` and `dyn inspect`, each a real process, on the live file.

Every command must succeed; epochs never go backwards from one round to the next; and no epoch
is torn: what a command saw up to epoch E equals what the same command says, with
`--to-epoch E`, about the finished file, so it read only whole, committed epochs. Training runs
in a fresh interpreter; the analyses are forked from a pre-imported parent (tests/forkserver.py)
so that 300 of them fit in about a minute.
"""

import json
import signal
import subprocess
import sys
import time

import pytest

from dyn import open_run
from helpers import DIGITS, ROOT

ROUNDS = 100


def analysis(result) -> dict:
    assert result.code == 0 and "Traceback" not in result.stderr, result.stderr
    out = json.loads(result.stdout)
    for run in out.get("runs", []):
        run.pop("path")
    return out


@pytest.mark.slow
def test_analyses_of_a_live_run_see_whole_epochs_that_never_go_backwards(forkserver, tmp_path):
    path = tmp_path / "live.h5"
    log = tmp_path / "train.log"
    train = subprocess.Popen([sys.executable, "-m", "dyn", "train", *DIGITS, "--epochs", "1000",
                              "--out", str(path)], cwd=ROOT, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 300
        while "epoch 1/" not in log.read_text():  # two epochs: the least stability needs
            assert train.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        seen, last, running = ({}, {}), -1, 0
        for _ in range(ROUNDS):
            shown = analysis(forkserver.run("inspect", path, "--json", timeout=60))
            rows = shown["metrics"]["rows"]
            records = {s["name"]: s["records"] for s in shown["splits"]}
            # train and train-augmented: only after the last epoch
            assert records == {"val": rows, "test": rows, "train": 0, "train-augmented": 0}
            assert shown["weights"]["last_epoch"] == rows - 1
            running += shown["state"] == "running" and shown["writer_alive"]
            stability = analysis(forkserver.run("analyze", "stability", path, "--json", timeout=60))
            flips = analysis(forkserver.run("analyze", "flips", path, "--json", timeout=60))
            epochs = stability["runs"][0]["networks"]["sgd"]["epochs"]
            assert epochs == list(range(len(epochs))) and flips["runs"][0]["epochs"][-1] >= epochs[-1]
            assert rows - 1 <= epochs[-1], "an analysis saw fewer epochs than an earlier inspect"
            assert epochs[-1] >= last, f"epochs went backwards: {last} then {epochs[-1]}"
            last = epochs[-1]
            seen[0].setdefault(last, stability)
            seen[1].setdefault(flips["runs"][0]["epochs"][-1], flips)
    finally:
        train.send_signal(signal.SIGTERM)
        train.wait(timeout=120)
    assert train.returncode == 143, log.read_text()
    assert running == ROUNDS  # the writer held the file through every round
    assert len(seen[0]) >= 3, f"training hardly moved during the analyses: epochs {sorted(seen[0])}"
    with open_run(path) as run:
        assert run.state == "stopped" and run.rows("metrics") > last
    # no torn epoch: the finished file, cut at each epoch a live analysis ended at, says the same
    for command, results in zip(("stability", "flips"), seen):
        for epoch, live in results.items():
            assert analysis(forkserver.run("analyze", command, path, "--to-epoch", epoch, "--json")) == live
    print(f"\n{ROUNDS} rounds; live analyses ended at {len(seen[0])} different epochs, up to {last}")
