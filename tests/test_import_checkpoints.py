"""`dyn import checkpoints` on real files of every layout it knows, checked value by value.

A tiny conv net with BatchNorm trains a few real SGD steps per epoch beside torch's own EMA
(torch.optim.swa_utils.AveragedModel with get_ema_multi_avg_fn, use_buffers=True). Each
epoch's live and averaged state_dicts are then saved the way each tool saves them (torch.save
of the documented key layouts; safetensors' own writers), imported, and every tensor read
back from the run must equal the tensor the training produced.
"""

import argparse
import json
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import dyn
from dyn.analyze.measures.weight_diff import weight_difference
from dyn.errors import DynError
from dyn.importers.checkpoints import describe, import_checkpoints

from helpers import run_dyn

DECAY = 0.9


@dataclass
class Epoch:
    epoch: int  # completed epochs
    step: int
    sgd: dict  # the live model's state_dict (tensors)
    averaged: dict  # AveragedModel's own state_dict: "module." keys and n_averaged
    optimizer: dict

    @property
    def ema(self) -> dict:
        """The EMA network's state_dict, as the model would load it."""
        return {k[len("module."):]: v for k, v in self.averaged.items() if k.startswith("module.")}


def tiny_net():
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))


def train_tiny(epochs=3, steps=2, seed=0):
    torch.manual_seed(seed)
    model = tiny_net()
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(DECAY), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    out, step = [], 0
    for epoch in range(1, epochs + 1):
        for _ in range(steps):
            x, y = torch.randn(8, 1, 6, 6), torch.randint(0, 2, (8,))
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update_parameters(model)
            step += 1
        clone = lambda sd: {k: v.detach().clone() for k, v in sd.items()}  # noqa: E731
        out.append(Epoch(epoch, step, clone(model.state_dict()), clone(ema.state_dict()), opt.state_dict()))
    return out


@pytest.fixture(scope="module")
def run():
    return train_tiny()


def numpy_sd(sd):
    return {k: v.detach().float().numpy() if v.dtype == torch.bfloat16 else v.detach().numpy() for k, v in sd.items()}


def check_run(path, epochs, expect: dict, ordered=True):
    """expect: {network: [state_dict per epoch]}; every tensor must match exactly, and keys
    come in the model's order (safetensors files sort their keys: `ordered=False`)."""
    with dyn.open_run(path) as r:
        assert r.networks == list(expect)
        assert list(r.weight_epochs()) == [e.epoch for e in epochs]
        t = r.param_table
        kinds = dict(zip(t["name"], t["kind"]))
        assert {k for k, v in kinds.items() if v == "buffer"} == {
            "1.running_mean", "1.running_var", "1.num_batches_tracked"}
        for net, states in expect.items():
            for e, want in zip(epochs, states):
                got = r.state_dict(net, e.epoch)
                want = numpy_sd(want)
                assert list(got) == list(want) if ordered else sorted(got) == sorted(want)
                for k in want:
                    assert got[k].dtype == want[k].dtype, k
                    np.testing.assert_array_equal(got[k], want[k], err_msg=f"{net} epoch {e.epoch} {k}")
        return r.config


# ----------------------------------------------------------------------------- layouts
def test_plain_state_dicts_numbered_by_name(tmp_path, run):
    for e in run:
        torch.save(e.sgd, tmp_path / f"epoch_{e.epoch}.pt")
    plan, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    cfg = check_run(out, run, {"sgd": [e.sgd for e in run]})
    assert cfg["import"]["epochs_from"] == ["the number in the file name"]
    assert [rec["sgd"]["layout"] for rec in cfg["import"]["records"]] == ["state_dict"] * 3


