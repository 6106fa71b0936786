"""`dyn train --dataset cifar10` end to end on a tiny fake CIFAR-10 in torchvision's on-disk layout.

The fake files carry their own md5 sums, not the real ones, so torchvision's integrity check is
patched; that patch lives in this interpreter, so the command runs in-process (dyn.cli.main)
rather than through run_dyn.
"""

import shutil
import tarfile

import numpy as np
import pytest
import torch

from dyn import open_run
from dyn.cli import main
from test_data import N_PER_BATCH, N_TEST, fake_cifar, no_network, trust_fake_files  # noqa: F401 (fixtures)

N_TRAIN_FILE = 5 * N_PER_BATCH  # the fake 50k training file
VAL = 5


def dyn_train(data_dir, out, capsys):
    args = ["train", "--dataset", "cifar10", "--data-dir", str(data_dir), "--val-size", str(VAL),
            "--model", "resnet20", "--schedule", "constant", "--decay", "0.9,0.99", "--epochs", "1",
            "--batch-size", "8", "--no-progress", "--out", str(out)]
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    err = capsys.readouterr().err
    assert code == 0, err
    assert "Traceback" not in err and "epoch 1/1" in err
    return err


def authors_split():
    """The authors' split of the training file, by torch's own random_split (generator seeded 1234)."""
    train, val = torch.utils.data.random_split(range(N_TRAIN_FILE), [N_TRAIN_FILE - VAL, VAL],
                                               generator=torch.Generator().manual_seed(1234))
    return np.array(train.indices), np.array(val.indices)


def check_run(out, train_x, train_y, test_x, test_y):
    train_ix, val_ix = authors_split()
    with open_run(out) as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"]
        assert {s: run.split_size(s) for s in run.splits} == {"val": VAL, "test": N_TEST,
                                                              "train": N_TRAIN_FILE - VAL,
                                                              "train-augmented": N_TRAIN_FILE - VAL}
        assert "zero-pad 4" in run.augmentation("train-augmented")  # CIFAR-10's training pad
        np.testing.assert_array_equal(run.dataset_index("val"), val_ix)
        np.testing.assert_array_equal(run.dataset_index("train"), train_ix)
        np.testing.assert_array_equal(run.dataset_index("test"), np.arange(N_TEST))
        np.testing.assert_array_equal(run.labels("val"), train_y[val_ix])
        np.testing.assert_array_equal(run.labels("train"), train_y[train_ix])
        np.testing.assert_array_equal(run.labels("test"), test_y)
        # the stored val images are the fake file's pixels, NHWC (CIFAR rows are R, G, B planes)
        np.testing.assert_array_equal(run.images("val"), train_x[val_ix].transpose(0, 2, 3, 1))
        # per epoch: epoch 0 and 1 on val and test, the un-augmented train split once at the end
        assert list(run.epochs("val")) == list(run.epochs("test")) == [0, 1]
        assert list(run.epochs("train")) == list(run.epochs("train-augmented")) == [1]
        assert list(run.weight_epochs()) == [0, 1]
        for split in run.splits:
            for net in run.networks:
                assert run.correct(split, net).shape == (len(run.epochs(split)), run.split_size(split))
        m = run.metrics()
        assert list(m["epoch"]) == [0, 1]
        assert list(m["iteration"]) == [0, 2]  # 15 training images in batches of 8
        for net in run.networks:
            for split in ("val", "test"):
                acc = run.correct(split, net).mean(axis=1)
                np.testing.assert_allclose(m[f"{net}/{split}/acc"], acc)
        assert run.config["dataset"] == "cifar10" and run.config["val_size"] == VAL
        assert run.config["train_size"] == N_TRAIN_FILE - VAL


def test_fake_cifar10_folder_trains_and_records(tmp_path, trust_fake_files, no_network, capsys):
    arrays = fake_cifar(tmp_path / "data")
    dyn_train(tmp_path / "data", tmp_path / "run.h5", capsys)
    check_run(tmp_path / "run.h5", *arrays)


def test_fake_cifar10_archive_alone_is_extracted_and_trains(tmp_path, trust_fake_files, no_network, capsys):
    arrays = fake_cifar(tmp_path / "src")
    data = tmp_path / "data"
    data.mkdir()
    with tarfile.open(data / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    shutil.rmtree(tmp_path / "src")
    dyn_train(data, tmp_path / "run.h5", capsys)
    assert (data / "cifar-10-batches-py" / "test_batch").is_file()
    check_run(tmp_path / "run.h5", *arrays)
