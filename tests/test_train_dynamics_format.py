"""The train-dynamics records of the run file: `prob` and `margin` beside correct/predicted/loss,
and a split that only some networks record (train-presented: SGD only). Written, read back,
value by value."""

import numpy as np
import pytest

from dyn import Eval, Layout, Network, RunFileError, RunWriter, Split, open_run

N, E = 21, 4  # 21 samples: the packed bits have a remainder


def _layout():
    labels = np.arange(N) % 3
    return Layout(
        networks=[Network.sgd(), Network.ema(0.9)],
        splits={
            "train-presented": Split(labels=labels, index=np.arange(N)[::-1].copy(), prob=True, margin=True,
                                     predicted=False, loss=False, networks=["sgd"],
                                     augmentation="random crop", source="training forward pass"),
            "train": Split(labels=labels, prob=True, margin=True, augmentation="none"),
            "val": Split(labels=labels[:9]),
        },
    )


def _values(seed):
    rng = np.random.default_rng(seed)
    prob = rng.random((E, N)).astype(np.float32)
    margin = (rng.standard_normal((E, N)) * 5).astype(np.float32)
    prob[1, 3] = margin[1, 3] = np.nan  # not presented in that epoch
    return prob, margin, prob > 0.5


@pytest.fixture()
def run_path(tmp_path):
    path = tmp_path / "run.h5"
    pp, mp, cp = _values(0)
    pt, mt, ct = _values(1)
    with RunWriter.create(path, _layout()) as w:
        for e in range(E):
            evals = {"val": {n: Eval(correct=np.ones(9, bool)) for n in ("sgd", "ema-0.9")},
                     "train": {"sgd": Eval(correct=ct[e], prob=pt[e], margin=mt[e]),
                               "ema-0.9": Eval(correct=ct[e])}}  # no prob/margin given: NaN
            if e:  # train-presented has no epoch 0
                evals["train-presented"] = {"sgd": Eval(correct=cp[e], prob=pp[e], margin=mp[e])}
            w.append(e, evals=evals)
        w.finish()
    return path


def test_prob_and_margin_round_trip(run_path):
    pp, mp, cp = _values(0)
    pt, mt, ct = _values(1)
    with open_run(run_path) as run:
        np.testing.assert_array_equal(run.epochs("train-presented"), [1, 2, 3])
        got_p, got_m = run.prob("train-presented", "sgd"), run.margin("train-presented", "sgd")
        assert got_p.dtype == np.float32 and got_m.dtype == np.float32 and got_p.shape == (3, N)
        # stored as float16: equal to the float16 rounding of what was given, NaN kept
        np.testing.assert_array_equal(got_p, pp[1:].astype(np.float16).astype(np.float32))
        np.testing.assert_array_equal(got_m, mp[1:].astype(np.float16).astype(np.float32))
        assert np.isnan(got_p[0, 3]) and np.isnan(got_m[0, 3])
        np.testing.assert_array_equal(run.correct("train-presented", "sgd"), cp[1:])
        np.testing.assert_array_equal(run.prob("train-presented", "sgd", rows=slice(1, 2)), got_p[1:2])
        np.testing.assert_array_equal(run.dataset_index("train-presented"), np.arange(N)[::-1])
        assert run.augmentation("train-presented") == "random crop"
        assert run.split_source("train-presented") == "training forward pass"
        assert run.split_source("train") is None
        np.testing.assert_array_equal(run.margin("train", "sgd"), mt.astype(np.float16).astype(np.float32))
        assert np.isnan(run.prob("train", "ema-0.9")).all() and np.isnan(run.margin("train", "ema-0.9")).all()


def test_has_and_what_is_missing(run_path):
    with open_run(run_path) as run:
        assert run.has("train-presented", "sgd", "prob") and run.has("train-presented", "sgd", "margin")
        assert not run.has("train-presented", "sgd", "loss")
        assert not run.has("train-presented", "ema-0.9", "prob")  # SGD only
        assert run.has("train", "ema-0.9", "margin") and not run.has("val", "sgd", "prob")
        with pytest.raises(RunFileError, match="no prob records"):
            run.prob("val", "sgd")
        with pytest.raises(RunFileError, match="no records on split 'train-presented'"):
            run.margin("train-presented", "ema-0.9")


def test_resume_appends_to_a_partial_split(run_path):
    with RunWriter.resume(run_path) as w:
        w.append(E, evals={"train-presented": {"sgd": Eval(correct=np.ones(N, bool), margin=np.full(N, 2.5))}})
        with pytest.raises(ValueError, match="no records on split 'train-presented'"):
            w.append(E + 1, evals={"train-presented": {n: Eval(correct=np.ones(N, bool)) for n in ("sgd", "ema-0.9")}})
        w.finish()
    with open_run(run_path) as run:
        assert run.epochs("train-presented")[-1] == E
        assert (run.margin("train-presented", "sgd")[-1] == 2.5).all()
        assert np.isnan(run.prob("train-presented", "sgd")[-1]).all()


def test_layout_refuses_unknown_split_networks():
    with pytest.raises(ValueError, match="subset"):
        Layout(networks=[Network.sgd()], splits={"x": Split(labels=[0, 1], networks=["ema-0.9"])})