def test_timm(tmp_path, run):
    for e in run:  # timm's CheckpointSaver: 0-based epoch, version 2, args as a Namespace
        torch.save({"epoch": e.epoch - 1, "arch": "tiny", "version": 2, "state_dict": e.sgd,
                    "optimizer": e.optimizer, "state_dict_ema": e.ema, "metric": 0.5,
                    "args": argparse.Namespace(model="tiny", model_ema_decay=DECAY, lr=0.1)},
                   tmp_path / f"checkpoint-{e.epoch - 1}.pth.tar")
    plan, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    cfg = check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})
    assert cfg["import"]["decay"] == DECAY and "args.model_ema_decay" in cfg["import"]["decay_from"]
    rec = cfg["import"]["records"][0]
    assert (rec["sgd"]["key"], rec["ema"]["key"], rec["ema"]["layout"]) == ("state_dict", "state_dict_ema", "timm")
    assert rec["sgd"]["file"].endswith("checkpoint-0.pth.tar")


def test_timm_older_model_ema(tmp_path, run):
    for e in run:
        torch.save({"epoch": e.epoch - 1, "state_dict": e.sgd, "model_ema": e.ema, "version": 2},
                   tmp_path / f"checkpoint-{e.epoch - 1}.pth.tar")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=DECAY)
    check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})


def test_torchvision_references_with_a_real_averaged_model(tmp_path, run):
    assert "n_averaged" in run[0].averaged and all(k.startswith("module.") for k in run[0].averaged if k != "n_averaged")
    for e in run:
        torch.save({"model": e.sgd, "model_ema": e.averaged, "optimizer": e.optimizer, "lr_scheduler": {},
                    "epoch": e.epoch - 1, "args": argparse.Namespace(model_ema_decay=0.99998)},
                   tmp_path / f"model_{e.epoch - 1}.pth")
    plan, out = import_checkpoints([str(tmp_path / "model_*.pth")], tmp_path / "run.h5")
    # torchvision rescales its decay by the batch and epoch counts: no decay is claimed
    cfg = check_run(out, run, {"sgd": [e.sgd for e in run], "ema": [e.ema for e in run]})
    notes = cfg["import"]["records"][0]["ema"]["notes"]
    assert "dropped n_averaged" in notes and "stripped 'module.'" in notes
    assert cfg["import"]["decay"] is None


def test_lightning_ema_weight_averaging(tmp_path, run):
    for e in run:  # EMAWeightAveraging.on_save_checkpoint: state_dict is the EMA
        torch.save({"epoch": e.epoch - 1, "global_step": e.step, "pytorch-lightning_version": "2.6.0",
                    "state_dict": {f"net.{k}": v for k, v in e.ema.items()},
                    "current_model_state": {f"net.{k}": v for k, v in e.sgd.items()},
                    "averaging_state": {"n_averaged": e.averaged["n_averaged"]},
                    "optimizer_states": [e.optimizer], "lr_schedulers": [], "loops": {}, "callbacks": {
                        "EMAWeightAveraging": {"latest_update_step": e.step}}},
                   tmp_path / f"epoch={e.epoch - 1}-step={e.step}.ckpt")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=DECAY)
    prefixed = lambda sd: {f"net.{k}": v for k, v in sd.items()}  # noqa: E731
    with dyn.open_run(out) as r:
        assert list(r.weight_epochs()) == [1, 2, 3]
        assert list(r.metrics()["iteration"]) == [e.step for e in run]
        for e in run:
            for net, want in (("sgd", e.sgd), (f"ema-{DECAY}", e.ema)):
                got = r.state_dict(net, e.epoch)
                for k, v in prefixed(want).items():
                    np.testing.assert_array_equal(got[k], v.numpy())


def test_lightning_without_ema(tmp_path, run):
    for e in run:
        torch.save({"epoch": e.epoch - 1, "global_step": e.step, "pytorch-lightning_version": "2.5.0",
                    "state_dict": e.sgd}, tmp_path / f"epoch={e.epoch - 1}-step={e.step}.ckpt")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    check_run(out, run, {"sgd": [e.sgd for e in run]})


