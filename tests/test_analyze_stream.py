"""dyn.analyze.stream: raw chunk reads give exactly the reader's rows, whatever the window,
chunking or file; the fallback too; and a live run shows only committed rows."""

import threading

import h5py
import numpy as np
import pytest

from dyn.analyze import stream
from dyn.layout import Layout, Network, Split
from dyn.reader import open_run
from dyn.synthetic import Synthetic
from dyn.writer import RunWriter


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    # 1003 samples: rows of 126 bytes, the last with 5 padding bits; 300 epochs span 2 HDF5 chunks
    return Synthetic(epochs=300, samples=1003, predictions=False, weights_every=0).write(
        tmp_path_factory.mktemp("stream") / "run.h5")


def collect(it):
    return np.concatenate([c.copy() for c in it])  # copies: a chunk's buffer is reused


@pytest.mark.parametrize("lo,hi", [(0, 300), (1, 299), (255, 257), (256, 300), (17, 18)])
@pytest.mark.parametrize("read_bytes,ahead", [(1 << 20, True), (126 * 7, True), (126 * 7, False), (1, True)])
def test_raw_reads_equal_the_reader(run_file, lo, hi, read_bytes, ahead):
    with open_run(run_file) as run:
        ds = run.f["splits/val/ema-0.9/correct"]
        assert stream._chunk_plan(run, ds, lo, hi) is not None  # the fast path is the one tested
        got = collect(stream.chunks(run, "val", "ema-0.9", lo, hi, read_bytes=read_bytes, ahead=ahead))
        assert np.array_equal(got, run.correct_packed("val", "ema-0.9", slice(lo, hi)))


def test_compressed_dataset_falls_back_to_h5py(tmp_path):
    path = Synthetic(epochs=40, samples=77, predictions=False, weights_every=0).write(tmp_path / "run.h5")
    with open_run(path) as run:
        want = run.correct_packed("test", "sgd")
    with h5py.File(path, "r+") as f:  # as another tool might store it
        g = f["splits/test/sgd"]
        del g["correct"]
        g.create_dataset("correct", data=want, maxshape=(None, want.shape[1]), chunks=(8, want.shape[1]),
                         compression="gzip")
    with open_run(path) as run:
        assert stream._chunk_plan(run, run.f["splits/test/sgd/correct"], 0, 40) is None
        assert np.array_equal(collect(stream.chunks(run, "test", "sgd", 3, 40, read_bytes=50)), want[3:])
        assert np.array_equal(stream.columns(run, "test", "sgd", 3, 40, [1, 9]), want[3:, [1, 9]])
        # aligned() pairs the fallback's chunks with the raw path's, of other lengths
        pairs = [(a.copy(), b.copy()) for a, b in stream.aligned(
            [stream.chunks(run, "test", "sgd", 0, 40, read_bytes=50),
             stream.chunks(run, "test", "ema-0.9", 0, 40, read_bytes=10 * 10)])]
        assert [len(c) for c in stream.chunks(run, "test", "ema-0.9", 0, 40, read_bytes=100)] == [40]
        assert [(len(a), len(b)) for a, b in pairs] == [(5, 5)] * 8
        assert np.array_equal(np.concatenate([a for a, _ in pairs]), want)
        assert np.array_equal(np.concatenate([b for _, b in pairs]), run.correct_packed("test", "ema-0.9"))


def test_abandoning_a_stream_stops_its_reader_thread(run_file):
    before = threading.active_count()
    with open_run(run_file) as run:
        it = stream.chunks(run, "val", "sgd", 0, 300, read_bytes=126 * 3)
        next(it)
        it.close()
    assert threading.active_count() == before


def test_a_live_run_streams_its_committed_rows(tmp_path):
    n = 50
    lay = Layout(networks=[Network.sgd()], splits={"val": Split(labels=np.zeros(n, int), predicted=False,
                                                                loss=False)})
    rng = np.random.default_rng(0)
    rows = rng.random((5, n)) < 0.5
    with RunWriter.create(tmp_path / "live.h5", lay, {}) as w:
        for e in range(3):
            w.append(e, evals={"val": {"sgd": {"correct": rows[e]}}})
        with open_run(tmp_path / "live.h5") as run:
            w.append(3, evals={"val": {"sgd": {"correct": rows[3]}}})  # after the reader opened
            assert run.rows("split/val") == 3
            got = collect(stream.chunks(run, "val", "sgd", 0, 3))
        assert np.array_equal(got, np.packbits(rows[:3], axis=1))


def test_feed_runs_each_network_once_in_parallel(run_file):
    class Sum:
        def __init__(self):
            self.total = 0

        def add(self, c):
            self.total += int(np.bitwise_count(c).sum())

        def result(self):
            return self.total

    with open_run(run_file) as run:
        got = stream.feed(run, "val", run.networks, 5, 290, lambda net: [Sum(), Sum()])
        for net in run.networks:
            want = int(np.unpackbits(run.correct_packed("val", net, slice(5, 290)), axis=1).sum())
            assert got[net] == [want, want]


@pytest.mark.parametrize("pread_bytes", [0, 1 << 20], ids=["a pread per byte", "whole rows"])
@pytest.mark.parametrize("lo,hi", [(0, 300), (255, 258), (7, 8)])
def test_byte_columns_equal_the_reader(run_file, lo, hi, pread_bytes, monkeypatch):
    monkeypatch.setattr(stream, "PREAD_BYTES", pread_bytes)
    cols = np.array([0, 5, 64, 125])  # 125: the last byte, with padding bits
    with open_run(run_file) as run:
        got = stream.columns(run, "val", "sgd", lo, hi, cols)
        assert got.shape == (hi - lo, 4) and got.dtype == np.uint8
        assert np.array_equal(got, run.correct_packed("val", "sgd", slice(lo, hi))[:, cols])
        assert stream.columns(run, "val", "sgd", lo, hi, []).shape == (hi - lo, 0)
