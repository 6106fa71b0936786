"""The run file round trip: what the writer is given is what the reader returns, value by value."""

import struct

import h5py
import numpy as np
import pytest

from dyn import Eval, Layout, Network, Param, RunFileError, RunWriter, Split, open_run
from dyn.errors import WriterBusy
from dyn.superblock import lookup3, read_superblock, repair
from dyn.synthetic import Synthetic


@pytest.fixture(scope="module")
def spec():
    # 3 networks, 2 splits of 1,003 samples (bit packing has a remainder), 50 epochs, weights every 5
    return Synthetic(epochs=50, samples=1003, decays=(0.9, 0.9995), weights_every=5, n_params=1000)


@pytest.fixture(scope="module")
def run_path(spec, tmp_path_factory):
    return spec.write(tmp_path_factory.mktemp("rt") / "run.h5")


def test_round_trip_value_by_value(spec, run_path):
    records = dict(spec.records())
    lay = spec.layout()
    with open_run(run_path) as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.9995"]
        assert [run.network_info(n)["decay"] for n in run.networks] == [None, 0.9, 0.9995]
        assert run.splits == ["val", "test"]
        for s in run.splits:
            assert run.split_size(s) == 1003
            np.testing.assert_array_equal(run.labels(s), lay.splits[s].labels)
            np.testing.assert_array_equal(run.dataset_index(s), lay.splits[s].index)
            np.testing.assert_array_equal(run.epochs(s), np.arange(50))
            for n in run.networks:
                bits = run.correct(s, n)
                pred, loss = run.predicted(s, n), run.loss(s, n)
                assert bits.shape == (50, 1003) and bits.dtype == bool
                for e, kw in records.items():
                    ev = kw["evals"][s][n]
                    np.testing.assert_array_equal(bits[e], ev["correct"])
                    np.testing.assert_array_equal(pred[e], ev["predicted"])
                    np.testing.assert_array_equal(loss[e], ev["loss"].astype(np.float16))
        np.testing.assert_array_equal(run.weight_epochs(), np.arange(0, 50, 5))
        for e in range(0, 50, 5):
            for n in run.networks:
                p, b = records[e]["weights"][n]
                np.testing.assert_array_equal(run.params(n, e), p)
                np.testing.assert_array_equal(run.buffers(n, e), b)
        m = run.metrics()
        assert list(m["epoch"]) == list(range(50))
        np.testing.assert_allclose(m["ema-0.9/test/acc"], [records[e]["metrics"]["ema-0.9/test/acc"] for e in range(50)])


