"""Messages that misled (issue 19, point 12): a too-large --val-size blamed on --batch-size, a
raw numpy overflow warning for a diverging loss, imported runs shown with `model=None`, weights
of `--checkpoint-every 10 --epochs 3` shown as "every 3", and `import --split val,test` refused."""

import warnings

import numpy as np
import pytest

from dyn import open_run
from dyn.inspect import render, summary
from dyn.layout import Layout, Network, Param, Split
from dyn.writer import RunWriter


def test_val_size_that_leaves_less_than_a_batch_is_blamed_on_val_size(forkserver, tmp_path):
    r = forkserver.run("train", "--dataset", "digits", "--val-size", "1400", "--epochs", "1", "--no-progress",
                       "--out", tmp_path / "x.h5")
    assert r.code == 2
    assert r.stderr == ("dyn: error: --val-size: 1,400 leaves 37 training samples, fewer than one batch "
                        "(--batch-size 128)\n")
    assert list(tmp_path.iterdir()) == []


def test_a_loss_beyond_float16_is_stored_as_inf_without_a_warning(tmp_path):
    nets = [Network.sgd()]
    lay = Layout(networks=nets, splits={"val": Split(labels=np.zeros(3, np.int64), num_classes=2)}, metrics=[])
    with RunWriter.create(tmp_path / "r.h5", lay, {}) as w, warnings.catch_warnings():
        warnings.simplefilter("error")  # a RuntimeWarning would fail here
        w.append(0, evals={"val": {"sgd": {"correct": np.ones(3, bool), "loss": np.array([1.0, 3e10, np.inf])}}})
        w.finish()
    with open_run(tmp_path / "r.h5") as run:
        assert run.loss("val", "sgd")[0].tolist() == [1.0, np.inf, np.inf]


@pytest.mark.parametrize("epochs, config, shown", [
    ([0, 3], {"checkpoint_every": 10}, "2 records, every 10 and at epoch 3)"),
    ([0, 5, 10, 12], {"checkpoint_every": 5}, "4 records, every 5 and at epoch 12)"),
    ([0, 5, 10, 12], {}, "4 records, every 5 and at epoch 12)"),     # no config: the other gaps
    ([0, 5, 10], {"checkpoint_every": 5}, "3 records, every 5)"),
    ([0, 1, 3], {}, "3 records)"),                                    # irregular: no spacing claimed
])
def test_weights_spacing_is_the_checkpoint_spacing(tmp_path, epochs, config, shown):
    lay = Layout(networks=[Network.sgd()], params=[Param("w", (2,), "param")])
    with RunWriter.create(tmp_path / "r.h5", lay, config) as w:
        for e in epochs:
            w.append(e, weights={"sgd": (np.ones(2), None)})
        w.finish()
    assert shown in render(summary(tmp_path / "r.h5"))


@pytest.mark.slow
def test_import_split_takes_a_comma_list(forkserver, tmp_path):
    import torch

    from dyn.train.models import build_model

    torch.manual_seed(0)
    (tmp_path / "ck").mkdir()
    torch.save(build_model("resnet20", 10, in_channels=1).state_dict(), tmp_path / "ck" / "model_1.pth")
    r = forkserver.run("import", "checkpoints", tmp_path / "ck", "--evaluate", "--model", "resnet20",
                       "--dataset", "digits", "--split", "val,test", "--out", tmp_path / "x.h5")
    assert r.code == 0, r.stderr
    assert "evaluated on val, test" in r.stdout
    with open_run(tmp_path / "x.h5") as run:
        assert sorted(run.splits) == ["test", "val"]
        assert [run.split_size(s) for s in ("val", "test")] == [360, 360]
