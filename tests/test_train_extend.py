"""A finished run: contradicting flags refused as for a stopped run, and `--extend-to N` to
train it on (issue 19, point 5).

With a constant schedule, a 2-epoch run extended to 4 equals the uninterrupted 4-epoch run
bit for bit in every per-epoch record: val and test correctness, predictions, losses, metrics
(but wall-clock seconds) and weights. What differs, by design: the train split (evaluated
once, at a run's last epoch) has a row at epoch 2 as well as at 4, and the config records
`extended_from: [2]`. Processes come from the fork server (no torch import each).
"""

import numpy as np
import pytest

from dyn import open_run
from helpers import DIGITS

SHORT, LONG = 2, 4


@pytest.fixture(scope="module")
def short(forkserver, tmp_path_factory):
    out = tmp_path_factory.mktemp("extend") / "short.h5"
    r = forkserver.run("train", *DIGITS, "--epochs", SHORT, "--out", out)
    assert r.code == 0, r.stderr
    return out


@pytest.mark.parametrize("flags, message", [
    (["--epochs", "100", "--lr", "0.3"], "--epochs: 100 contradicts the run being resumed"),
    (["--lr", "0.3"], "--lr: 0.3 contradicts the run being resumed"),
    (["--extend-to", "2"], "--extend-to 2: {out} already trains to epoch 2"),
    (["--extend-to", "8", "--epochs", "8"], "--epochs and --extend-to"),
])
def test_a_finished_run_refuses_contradicting_flags(forkserver, short, flags, message):
    before = short.read_bytes()
    r = forkserver.run("train", "--resume", "--out", short, *flags)
    assert r.code == 2 and r.stderr.startswith(f"dyn: error: {message.format(out=short)}"), r.stderr
    assert len(r.stderr.splitlines()) == 1 and short.read_bytes() == before


@pytest.mark.slow
def test_extend_to_equals_the_uninterrupted_longer_run(forkserver, short, tmp_path):
    ref = tmp_path / "ref.h5"
    r = forkserver.run("train", *DIGITS, "--epochs", LONG, "--out", ref)
    assert r.code == 0, r.stderr
    run = tmp_path / "x.h5"
    run.write_bytes(short.read_bytes())
    r = forkserver.run("train", "--resume", "--out", run, "--extend-to", LONG, "--no-progress")
    assert r.code == 0, r.stderr
    assert f"extending from epoch {SHORT} to {LONG}" in r.stderr
    with open_run(ref) as a, open_run(run) as b:
        assert b.state == "complete" and a.networks == b.networks
        assert b.config["epochs"] == LONG and b.config["extended_from"] == [SHORT]
        for split in ("val", "test"):
            np.testing.assert_array_equal(a.epochs(split), b.epochs(split))
            for net in a.networks:
                np.testing.assert_array_equal(a.correct_packed(split, net), b.correct_packed(split, net))
                np.testing.assert_array_equal(a.predicted(split, net), b.predicted(split, net))
                np.testing.assert_array_equal(a.loss(split, net), b.loss(split, net))
        np.testing.assert_array_equal(a.weight_epochs(), b.weight_epochs())
        for e in a.weight_epochs():
            for net in a.networks:
                np.testing.assert_array_equal(a.params(net, e), b.params(net, e))
                np.testing.assert_array_equal(a.buffers(net, e), b.buffers(net, e))
        cols = [c for c in a.metrics().columns if c != "seconds"]
        np.testing.assert_array_equal(a.metrics()[cols].to_numpy(), b.metrics()[cols].to_numpy())
        # the train split: evaluated at each end, so the extended run has it at both ends
        assert a.epochs("train").tolist() == [LONG]
        assert b.epochs("train").tolist() == [SHORT, LONG]
        for net in a.networks:
            np.testing.assert_array_equal(a.correct_packed("train", net), b.correct_packed("train", net)[1:])


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_extend_refuses_a_length_dependent_schedule(tmp_path, schedule):
    from dyn.errors import UsageError
    from dyn.synthetic import Synthetic
    from dyn.train.cli import _extend

    run = Synthetic(epochs=3, samples=20, n_params=20).write(tmp_path / "r.h5")
    before = run.read_bytes()
    with pytest.raises(UsageError, match=f"uses the {schedule} schedule, whose lr at every step depends on"):
        _extend(run, {"schedule": schedule, "epochs": 2}, {}, 10, 2, 1)
    assert run.read_bytes() == before
