"""Accuracy curves, seed bands and grouping of runs that differ only in seed."""

import numpy as np
import pytest

from dyn.analyze.measures.accuracy import accuracy, lr_at, seed_band, seed_bands
from dyn.analyze.runs import group_seeds


def test_accuracy_of_packed_rows():
    c = np.array([[1, 1, 0, 0, 1], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]], bool)
    assert accuracy(np.packbits(c, axis=1), 5).tolist() == pytest.approx([0.6, 0.0, 1.0])


def test_minmax_band_on_common_epochs():
    b = seed_band([([0, 1, 2, 3], [0.1, 0.2, 0.3, 0.4]),
                   ([1, 2, 3, 4], [0.4, 0.5, 0.6, 0.7]),
                   ([1, 3], [0.3, 0.2])])
    assert b.epochs.tolist() == [1, 3] and b.n_runs == 3 and b.kind == "minmax"
    assert b.mean.tolist() == pytest.approx([0.3, 0.4])
    assert b.lo.tolist() == pytest.approx([0.2, 0.2]) and b.hi.tolist() == pytest.approx([0.4, 0.6])


def test_std_band_uses_sample_std_and_none_for_one_run():
    b = seed_band([([0, 1], [1.0, 2.0]), ([0, 1], [3.0, 2.0])], kind="std")
    assert b.lo.tolist() == pytest.approx([2 - np.sqrt(2), 2.0])
    one = seed_band([([0, 1], [1.0, 2.0])], kind="std")
    assert np.isnan(one.lo).all() and one.mean.tolist() == [1.0, 2.0]


def test_band_errors():
    with pytest.raises(ValueError, match="share no"):
        seed_band([([0], [1.0]), ([1], [1.0])])
    with pytest.raises(ValueError, match="kind"):
        seed_band([([0], [1.0])], kind="iqr")
    with pytest.raises(ValueError, match="values for"):
        seed_band([([0, 1], [1.0])])


def run(schedule, seed, values, lr=0.1):
    return {"model": "resnet20", "dataset": "cifar10", "schedule": schedule, "lr": lr,
            "seed": seed, "curve": (np.arange(len(values)), np.asarray(values))}


def test_seed_bands_group_only_runs_that_differ_in_seed():
    runs = [run("constant", 1, [0.1, 0.2]), run("cosine", 1, [0.5, 0.5]),
            run("constant", 2, [0.3, 0.4]), run("constant", 3, [0.2, 0.3], lr=0.05)]
    bands = seed_bands(runs)
    assert len(bands) == 3
    b = bands[("resnet20", "cifar10", "constant", 0.1)]
    assert b.n_runs == 2 and b.mean.tolist() == pytest.approx([0.2, 0.3])


def test_grouping_refuses_repeated_seeds_and_missing_keys():
    with pytest.raises(ValueError, match="share seed 1"):
        group_seeds([run("constant", 1, [0.1]), run("constant", 1, [0.2])])
    with pytest.raises(ValueError, match="lacks 'schedule'"):
        group_seeds([{"model": "m", "dataset": "d", "lr": 0.1, "seed": 1}])


def test_lr_hook_evaluates_a_closed_form():
    assert lr_at([0, 90, 135], lambda e: 0.1 * 0.1 ** ((e >= 90) + (e >= 135))).tolist() == \
        pytest.approx([0.1, 0.01, 0.001])
