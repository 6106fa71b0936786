"""`dyn import checkpoints` on bad checkpoints: one line naming the file (and key), a non-zero
exit, no traceback, and no run file (nor temporary) left behind. Bad flags, missing files and
folders without checkpoints are in the table of tests/test_bad_inputs.py."""

import math

import h5py
import pytest
import torch

from dyn import open_run
from dyn.cli import main

from test_import_checkpoints import DECAY, train_tiny


@pytest.fixture(scope="module")
def run():
    return train_tiny()


def dyn(capsys, *args):
    """`dyn ARGS` in this process (the same main() as the console script): (code, out, err)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, folder, *args, match, code=1):
    out = folder / "run.h5"
    before = sorted(p.name for p in folder.iterdir())
    c, _, err = dyn(capsys, "import", "checkpoints", *args, "--out", out)
    assert c == code, err
    assert err.startswith("dyn: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert match in err, err
    assert sorted(p.name for p in folder.iterdir()) == before  # no run, no temporary, no lock
    return err


def save_timm(folder, run, edit=lambda e, sd, ema: None):
    for e in run:
        sd, ema = dict(e.sgd), dict(e.ema)
        edit(e, sd, ema)
        torch.save({"epoch": e.epoch - 1, "version": 2, "state_dict": sd, "state_dict_ema": ema},
                   folder / f"checkpoint-{e.epoch - 1}.pth.tar")


def test_files_of_different_architectures(tmp_path, capsys, run):
    def wider(e, sd, ema):
        if e.epoch == 3:
            sd["4.weight"] = torch.zeros(3, 48)
    save_timm(tmp_path, run, wider)
    refused(capsys, tmp_path, tmp_path, match="checkpoint-2.pth.tar (SGD): tensor '4.weight' has shape [3, 48], ")

    def missing(e, sd, ema):
        if e.epoch == 2:
            del ema["1.running_var"]
    save_timm(tmp_path, run, missing)
    refused(capsys, tmp_path, tmp_path, match="checkpoint-1.pth.tar (EMA): lacks tensor '1.running_var'")


def test_no_ema_where_one_was_asked_for(tmp_path, capsys, run):
    for e in run:
        torch.save(e.sgd, tmp_path / f"sgd-{e.epoch}.pt")
    for e in run[:2]:
        torch.save(e.ema, tmp_path / f"ema-{e.epoch}.pt")
    refused(capsys, tmp_path, "--sgd", tmp_path / "sgd-*.pt", "--ema", tmp_path / "ema-*.pt",
            match="sgd-3.pt: no EMA found for its epoch 3 among the --ema files")
    refused(capsys, tmp_path, tmp_path / "sgd-*.pt", "--ema-key", "model_ema", match="sgd-1.pt: has no entry 'model_ema'")


def test_some_files_without_ema(tmp_path, capsys, run):
    for e in run:
        ck = {"epoch": e.epoch - 1, "model": e.sgd}
        if e.epoch != 2:
            ck["model_ema"] = e.averaged
        torch.save(ck, tmp_path / f"model_{e.epoch - 1}.pth")
    refused(capsys, tmp_path, tmp_path, match="model_1.pth: holds no EMA weights, but ")


def test_nan_weights_warn_or_refuse(tmp_path, capsys, run):
    def poison(e, sd, ema):
        if e.epoch == 3:  # the last file: the run is half written when it is read
            w = sd["0.weight"].clone()
            w[0, 0, 0, 0], w[0, 0, 0, 1] = math.nan, math.inf
            sd["0.weight"] = w
    save_timm(tmp_path, run, poison)
    refused(capsys, tmp_path, tmp_path, "--strict",
            match="checkpoint-2.pth.tar: sgd weights hold 2 NaN/inf values (in 0.weight (2)); refused under --strict")
    code, out, err = dyn(capsys, "import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert code == 0, err
    assert err == "dyn: warning: " + str(tmp_path / "checkpoint-2.pth.tar") + \
        ": sgd weights hold 2 NaN/inf values (in 0.weight (2))\n"
    with open_run(tmp_path / "run.h5") as r:
        w = r.state_dict("sgd", 3)["0.weight"]
        assert math.isnan(w[0, 0, 0, 0]) and math.isinf(w[0, 0, 0, 1])  # kept as they were


def test_files_that_are_not_checkpoints(tmp_path, capsys, run):
    (tmp_path / "a.pt").write_text("just text")
    refused(capsys, tmp_path, tmp_path / "a.pt", match="a.pt: not a torch checkpoint")
    (tmp_path / "a.pt").unlink()
    with h5py.File(tmp_path / "b.ckpt", "w") as f:
        f["x"] = [1, 2]
    refused(capsys, tmp_path, tmp_path / "b.ckpt", match="b.ckpt: not a torch checkpoint")
    (tmp_path / "b.ckpt").unlink()
    (tmp_path / "c.safetensors").write_bytes(b"\x00" * 64)
    refused(capsys, tmp_path, tmp_path / "c.safetensors", match="c.safetensors: not a safetensors file")
    (tmp_path / "c.safetensors").unlink()
    torch.save([1, 2, 3], tmp_path / "d.pt")
    refused(capsys, tmp_path, tmp_path / "d.pt", match="d.pt: holds a list, not a state_dict")
    torch.save({"epoch": 3, "lr": 0.1, "optimizer": {"state": {}}}, tmp_path / "d.pt")
    refused(capsys, tmp_path, tmp_path / "d.pt", match="d.pt: holds no state_dict")
    torch.save(torch.ones(3), tmp_path / "d.pt")
    refused(capsys, tmp_path, tmp_path / "d.pt", match="d.pt: holds a Tensor, not a state_dict")


def test_duplicate_epochs_and_conflicting_decays(tmp_path, capsys, run):
    for name in ("checkpoint-0.pth.tar", "last.pth.tar"):  # timm writes both for the same epoch
        torch.save({"epoch": 0, "version": 2, "state_dict": run[0].sgd}, tmp_path / name)
    refused(capsys, tmp_path, tmp_path, match="both hold epoch 1")
    (tmp_path / "last.pth.tar").unlink()
    (tmp_path / "checkpoint-0.pth.tar").unlink()
    for e in run:
        torch.save({"epoch": e.epoch, "optimizer": {}, "model": e.sgd, "scheduler": {}}, tmp_path / f"c_{e.epoch}.pt")
        torch.save({"epoch": e.epoch, "model": e.averaged, "decay": 0.99 if e.epoch == 3 else DECAY},
                   tmp_path / f"c_{e.epoch}_averaged_model.pt")
    refused(capsys, tmp_path, tmp_path, match="EMA decays differ (0.9 vs 0.99)")
    refused(capsys, tmp_path, tmp_path / "c_1*", "--decay", "0.5", match="c_1_averaged_model.pt: records decay 0.9, but --decay says 0.5")


def test_existing_output_is_replaced_only_with_overwrite(tmp_path, capsys, run):
    save_timm(tmp_path, run)
    out = tmp_path / "run.h5"
    out.write_text("an older run")
    c, _, err = dyn(capsys, "import", "checkpoints", tmp_path, "--out", out)
    assert c == 2 and "run.h5: already exists; pass --overwrite" in err and out.read_text() == "an older run"
    c, _, err = dyn(capsys, "import", "checkpoints", tmp_path, "--out", out, "--overwrite")
    assert c == 0, err
    with open_run(out) as r:
        assert r.networks == ["sgd", "ema"]
    out.unlink()
    c, _, err = dyn(capsys, "import", "checkpoints", tmp_path, "--out", tmp_path / "new" / "run.h5")
    assert c == 0 and (tmp_path / "new" / "run.h5").is_file(), err  # missing folders are made, as dyn train does