def test_ema_pytorch_flat_and_nested(tmp_path, run):
    for e in run:  # ema-pytorch's EMA.state_dict(), with the online model included
        ema_sd = {"initted": torch.tensor([1.0]), "step": torch.tensor([e.step]),
                  **{f"online_model.{k}": v for k, v in e.sgd.items()},
                  **{f"ema_model.{k}": v for k, v in e.ema.items()}}
        torch.save(ema_sd, tmp_path / f"ema-{e.epoch}.pt")
    nested = tmp_path / "nested"
    nested.mkdir()
    for e in run:  # the common use: model and EMA (without the online copy) saved side by side
        torch.save({"model": e.sgd, "ema": {"initted": torch.tensor([1.0]), "step": torch.tensor([e.step]),
                                            **{f"ema_model.{k}": v for k, v in e.ema.items()}}},
                   nested / f"ckpt-{e.epoch}.pt")
    for folder in (tmp_path, nested):
        plan, out = import_checkpoints([str(folder / "*.pt")], folder / "run.h5", decay=DECAY)
        assert plan.records[0].parts["ema"].found.det.layout == "ema-pytorch"
        check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})


def test_the_papers_code_with_separate_averaged_files(tmp_path, run):
    for e in run:  # 'epoch' is last epoch + 1; the EMA file has 'decay' and the AveragedModel's state
        torch.save({"epoch": e.epoch, "optimizer": e.optimizer, "model": e.sgd, "scheduler": {}},
                   tmp_path / f"checkpoint_{e.epoch}.pt")
        torch.save({"epoch": e.epoch, "model": e.averaged, "decay": DECAY},
                   tmp_path / f"checkpoint_{e.epoch}_averaged_model.pt")
    plan, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    cfg = check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})
    rec = cfg["import"]["records"][1]
    assert rec["sgd"]["file"].endswith("checkpoint_2.pt") and rec["ema"]["file"].endswith("checkpoint_2_averaged_model.pt")
    assert rec["ema"]["layout"] == "paper-averaged" and "'decay'" in cfg["import"]["decay_from"]


def test_nemo_ema_files_beside_their_checkpoints(tmp_path, run):
    for e in run:
        torch.save({"epoch": e.epoch - 1, "global_step": e.step, "state_dict": e.sgd},
                   tmp_path / f"run--epoch={e.epoch - 1}.ckpt")
        torch.save({"epoch": e.epoch - 1, "global_step": e.step, "state_dict": e.ema},
                   tmp_path / f"run--epoch={e.epoch - 1}-EMA.ckpt")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=DECAY)
    check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})


def test_ddp_and_compile_prefixes(tmp_path, run):
    for e in run:
        torch.save({"model": {f"module._orig_mod.{k}": v for k, v in e.sgd.items()},
                    "model_ema": {f"_orig_mod.{k}": v for k, v in e.ema.items()}, "epoch": e.epoch - 1},
                   tmp_path / f"model_{e.epoch - 1}.pth")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=DECAY)
    check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})


def test_safetensors_pairs_from_both_writers(tmp_path, run):
    from safetensors.numpy import save_file as save_np
    from safetensors.torch import save_file as save_torch

    for e in run:
        save_torch(e.sgd, str(tmp_path / f"sgd_{e.epoch}.safetensors"), metadata={"epoch": str(e.epoch)})
        save_np(numpy_sd(e.ema), str(tmp_path / f"ema_{e.epoch}.safetensors"), metadata={"decay": str(DECAY)})
    plan, out = import_checkpoints(sgd=str(tmp_path / "sgd_*.safetensors"), ema=str(tmp_path / "ema_*.safetensors"),
                                   out=tmp_path / "run.h5")
    cfg = check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]}, ordered=False)
    assert cfg["import"]["records"][0]["ema"]["format"] == "safetensors"
    assert cfg["import"]["epochs_from"] == ["metadata 'epoch'"] and cfg["import"]["decay_from"].startswith("metadata")


