"""The Run members that analyses and `dyn inspect` read through instead of run.f: each against
what the synthetic run was written with, or against the file as h5py reads it."""

import gc
import shutil
import weakref
from datetime import datetime

import h5py
import numpy as np
import pytest

import dyn
from dyn.analyze import stream
from dyn.errors import RunFileError
from dyn.reader import open_run
from dyn.synthetic import Synthetic

SPEC = Synthetic(epochs=12, samples=37, weights_every=5, images=True)  # weights at epochs 0, 5, 10


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    return SPEC.write(tmp_path_factory.mktemp("access") / "run.h5")


@pytest.fixture
def copy(path, tmp_path):
    shutil.copy(path, tmp_path / "copy.h5")
    return tmp_path / "copy.h5"


def written(split, net, key):
    return np.stack([kw["evals"][split][net][key] for _, kw in SPEC.records()])


def test_record_dataset_holds_the_written_records(path):
    with open_run(path) as run:
        bits = run.record_dataset("val", "ema-0.9", "correct")
        assert bits.shape == (12, 5)  # 37 samples: 5 bytes a row
        np.testing.assert_array_equal(bits[:12], np.packbits(written("val", "ema-0.9", "correct"), axis=1))
        np.testing.assert_array_equal(run.record_dataset("test", "sgd", "predicted")[:12],
                                      written("test", "sgd", "predicted"))
        with pytest.raises(RunFileError, match="split 'val' has no prob records for 'sgd'"):
            run.record_dataset("val", "sgd", "prob")
        with pytest.raises(ValueError, match="no record 'epoch'"):
            run.record_dataset("val", "sgd", "epoch")


def test_record_dataset_refuses_what_the_reading_method_refuses(copy):
    with h5py.File(copy, "r+") as f:
        del f["splits/val/sgd/correct"]
        f["splits/val/sgd"].create_dataset("correct", data=np.zeros((12, 6), np.uint8), maxshape=(None, 6))
    with open_run(copy) as run:
        with pytest.raises(RunFileError) as direct:
            run.record_dataset("val", "sgd", "correct")
        with pytest.raises(RunFileError) as reading:
            run.correct_packed("val", "sgd")
    assert str(direct.value) == str(reading.value)
    assert str(direct.value).endswith("/splits/val/sgd/correct has shape (12, 6) uint8, expected (epochs, 5) uint8")


def test_recorded_networks_and_images_follow_the_file(copy):
    with h5py.File(copy, "r+") as f:
        del f["splits/test/ema-0.9"]  # as a derived network that was not evaluated there
        del f["splits/test/images"]
    with open_run(copy) as run:
        assert run.networks == ["sgd", "ema-0.9", "ema-0.9995"]
        assert run.recorded_networks("val") == ["sgd", "ema-0.9", "ema-0.9995"]
        assert run.recorded_networks("test") == ["sgd", "ema-0.9995"]
        assert run.has_images("val") and not run.has_images("test")
        np.testing.assert_array_equal(run.images("val"), SPEC.layout().splits["val"].images)
        with pytest.raises(RunFileError, match="no split 'train'"):
            run.recorded_networks("train")


def test_network_values_are_the_committed_rows(copy):
    residual = np.array([0.5, 0.25, 0.125])
    with h5py.File(copy, "r+") as f:
        f["networks/ema-0.9"].create_dataset("residual", data=residual)
        f["networks/ema-0.9995"].create_dataset("residual", data=residual[:2])  # one row short
    with open_run(copy) as run:
        np.testing.assert_array_equal(run.network_values("ema-0.9", "residual"), residual)
        assert run.network_values("sgd", "residual") is None
        with pytest.raises(RunFileError, match=r"ema-0.9995/residual holds 2 rows, 3 were committed"):
            run.network_values("ema-0.9995", "residual")


def test_root_facts(path, tmp_path):
    bare = Synthetic(epochs=2, samples=5, weights_every=0).write(tmp_path / "bare.h5")
    with open_run(path) as run, open_run(bare) as other:
        assert run.records_weights and run.has_weights
        assert not other.records_weights and not other.has_weights
        assert run.dyn_version == dyn.__version__
        assert datetime.fromisoformat(run.created).utcoffset().total_seconds() == 0
        assert run.addresses_are_offsets


def test_chunk_plans_go_with_their_run(path):
    run = open_run(path)
    list(stream.chunks(run, "val", "sgd", 0, 12))
    assert stream._PLANS[run]  # kept for the next read of the same rows
    gone = weakref.ref(run)
    run.close()
    del run
    gc.collect()
    assert gone() is None  # the cache does not keep a closed run alive
