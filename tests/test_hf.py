"""dyn.train.hf on a real transformers install, and `dyn import checkpoints` on the folders a real
Trainer writes (checkpoint-N/, sharded or not); neither library loads with `dyn --help` or
`import dyn.analyze`."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from dyn import open_run
from helpers import ROOT, run_dyn

EXAMPLE = ROOT / "examples" / "hf_text_classification.py"
EPOCHS = 2
STEPS = 20  # 640 sentences / batch 32


def by_name(run, net, epoch):
    """{tensor name: array} of one stored network (params and buffers)."""
    return run.state_dict(net, epoch)


@pytest.fixture(scope="module")
def hf_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    r = subprocess.run([sys.executable, str(EXAMPLE), "--out", str(d / "hf.h5"), "--output-dir", str(d / "trainer"),
                        "--epochs", str(EPOCHS)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr
    return d


@pytest.mark.slow
def test_example_records_every_network_every_epoch(hf_run):
    with open_run(hf_run / "hf.h5") as run:
        assert run.state == "complete"
        assert run.networks == ["sgd", "ema-0.9", "ema-0.99"] and run.splits == ["val", "test", "train-presented"]
        # the training forward pass of every epoch (values checked in test_callbacks_presented.py)
        assert list(run.epochs("train-presented")) == list(range(1, EPOCHS + 1))
        assert not np.isnan(run.prob("train-presented", "sgd")).any()  # the Trainer presents all
        for split in ("val", "test"):
            assert list(run.epochs(split)) == list(range(EPOCHS + 1))
            assert run.correct(split, "sgd").shape == (EPOCHS + 1, 200)
        assert list(run.metrics()["iteration"]) == [STEPS * e for e in range(EPOCHS + 1)]
        assert run.metrics()["sgd/val/acc"].iloc[-1] > 0.8  # the task is learnt: records mean something
        assert np.array_equal(run.params("ema-0.99", 0), run.params("sgd", 0))
        assert run.config["model"] == "BertForSequenceClassification"


@pytest.mark.slow
def test_trainer_folders_import_as_one_run_equal_to_the_recorded_weights(hf_run, tmp_path):
    out = tmp_path / "ck.h5"
    r = run_dyn("import", "checkpoints", hf_run / "trainer", "--sgd-key", "model", "--ema-key", "ema-0.99",
                "--out", out)
    assert r.returncode == 0, r.stderr
    with open_run(out) as imp, open_run(hf_run / "hf.h5") as rec:
        assert imp.networks == ["sgd", "ema-0.99"]
        assert list(imp.weight_epochs()) == [1, 2]
        assert list(imp.metrics()["iteration"]) == [STEPS, 2 * STEPS]
        for e in (1, 2):  # what the Trainer saved is what the callback recorded at that epoch end
            for net in imp.networks:
                got, want = by_name(imp, net, e), by_name(rec, net, e)
                assert got.keys() == want.keys()
                for k in got:
                    np.testing.assert_array_equal(got[k], want[k])
    r = run_dyn("analyze", "weight-diff", out, "--csv", tmp_path / "wd.csv", "--out", tmp_path / "wd.png")
    assert r.returncode == 0, r.stderr
    r2 = run_dyn("analyze", "weight-diff", hf_run / "hf.h5", "--net", "ema-0.99", "--csv", tmp_path / "wd2.csv")
    assert r2.returncode == 0, r2.stderr
    import pandas as pd

    a, b = pd.read_csv(tmp_path / "wd.csv"), pd.read_csv(tmp_path / "wd2.csv")
    b = b[b.epoch.isin([1, 2])]
    np.testing.assert_allclose(a.relative.to_numpy(), b.relative.to_numpy(), rtol=1e-12)


@pytest.fixture(scope="module")
def tiny_bert():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return transformers.BertForSequenceClassification(cfg)


def _expect(model):
    return {k: v.detach().numpy() for k, v in model.state_dict().items()}


@pytest.mark.slow
def test_sharded_safetensors_folder_from_save_pretrained_is_one_state(tiny_bert, tmp_path):
    for e in (1, 2):
        folder = tmp_path / "out" / f"checkpoint-{10 * e}"
        with torch.no_grad():
            next(tiny_bert.parameters()).add_(1.0)  # each checkpoint differs
        tiny_bert.save_pretrained(folder, max_shard_size="20KB")
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": 10 * e, "epoch": float(e)}))
        if e == 2:
            want = _expect(tiny_bert)
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").is_file()
    r = run_dyn("import", "checkpoints", tmp_path / "out", "--out", tmp_path / "run.h5", block=("torch",),
                code_after="print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')")
    assert r.returncode == 0, r.stderr
    assert "NO-TORCH" in r.stdout  # safetensors folders import without torch
    with open_run(tmp_path / "run.h5") as run:
        assert list(run.weight_epochs()) == [1, 2] and list(run.metrics()["iteration"]) == [10, 20]
        got = by_name(run, "sgd", 2)
        assert got.keys() == want.keys()
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


def test_sharded_torch_bin_folder_through_its_index(tmp_path):
    sd = {"a.weight": torch.randn(3, 4), "a.bias": torch.randn(3), "b.weight": torch.randn(2, 3)}
    torch.save({"a.weight": sd["a.weight"], "a.bias": sd["a.bias"]}, tmp_path / "pytorch_model-00001-of-00002.bin")
    torch.save({"b.weight": sd["b.weight"]}, tmp_path / "pytorch_model-00002-of-00002.bin")
    wm = {"a.weight": "pytorch_model-00001-of-00002.bin", "a.bias": "pytorch_model-00001-of-00002.bin",
          "b.weight": "pytorch_model-00002-of-00002.bin"}
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": wm}))
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 0, r.stderr
    with open_run(tmp_path / "run.h5") as run:
        assert len(run.weight_epochs()) == 1
        got = by_name(run, "sgd", run.weight_epochs()[0])
        for k, v in sd.items():
            np.testing.assert_array_equal(got[k], v.numpy())
    # an index naming a shard that is not there: one line, nothing written
    wm["b.weight"] = "pytorch_model-00003-of-00002.bin"
    (tmp_path / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": wm}))
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "bad.h5")
    assert r.returncode != 0 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "pytorch_model-00003-of-00002.bin is missing" in r.stderr and not (tmp_path / "bad.h5").exists()


def test_compute_correct_hook_for_a_non_classification_head():
    pytest.importorskip("transformers")
    from dyn.train.hf import make_evaluate

    model = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[1.0, 0.0]]))
    x = torch.tensor([[0.1, 5.0], [2.0, 0.0], [3.0, 1.0]])
    y = torch.tensor([0.0, 2.3, 1.0])  # regression targets; correct = within 0.5
    other = {"weight": torch.tensor([[0.0, 1.0]])}
    ev = make_evaluate(lambda out, t: (out[:, 0] - t).abs() < 0.5)(model, {"sgd": None, "ema": other}, x, y,
                                                                     batch_size=2)
    np.testing.assert_array_equal(ev["sgd"].correct, [True, True, False])  # 0.1, 2.0, 3.0 vs 0, 2.3, 1
    np.testing.assert_array_equal(ev["ema"].correct, [False, False, True])  # 5.0, 0.0, 1.0
    assert np.isnan(ev["sgd"].loss).all() and (ev["sgd"].predicted == -1).all()  # not a classifier


def test_dyn_help_and_dyn_analyze_import_neither_library():
    probe = "print('LOADED=' + ','.join(m for m in ('pytorch_lightning', 'lightning', 'transformers') if m in sys.modules))"
    r = run_dyn("--help", code_after=probe)
    assert r.returncode == 0 and "LOADED=\n" in r.stdout, r.stdout[-500:]
    r = subprocess.run([sys.executable, "-c", "import sys, dyn.analyze, dyn.analyze.commands; " + probe],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and r.stdout == "LOADED=\n", r.stderr


KILLER = """
import importlib.util, os, signal, sys
from transformers import TrainerCallback
spec = importlib.util.spec_from_file_location("ex", {example!r})
ex = importlib.util.module_from_spec(spec); spec.loader.exec_module(ex)
class Kill(TrainerCallback):
    def on_step_end(self, args, state, control, **kw):
        if state.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)
sys.exit(ex.main(sys.argv[1:], callbacks=[Kill()]))
"""


@pytest.mark.slow
def test_sigkill_mid_epoch_and_resume_from_the_trainers_checkpoint_equals_an_uninterrupted_run(hf_run, tmp_path):
    from helpers import assert_same_records

    args = ["--out", tmp_path / "hf.h5", "--output-dir", tmp_path / "trainer", "--epochs", EPOCHS]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    r = subprocess.run([sys.executable, "-c", KILLER.format(example=str(EXAMPLE), step=STEPS + 5), *map(str, args)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == -9, r.stderr[-3000:]
    with open_run(tmp_path / "hf.h5") as run:
        assert list(run.epochs("val")) == [0, 1] and run.state != "complete"
    r = subprocess.run([sys.executable, str(EXAMPLE), *map(str, args), "--resume"], cwd=ROOT, capture_output=True,
                       text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert_same_records(hf_run / "hf.h5", tmp_path / "hf.h5")
