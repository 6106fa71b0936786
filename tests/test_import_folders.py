"""`dyn import checkpoints` on checkpoint series as Lightning and the HF Trainer leave them:
last.ckpt beside epoch=E-step=S.ckpt, saves within epochs, mid-epoch Trainer folders, and an
index that points outside its folder. (Real Trainer folders: tests/test_hf.py.)"""

import json

import numpy as np
import torch
from safetensors.torch import save_file

from dyn import open_run
from helpers import run_dyn


def _sd(seed):
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(3, 2, generator=g), "b": torch.randn(3, generator=g)}


def _ckpt(path, epoch, step, seed):
    torch.save({"epoch": epoch, "global_step": step, "pytorch-lightning_version": "2.6.6",
                "state_dict": _sd(seed)}, path)


def test_lightning_last_ckpt_is_dropped_as_a_copy_of_the_newest(tmp_path):
    _ckpt(tmp_path / "epoch=0-step=5.ckpt", 0, 5, 1)
    _ckpt(tmp_path / "epoch=1-step=10.ckpt", 1, 10, 2)
    _ckpt(tmp_path / "last.ckpt", 1, 10, 2)
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 0, r.stderr
    with open_run(tmp_path / "run.h5") as run:
        assert list(run.weight_epochs()) == [1, 2] and list(run.metrics()["iteration"]) == [5, 10]
        np.testing.assert_array_equal(run.state_dict("sgd", 2)["w"], _sd(2)["w"].numpy())


def test_saves_within_epochs_are_ordered_and_numbered_by_step(tmp_path):
    for epoch, step in [(1, 9), (0, 3), (0, 6)]:
        _ckpt(tmp_path / f"epoch={epoch}-step={step}.ckpt", epoch, step, step)
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 0, r.stderr
    with open_run(tmp_path / "run.h5") as run:
        assert list(run.weight_epochs()) == [3, 6, 9] and list(run.metrics()["iteration"]) == [3, 6, 9]
        for s in (3, 6, 9):
            np.testing.assert_array_equal(run.state_dict("sgd", s)["b"], _sd(s)["b"].numpy())


def test_mid_epoch_trainer_folders_keep_their_fractional_epoch(tmp_path):
    for step, epoch in [(5, 0.5), (10, 1.0)]:
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        save_file(_sd(step), str(d / "model.safetensors"))
        (d / "trainer_state.json").write_text(json.dumps({"global_step": step, "epoch": epoch}))
        (d / "training_args.bin").write_bytes(b"\x80\x04 not read")  # a pickle dyn never opens
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 0, r.stderr
    with open_run(tmp_path / "run.h5") as run:
        assert list(run.weight_epochs()) == [5, 10] and list(run.metrics()["iteration"]) == [5, 10]
        notes = run.config["import"]["records"][0]["sgd"]["notes"]
        assert "Trainer epoch 0.5" in notes


def test_an_index_naming_a_shard_outside_its_folder_is_refused(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    save_file(_sd(0), str(tmp_path / "outside.safetensors"))
    (d / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../outside.safetensors"}}))
    r = run_dyn("import", "checkpoints", d, "--out", tmp_path / "run.h5")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "not a file name in" in r.stderr and not (tmp_path / "run.h5").exists()
