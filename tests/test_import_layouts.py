"""dyn.importers.layouts: where each tool keeps SGD and EMA weights, from key names alone.

Pure tests over dicts of numpy arrays shaped like each tool's checkpoint (the documented key
layouts); test_import_checkpoints.py builds the real files.
"""

import numpy as np
import pytest

from dyn.importers.layouts import LayoutError, Ref, detect, is_state_dict, select

W = np.zeros((2, 3), np.float32)


def sd(prefix="", keys=("conv.weight", "bn.weight", "bn.running_mean", "bn.num_batches_tracked")):
    return {prefix + k: W for k in keys}


def chosen(tree, name=""):
    d = detect(tree, name)
    return d.layout, (str(d.sgd) if d.sgd else None), (str(d.ema) if d.ema else None)


@pytest.mark.parametrize("tree, name, expect", [
    (sd(), "", ("state_dict", "/", None)),
    ({"epoch": 3, "arch": "resnet", "version": 2, "state_dict": sd(), "state_dict_ema": sd(), "optimizer": {}},
     "", ("timm", "state_dict", "state_dict_ema")),
    ({"epoch": 3, "state_dict": sd(), "model_ema": sd()}, "", ("timm", "state_dict", "model_ema")),
    ({"epoch": 3, "arch": "resnet", "version": 2, "state_dict": sd()}, "", ("timm", "state_dict", None)),
    ({"model": sd(), "model_ema": {"n_averaged": W, **sd("module.")}, "optimizer": {}, "lr_scheduler": {},
      "epoch": 4, "args": {"lr": 0.1}}, "", ("torchvision", "model", "model_ema")),
    ({"epoch": 2, "global_step": 30, "pytorch-lightning_version": "2.6.0", "state_dict": sd("model."),
      "current_model_state": sd("model."), "averaging_state": {"n_averaged": W}},
     "", ("lightning-ema", "current_model_state", "state_dict")),
    ({"epoch": 2, "global_step": 30, "pytorch-lightning_version": "2.6.0", "state_dict": sd("model.")},
     "", ("lightning", "state_dict", None)),
    ({"initted": W, "step": W, **sd("online_model."), **sd("ema_model.")}, "",
     ("ema-pytorch", "online_model.", "ema_model.")),
    ({"initted": W, "step": W, **sd("ema_model.")}, "", ("ema-pytorch", None, "ema_model.")),
    ({"model": sd(), "ema": {"initted": W, "step": W, **sd("ema_model.")}}, "",
     ("ema-pytorch", "model", "ema/ema_model.")),
    ({"epoch": 5, "optimizer": {}, "model": sd(), "scheduler": {}}, "ckpt_5", ("paper", "model", None)),
    ({"epoch": 5, "model": {"n_averaged": W, **sd("module.")}, "decay": 0.999}, "ckpt_5_averaged_model",
     ("paper-averaged", None, "model")),
    ({"epoch": 5, "model": sd(), "decay": 0.999}, "whatever", ("paper-averaged", None, "model")),
    ({"epoch": 1, "global_step": 9, "state_dict": sd()}, "run-EMA", ("nemo-ema", None, "state_dict")),
    ({"n_averaged": W, **sd("module.")}, "", ("averaged-model", None, "/")),
    ({"net": sd(), "swa_net": sd(), "step": 3}, "", ("guessed", "net", "swa_net")),
])
def test_each_layout_is_found(tree, name, expect):
    assert chosen(tree, name) == expect


def test_epoch_conventions():
    # timm v2, torchvision and Lightning store the 0-based epoch just finished; the paper's code
    # stores last epoch + 1, which is already the number of completed epochs
    assert detect({"epoch": 0, "version": 2, "state_dict": sd(), "state_dict_ema": sd()}).epoch == 1
    assert detect({"epoch": 4, "version": 1, "state_dict": sd(), "state_dict_ema": sd()}).epoch == 4
    assert detect({"epoch": 0, "model": sd(), "model_ema": sd()}).epoch == 1
    assert detect({"epoch": 0, "global_step": 9, "state_dict": sd(), "current_model_state": sd()}).epoch == 1
    assert detect({"epoch": 1, "optimizer": {}, "model": sd(), "scheduler": {}}).epoch == 1
    d = detect({"epoch": 1, "model": sd(), "decay": 0.9995}, "x_averaged_model")
    assert (d.epoch, d.decay) == (1, 0.9995)
    d = detect({"epoch": np.array(7), "global_step": np.array([70]), "state_dict": sd()})
    assert (d.epoch, d.step) == (8, 70)


def test_ema_pytorch_step_and_timm_decay():
    d = detect({"model": sd(), "ema": {"initted": W, "step": np.array([120]), **sd("ema_model.")}})
    assert d.step == 120 and "EMA updates" in d.step_from
    d = detect({"epoch": 1, "version": 2, "state_dict": sd(), "state_dict_ema": sd(),
                "args": {"model_ema_decay": 0.9998, "model_ema_warmup": False}})
    assert d.decay == 0.9998
    # with timm's warm-up the effective decay changes over training: not claimed
    d = detect({"epoch": 1, "version": 2, "state_dict": sd(), "state_dict_ema": sd(),
                "args": {"model_ema_decay": 0.9998, "model_ema_warmup": True}})
    assert d.decay is None


def test_select_strips_wrappers_and_the_averaged_counter():
    tree = {"model_ema": {"n_averaged": np.array(3), **sd("module._orig_mod.")}}
    got, notes = select(tree, Ref(("model_ema",)))
    assert list(got) == list(sd())
    assert notes == ["dropped n_averaged", "stripped 'module.'", "stripped '_orig_mod.'"]
    # a prefix shared by only some keys is the model's own name: kept
    mixed = {"module.a": W, "b": W}
    assert list(select({"m": mixed}, Ref(("m",)))[0]) == ["module.a", "b"]
    got, _ = select({"initted": W, **sd("ema_model."), **sd("online_model.")}, Ref((), "ema_model."))
    assert list(got) == list(sd())


def test_given_keys_override_and_are_checked():
    tree = {"a": sd(), "b": {"inner": sd("x.")}}
    d = detect(tree, sgd_key="a", ema_key="b/inner/x.")
    assert (d.layout, str(d.sgd), str(d.ema)) == ("given", "a", "b/inner/x.")
    assert list(select(tree, d.ema)[0]) == list(sd())
    with pytest.raises(LayoutError, match="has no entry 'zzz'"):
        detect(tree, ema_key="zzz")
    with pytest.raises(LayoutError, match="holds no state_dict"):
        detect({"a": sd(), "n": {"k": 1}}, ema_key="n")


def test_ambiguous_and_empty_files_are_errors():
    with pytest.raises(LayoutError, match="--sgd-key and --ema-key"):
        detect({"first": sd(), "second": sd(), "third": sd()})
    with pytest.raises(LayoutError, match="holds no state_dict"):
        detect({"epoch": 3, "lr": 0.1})


def test_ref_parse_round_trip():
    for text, path, prefix in [("state_dict", ("state_dict",), ""), ("ema/ema_model.", ("ema",), "ema_model."),
                               ("ema_model.", (), "ema_model."), ("/", (), ""), ("", (), "")]:
        r = Ref.parse(text)
        assert (r.path, r.prefix) == (path, prefix)
    assert str(Ref.parse("a/b")) == "a/b" and str(Ref()) == "/"


def test_is_state_dict():
    assert is_state_dict(sd()) and is_state_dict({**sd(), "x._extra_state": 3})
    assert not is_state_dict({}) and not is_state_dict({"a": W, "b": 1}) and not is_state_dict([W])