def test_state_dict_rebuilds_shapes_and_dtypes(spec, run_path):
    p, b = dict(spec.records())[10]["weights"]["ema-0.9995"]
    with open_run(run_path) as run:
        sd = run.state_dict("ema-0.9995", 10)
    assert list(sd) == ["layer.weight", "layer.bias", "bn.running_mean", "bn.num_batches_tracked"]
    assert sd["layer.weight"].shape == (100, 10) and sd["layer.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["layer.weight"].ravel(), p[:1000])
    np.testing.assert_array_equal(sd["bn.running_mean"], b[:16].astype(np.float32))
    assert sd["bn.num_batches_tracked"].dtype == np.int64 and sd["bn.num_batches_tracked"] == 100


def test_accuracy_counts_bits(spec, run_path):
    with open_run(run_path) as run:
        acc = run.accuracy("val", "sgd")
        np.testing.assert_allclose(acc, run.correct("val", "sgd").mean(axis=1))


def test_bit_order_hand_worked(tmp_path):
    # 10 samples; correct = samples 0, 2 and 9 -> byte 0 = 0b10100000, byte 1 = 0b01000000
    lay = Layout([Network.sgd()], {"val": Split(labels=np.zeros(10, int), predicted=False, loss=False)})
    c = np.zeros(10, bool)
    c[[0, 2, 9]] = True
    with RunWriter.create(tmp_path / "b.h5", lay, durable=False) as w:
        w.append(0, evals={"val": {"sgd": Eval(correct=c)}})
        w.append(1, evals={"val": {"sgd": Eval(packed=np.array([0xFF, 0xFF], np.uint8))}})
    with h5py.File(tmp_path / "b.h5", "r") as f:
        raw = f["splits/val/sgd/correct"][...]
    assert raw.tolist() == [[0b10100000, 0b01000000], [0xFF, 0b11000000]]  # padding bits cleared


def test_chunks_grow_without_rewrite(run_path):
    with h5py.File(run_path, "r") as f:
        assert f["networks/sgd/params"].chunks == (1, 1000)  # one epoch per chunk
        assert f["networks/sgd/params"].maxshape == (None, 1000)
        assert f["splits/val/sgd/correct"].maxshape == (None, 126)
        assert f.attrs["format"] == "dyn-run" and f.attrs["format_version"] == 1


def test_bad_append_writes_nothing(tmp_path):
    spec = Synthetic(epochs=3, samples=20, splits=("val",), decays=(0.9,), n_params=10)
    recs = list(spec.records())
    with RunWriter.create(tmp_path / "r.h5", spec.layout(), durable=False) as w:
        w.append(0, **recs[0][1])
        with pytest.raises(ValueError, match="not after"):
            w.append(0, **recs[1][1])
        with pytest.raises(ValueError, match="not a column"):
            w.append(1, metrics={"nope": 1.0})
        bad = {"val": {"sgd": Eval(correct=np.ones(19, bool)), "ema-0.9": Eval(correct=np.ones(20, bool))}}
        with pytest.raises(ValueError, match="19 samples"):
            w.append(1, evals=bad)
        with pytest.raises(ValueError, match="no record for networks"):
            w.append(1, evals={"val": {"sgd": Eval(correct=np.ones(20, bool))}})
        w.append(1, **recs[1][1])
    with open_run(tmp_path / "r.h5") as run:
        assert run.rows("metrics") == 2 and list(run.epochs("val")) == [0, 1]
        assert run.state == "interrupted"  # never finished, no live writer


def test_existing_run_is_not_overwritten(tmp_path, spec):
    p = tmp_path / "r.h5"
    Synthetic(epochs=2, samples=10, splits=("val",)).write(p)
    before = p.read_bytes()
    with pytest.raises(RunFileError, match="already exists"):
        RunWriter.create(p, spec.layout())
    assert p.read_bytes() == before
    Synthetic(epochs=3, samples=10, splits=("val",)).write(p, overwrite=True)
    with open_run(p) as run:
        assert run.rows("metrics") == 3


def test_second_writer_refused(tmp_path):
    p = tmp_path / "r.h5"
    spec = Synthetic(epochs=2, samples=10, splits=("val",))
    with RunWriter.create(p, spec.layout(), durable=False):
        with pytest.raises(WriterBusy, match="another process .* is writing"):
            RunWriter.resume(p)
        with open_run(p) as run:
            assert run.state == "running" and run.writer_alive
    w = RunWriter.resume(p)  # free again once the first writer closed
    w.close()


def test_superblock_repair_clears_flags_and_end_address(tmp_path):
    p = tmp_path / "r.h5"
    Synthetic(epochs=2, samples=10, splits=("val",)).write(p)
    sb = read_superblock(p)
    assert sb.checksum_ok() and sb.flags == 0
    raw = bytearray(p.read_bytes())
    raw[sb.offset + 11] = 0x05  # "open for write" + "SWMR write", as a killed writer leaves it
    end = sb.offset + sb.length - 4
    raw[end:end + 4] = struct.pack("<I", lookup3(bytes(raw[sb.offset:end])))
    raw += bytes(4096)  # data past the recorded end, as an append cut short leaves it
    p.write_bytes(raw)
    with pytest.raises(OSError):
        h5py.File(p, "r+", locking=False).close()
    assert repair(p) is True
    sb2 = read_superblock(p)
    assert sb2.flags == 0 and sb2.eof == len(raw) and sb2.checksum_ok()
    h5py.File(p, "r+", locking=False).close()
    assert repair(p) is False