def test_safetensors_bfloat16_is_exact(tmp_path, run):
    from safetensors.torch import save_file

    bf = [{k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in e.sgd.items()} for e in run]
    for e, sd in zip(run, bf):
        save_file(sd, str(tmp_path / f"w-{e.epoch}.safetensors"))
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    with dyn.open_run(out) as r:
        t = r.param_table
        assert set(t[t.name == "0.weight"]["dtype"]) == {"bfloat16"}
        for e, sd in zip(run, bf):
            got = r.state_dict("sgd", e.epoch)
            for k, v in sd.items():
                np.testing.assert_array_equal(got[k], v.float().numpy() if v.is_floating_point() else v.numpy())


def test_safetensors_import_needs_no_torch(tmp_path, run):
    from safetensors.torch import save_file

    for e in run:
        save_file(e.sgd, str(tmp_path / f"sgd-{e.epoch}.safetensors"))
        save_file(e.ema, str(tmp_path / f"ema-{e.epoch}.safetensors"))
    r = run_dyn("import", "checkpoints", "--sgd", tmp_path / "sgd-*.safetensors", "--ema", tmp_path / "ema-*.safetensors",
                "--decay", DECAY, "--out", tmp_path / "run.h5", block=("torch",),
                code_after="print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    assert r.returncode == 0, r.stderr
    assert "NO-TORCH" in r.stdout and "wrote" in r.stdout
    check_run(tmp_path / "run.h5", run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]},
              ordered=False)
    # a torch file, on the same torch-less install: one line saying what is missing
    torch.save(run[0].sgd, tmp_path / "x.pt")
    r = run_dyn("import", "checkpoints", tmp_path / "x.pt", "--out", tmp_path / "y.h5", block=("torch",))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "needs PyTorch" in r.stderr
    assert "x.pt" in r.stderr and not (tmp_path / "y.h5").exists()


# --------------------------------------------------------------------- order and epochs
def test_natural_order_and_explicit_orders(tmp_path, run):
    names = {1: "ckpt-9.pt", 2: "ckpt-10.pt", 3: "ckpt-100.pt"}  # lexical order would put 10 and 100 first
    for e in run:
        torch.save(e.sgd, tmp_path / names[e.epoch])
    plan, out = import_checkpoints([tmp_path], tmp_path / "a.h5")
    assert [r.epoch for r in plan.records] == [9, 10, 100]
    with dyn.open_run(out) as r:
        for e, ep in zip(run, (9, 10, 100)):
            np.testing.assert_array_equal(r.state_dict("sgd", ep)["0.weight"], e.sgd["0.weight"].numpy())
    # --order given keeps the command line's order; numbers then must still increase
    files = [tmp_path / names[i] for i in (1, 2, 3)]
    plan, _ = import_checkpoints(files, dry_run=True, order="given")
    assert [r.epoch for r in plan.records] == [9, 10, 100]
    # in an order where the names' numbers do not increase, positions number the epochs
    plan, _ = import_checkpoints(files[::-1], dry_run=True, order="given")
    assert [(r.first.path.name, r.epoch) for r in plan.records] == [("ckpt-100.pt", 1), ("ckpt-10.pt", 2), ("ckpt-9.pt", 3)]
    assert "do not increase" in plan.records[0].epoch_from
    plan, _ = import_checkpoints([tmp_path], dry_run=True, epoch_offset=-9)
    assert [r.epoch for r in plan.records] == [0, 1, 91]


def test_order_by_step_when_files_record_no_epoch(tmp_path, run):
    for e, name in zip(run, ("c.pt", "a.pt", "b.pt")):  # names in no useful order
        torch.save({"initted": torch.tensor([1.0]), "step": torch.tensor([e.step]),
                    **{f"ema_model.{k}": v for k, v in e.ema.items()}}, tmp_path / name)
    plan, out = import_checkpoints([tmp_path], tmp_path / "run.h5")
    assert [r.first.path.name for r in plan.records] == ["c.pt", "a.pt", "b.pt"]
    assert [r.epoch for r in plan.records] == [1, 2, 3]  # positions: nothing else says
    with dyn.open_run(out) as r:
        assert r.networks == ["ema"] and list(r.metrics()["iteration"]) == [2, 4, 6]


