"""The CUDA speed options of `dyn train` (--channels-last, --amp bf16, --compile), checked on CPU.

Each must train and record a valid run, and change only what it says: channels_last the memory
layout (the same records up to float rounding), bf16 the precision of the forward passes,
compile nothing numerical. The runs are in-process (dyn.cli.main) to spare an interpreter
start per run, and the compile test swaps inductor's C++ build for a counting backend.
"""

import os

import numpy as np
import pytest
import torch

from dyn import open_run
from dyn.cli import main
from test_ema import ema_beside_the_hand_formula, tiny_resnet
from dyn.train.data import load_dataset, normalize
from dyn.train.ema import flatten_state
from dyn.train.models import build_model

FLAGS = ["--dataset", "digits", "--schedule", "constant", "--decay", "0.9", "--batch-size", "256",
         "--epochs", "1", "--no-progress"]


def dyn_train(out, *extra, lr="0.05"):
    try:
        main(["train", *FLAGS, "--lr", lr, "--out", str(out), *extra])
    except SystemExit as e:
        assert not e.code, f"dyn train {' '.join(extra)} exited {e.code}"
    with open_run(out) as run:
        assert run.state == "complete" and run.networks == ["sgd", "ema-0.9"]
        assert list(run.epochs("val")) == [0, 1] and list(run.weight_epochs()) == [0, 1]
    return out


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The plain run, at the test's lr 0.05 and at a small lr where float noise stays small."""
    folder = tmp_path_factory.mktemp("default")
    return {lr: dyn_train(folder / f"lr{lr}.h5", lr=lr) for lr in ("0.05", "0.001")}


def records(path):
    """Every per-sample record and weight of a run, by (kind, split or epoch, network)."""
    out = {}
    with open_run(path) as run:
        for split in run.splits:
            for net in run.networks:
                out["predicted", split, net] = run.predicted(split, net)
                out["loss", split, net] = run.loss(split, net).astype(np.float64)
        for e in run.weight_epochs():
            for net in run.networks:
                out["params", e, net] = run.params(net, e)
                out["buffers", e, net] = run.buffers(net, e)
        out["metrics"] = run.metrics().drop(columns=["seconds"]).to_numpy()
    return out


# -- channels_last ---------------------------------------------------------------------------------

def test_ema_of_a_channels_last_model_matches_the_formula_by_hand():
    model = tiny_resnet().to(memory_format=torch.channels_last)
    assert model.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    ema, ref = ema_beside_the_hand_formula(model)
    table = ema.table
    for k, r in enumerate(ref):
        got = ema.state_dict_for(k)
        for name, v in got.items():  # logical (N, C, H, W) values, whatever the strides
            torch.testing.assert_close(v.double(), r[name], rtol=1e-5, atol=1e-6, msg=name)
        # the flat rows a run file stores are in logical order too
        want = flatten_state({n: t.float() for n, t in r.items()}, table)[0]
        torch.testing.assert_close(ema.flat_params(k), want, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(ema.state_dict_for(1)["conv1.weight"], model.conv1.weight)


def test_channels_last_records_equal_the_default_up_to_rounding(default_runs, tmp_path):
    # at lr 0.05 rounding differences grow within an epoch (the first conv's gradients differ by
    # ~1e-3 relative between the layouts on this data); at lr 0.001 they stay small
    base = records(default_runs["0.001"])
    cl = records(dyn_train(tmp_path / "cl.h5", "--channels-last", lr="0.001"))
    for key, want in base.items():
        kind, where, net = key if key != "metrics" else (key, None, None)
        got = cl[key]
        if kind == "params" and where == 0:
            np.testing.assert_array_equal(got, want)  # the same initial weights
        elif kind in ("params", "buffers"):
            change = np.abs(base[kind, 1, net] - base[kind, 0, net]).max()
            assert np.abs(got - want).max() <= 0.01 * change, key
        elif kind == "predicted":  # near-ties may flip, at epoch 0 too (other conv kernels)
            assert (got == want).mean(axis=1).min() >= 0.99, key
        elif kind == "loss":
            np.testing.assert_allclose(got, want, atol=1e-2)  # float16 storage: ~2e-3 steps near 2.3
        else:
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-2)  # accuracies: 3 samples


