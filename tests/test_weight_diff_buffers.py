"""weight-diff --include-buffers leaves integer buffers (num_batches_tracked) out of the norms
(issue 19, point 2): a step counter in the thousands is not a weight, and with it ||SGD|| is
the counter and every EMA network reads as almost equal to SGD."""

import numpy as np

from dyn.layout import Layout, Network, Param, Split
from dyn.writer import RunWriter
from helpers import run_dyn


def _run(path):
    """One epoch of weights, by hand: params, a float running mean and a huge step counter."""
    params = [Param("w", (2,), "param"), Param("bn.running_mean", (2,), "buffer"),
              Param("bn.num_batches_tracked", (), "buffer", "int64")]
    nets = [Network.sgd(), Network.ema(0.99)]
    split = Split(labels=np.zeros(4, np.int64), index=np.arange(4), num_classes=2)
    lay = Layout(networks=nets, splits={"test": split}, params=params, metrics=["lr"])
    sgd = (np.float32([3, 0]), np.float64([0, 4, 23550]))
    ema = (np.float32([0, 0]), np.float64([0, 0, 23550]))
    ev = {"test": {n.name: {"correct": np.ones(4, bool)} for n in nets}}
    with RunWriter.create(path, lay, {"model": "m", "dataset": "d", "seed": 0}) as w:
        w.append(0, metrics={"lr": 0.1}, evals=ev, weights={"sgd": sgd, "ema-0.99": ema})
        w.finish()
    return path


def test_include_buffers_leaves_integer_counters_out(tmp_path):
    run = _run(tmp_path / "r.h5")
    r = run_dyn("analyze", "weight-diff", run, "--include-buffers", "--csv", tmp_path / "w.csv")
    assert r.returncode == 0, r.stderr
    import pandas as pd

    row = pd.read_csv(tmp_path / "w.csv").iloc[0]
    # ||(3,0,0,4) - (0,0,0,0)|| / ||(3,0,0,4)|| = 5/5; with the counter it would be 5/23550.5
    assert (row.diff_norm, row.sgd_norm, row.relative) == (5.0, 5.0, 1.0)
    assert row.buffers == "bn.running_mean"
    assert "1 float buffers (bn.running_mean)" in r.stdout
    plain = run_dyn("analyze", "weight-diff", run, "--csv", tmp_path / "p.csv")
    p = pd.read_csv(tmp_path / "p.csv").iloc[0]
    assert (p.diff_norm, p.sgd_norm, p.relative) == (3.0, 3.0, 1.0) and np.isnan(p.buffers)