def test_key_overrides(tmp_path, run):
    for e in run:
        torch.save({"epoch": e.epoch, "first": e.sgd, "second": e.sgd, "third": e.ema}, tmp_path / f"{e.epoch}.pt")
    with pytest.raises(DynError, match="--sgd-key and --ema-key"):
        import_checkpoints([tmp_path], dry_run=True)
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", sgd_key="second", ema_key="third", decay=DECAY)
    check_run(out, run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})


# ------------------------------------------------------------------ analysis and CLI
def test_weight_difference_of_an_import_matches_the_definition(tmp_path, run):
    for e in run:
        torch.save({"model": e.sgd, "model_ema": e.averaged, "epoch": e.epoch - 1}, tmp_path / f"model_{e.epoch - 1}.pth")
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=DECAY)
    with dyn.open_run(out) as r:
        wd = weight_difference((e, p, r.params(f"ema-{DECAY}", e)) for e, p in r.iter_params("sgd"))
    names = [n for n, _ in tiny_net().named_parameters()]
    for i, e in enumerate(run):  # by hand, in float64, over the parameters only
        s = np.concatenate([e.sgd[n].double().numpy().ravel() for n in names])
        m = np.concatenate([e.ema[n].double().numpy().ravel() for n in names])
        assert wd.relative[i] == pytest.approx(np.linalg.norm(m - s) / np.linalg.norm(s), rel=1e-12)
    assert list(wd.epochs) == [1, 2, 3] and (wd.relative > 0).all()


def test_cli_dry_run_and_write(tmp_path, run, capsys):
    from test_import_bad_inputs import dyn

    for e in run:
        torch.save({"epoch": e.epoch - 1, "version": 2, "state_dict": e.sgd, "state_dict_ema": e.ema},
                   tmp_path / f"checkpoint-{e.epoch - 1}.pth.tar")
    code, out, err = dyn(capsys, "import", "checkpoints", tmp_path, "--dry-run")
    assert code == 0, err
    lines = out.splitlines()
    assert sum("timm; sgd: state_dict (9 tensors), ema: state_dict_ema (9 tensors); epoch" in ln for ln in lines) == 3
    assert any(ln.startswith("run: 3 epochs (1..3") for ln in lines)
    assert not list(tmp_path.glob("*.h5"))
    code, out, err = dyn(capsys, "import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5", "--decay", DECAY)
    assert code == 0, err
    assert f"epochs 1..3 (3 records) of sgd, ema-{DECAY}" in out
    check_run(tmp_path / "run.h5", run, {"sgd": [e.sgd for e in run], f"ema-{DECAY}": [e.ema for e in run]})
    code, out, err = dyn(capsys, "inspect", tmp_path / "run.h5", "--json")
    assert json.loads(out)["weights"]["records"] == 3


def test_describe_names_each_file(tmp_path, run):
    torch.save({"model": run[0].sgd, "model_ema": run[0].averaged, "epoch": 0}, tmp_path / "model_0.pth")
    plan, _ = import_checkpoints([tmp_path], dry_run=True)
    text = "\n".join(describe(plan))
    assert "model_0.pth: torchvision; sgd: model (9 tensors), ema: model_ema (9 tensors); epoch 1 from" in text
    assert "dropped n_averaged" in text and "network named 'ema'" in text


def test_help_loads_neither_torch_nor_h5py():
    show = "import json; print('MODULES=' + json.dumps(sorted(sys.modules)))"
    for args in (("import", "--help"), ("import", "checkpoints", "--help"), ("import", "predictions", "--help")):
        r = run_dyn(*args, code_after=show)
        assert r.returncode == 0, r.stderr
        loaded = set(json.loads(r.stdout.split("MODULES=")[-1]))
        assert not {"torch", "h5py", "safetensors", "pandas"} & loaded, args
    assert "checkpoints" in run_dyn("import", "--help").stdout
    text = run_dyn("import", "checkpoints", "--help").stdout
    assert "dyn import checkpoints ckpts/ --dry-run" in text and "weights_only=True" in text
    assert "running_mean" in text  # the parameter/buffer rule is documented where it is used