# -- bf16 autocast ---------------------------------------------------------------------------------

@pytest.mark.slow  # bf16 convolutions are slow on CPUs without native bf16: about a minute
def test_bf16_autocast_trains_and_evaluates_in_bf16(default_runs, tmp_path):
    out = dyn_train(tmp_path / "bf16.h5", "--amp", "bf16")
    base, bf = records(default_runs["0.05"]), records(out)
    # the same initial weights, evaluated in bf16: some per-sample losses differ
    np.testing.assert_array_equal(bf["params", 0, "sgd"], base["params", 0, "sgd"])
    assert not np.array_equal(bf["loss", "val", "sgd"][0], base["loss", "val", "sgd"][0])
    # trained in bf16: other weights after one epoch, still float32 and finite
    assert bf["params", 1, "sgd"].dtype == np.float32 and np.isfinite(bf["params", 1, "sgd"]).all()
    assert not np.array_equal(bf["params", 1, "sgd"], base["params", 1, "sgd"])
    # the records are what a separate bf16 evaluation of the stored weights gives
    data = load_dataset("digits")
    with open_run(out) as run:
        model = build_model("resnet20", 10, in_channels=1)
        model.load_state_dict({k: torch.from_numpy(v) for k, v in run.state_dict("ema-0.9", 1).items()})
        model.eval()
        x, y = data.split("test")
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            pred = model(normalize(x, data.mean, data.std)).float().argmax(1).numpy()
        np.testing.assert_array_equal(run.predicted("test", "ema-0.9")[-1], pred)
        assert run.metrics()["ema-0.9/test/acc"].iloc[-1] == pytest.approx((pred == y.numpy()).mean())


# -- torch.compile ---------------------------------------------------------------------------------

def test_compile_trains_through_the_compiled_forward_and_records_the_same(default_runs, tmp_path, monkeypatch):
    graphs = []

    def counting_backend(gm, example_inputs):  # what dynamo captured, run as it is (no C++ build)
        graphs.append(gm)
        return gm.forward

    real_compile = torch.compile
    compiled = []

    def compile_(model, **kwargs):
        compiled.append(model)
        return real_compile(model, backend=counting_backend)

    monkeypatch.setattr(torch, "compile", compile_)
    try:
        out = dyn_train(tmp_path / "compiled.h5", "--compile")
    finally:
        torch._dynamo.reset()
    assert [type(m).__name__ for m in compiled] == ["ResNet"]  # the raw model, once
    assert graphs, "the training forward never went through the compiled module"
    base, got = records(default_runs["0.05"]), records(out)
    assert got.keys() == base.keys()
    for key in base:  # eager kernels behind the graph: bit for bit the eager run
        np.testing.assert_array_equal(got[key], base[key], err_msg=str(key))


@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("DYN_TEST_COMPILE") != "1",
                    reason="torch.compile's inductor builds C++ kernels for ResNet-20: ~4 min cold on 2 CPU "
                           "cores; set DYN_TEST_COMPILE=1 to run it (the counting-backend test covers the "
                           "--compile path every time)")
def test_compile_with_inductor_records_close_to_eager(default_runs, tmp_path):
    out = dyn_train(tmp_path / "inductor.h5", "--compile")
    base, got = records(default_runs["0.05"]), records(out)
    np.testing.assert_array_equal(got["params", 0, "sgd"], base["params", 0, "sgd"])
    change = np.abs(base["params", 1, "sgd"] - base["params", 0, "sgd"]).max()
    # fused kernels round differently; within one epoch at lr 0.05 that stays well under the change
    assert np.abs(got["params", 1, "sgd"] - base["params", 1, "sgd"]).max() <= 0.2 * change
    assert (got["predicted", "test", "sgd"][0] == base["predicted", "test", "sgd"][0]).all()
