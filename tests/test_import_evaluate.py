"""`dyn import checkpoints --evaluate`: every imported network evaluated on a split, checked
against a plain eval-mode forward pass of the same weights computed here."""

import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import dyn
from dyn.importers.checkpoints import import_checkpoints
from dyn.train.import_eval import Evaluator
from dyn.train.data import load_dataset, normalize
from dyn.train.models import build_model

from helpers import run_dyn


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", val_size=120)  # ResNet-20 on a CPU: few samples keep it quick


def by_hand(model, state, data, split="val"):
    """Correct, predicted, loss of `state` on the split: eval mode, one batch, no dyn code."""
    model.load_state_dict(state)
    model.eval()
    x, y = data.split(split)
    with torch.no_grad():
        logits = model(normalize(x, data.mean, data.std))
    pred = logits.argmax(1)
    return (pred == y).numpy(), pred.numpy(), F.cross_entropy(logits, y, reduction="none").numpy()


def test_evaluate_resnet20_on_digits(tmp_path, digits):
    torch.manual_seed(0)
    model = build_model("resnet20", 10, in_channels=1)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.5), use_buffers=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    saved = []
    for epoch in (1, 2):
        for i in range(epoch):  # a few real steps on the digits training images
            x = normalize(digits.train_images[i * 64:(i + 1) * 64], digits.mean, digits.std)
            loss = F.cross_entropy(model(x), digits.train_labels[i * 64:(i + 1) * 64])
            opt.zero_grad()
            loss.backward()
            opt.step()
            ema.update_parameters(model)
        ck = {"epoch": epoch - 1, "model": model.state_dict(), "model_ema": ema.state_dict()}
        torch.save(ck, tmp_path / f"model_{epoch - 1}.pth")
        saved.append({k: {n: v.clone() for n, v in sd.items()} for k, sd in ck.items() if k != "epoch"})
    ev = Evaluator(model="resnet20", dataset="digits", splits=("val",), val_size=120)
    _, out = import_checkpoints([tmp_path], tmp_path / "run.h5", decay=0.5, evaluator=ev)
    ref = build_model("resnet20", 10, in_channels=1)
    with dyn.open_run(out) as r:
        assert r.splits == ["val"] and r.config["model"] == "resnet20" and r.config["dataset"] == "digits"
        np.testing.assert_array_equal(r.labels("val"), digits.val_labels.numpy())
        np.testing.assert_array_equal(r.dataset_index("val"), digits.val_indices)
        m = r.metrics()
        for i, ck in enumerate(saved):
            for net, state in (("sgd", ck["model"]), ("ema-0.5", {k[7:]: v for k, v in ck["model_ema"].items()
                                                                  if k.startswith("module.")})):
                for split in ("val",):
                    c, p, lo = by_hand(ref, state, digits, split)
                    rows = slice(i, i + 1)
                    np.testing.assert_array_equal(r.correct(split, net, rows)[0], c)
                    np.testing.assert_array_equal(r.predicted(split, net, rows)[0], p)
                    np.testing.assert_allclose(r.loss(split, net, rows)[0], lo, rtol=2e-3, atol=1e-3)  # float16
                    assert m[f"{net}/{split}/acc"][i] == pytest.approx(c.mean())
                    assert m[f"{net}/{split}/loss"][i] == pytest.approx(lo.mean(), rel=1e-5)
        # the model's own buffers decide what is a buffer
        t = r.param_table
        assert set(t[t.kind == "buffer"]["name"]) == {n for n, _ in ref.named_buffers()}


def test_model_factory_and_its_buffers(tmp_path, digits):
    (tmp_path / "mynets.py").write_text(textwrap.dedent("""
        import torch, torch.nn as nn

        class Net(nn.Module):
            def __init__(self):
                super().__init__()
                self.fc = nn.Linear(64, 10)
                self.register_buffer("scale", torch.tensor(0.5))  # a float buffer no name rule knows

            def forward(self, x):
                return self.fc(x.flatten(1)) * self.scale

        def make():
            return Net()
    """))
    torch.manual_seed(1)
    states = []
    for epoch in (1, 2, 3):
        sd = {"fc.weight": torch.randn(10, 64) * 0.1, "fc.bias": torch.randn(10), "scale": torch.tensor(0.5 * epoch)}
        torch.save(sd, tmp_path / f"w{epoch}.pt")
        states.append(sd)
    r = run_dyn("import", "checkpoints", tmp_path / "w*.pt", "--out", tmp_path / "run.h5", "--evaluate",
                "--model-factory", "mynets:make", "--dataset", "digits", "--val-size", "120",
                "--split", "val", "--split", "test", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    import sys
    sys.path.insert(0, str(tmp_path))
    try:
        import mynets
    finally:
        sys.path.remove(str(tmp_path))
    with dyn.open_run(tmp_path / "run.h5") as run:
        t = run.param_table
        assert dict(zip(t.name, t.kind)) == {"fc.weight": "param", "fc.bias": "param", "scale": "buffer"}
        assert run.splits == ["val", "test"]
        for i, sd in enumerate(states):
            for split in run.splits:
                c, p, lo = by_hand(mynets.make(), sd, digits, split)
                np.testing.assert_array_equal(run.correct(split, "sgd", slice(i, i + 1))[0], c)
                np.testing.assert_array_equal(run.predicted(split, "sgd", slice(i, i + 1))[0], p)
                np.testing.assert_allclose(run.loss(split, "sgd", slice(i, i + 1))[0], lo, rtol=2e-3, atol=1e-3)


def test_files_that_do_not_fit_the_model(tmp_path, digits, capsys):
    from test_import_bad_inputs import dyn

    torch.save(build_model("resnet20", 10, in_channels=1).state_dict(), tmp_path / "a.pt")
    base = ("import", "checkpoints", tmp_path / "a.pt", "--out", tmp_path / "run.h5", "--evaluate",
            "--dataset", "digits")
    code, _, err = dyn(capsys, *base, "--model", "resnet32")
    assert code == 1 and err.count("\n") == 1
    assert "a.pt: lacks 'layer1.3.conv1.weight', which the model (resnet32) has" in err
    code, _, err = dyn(capsys, *base)
    assert code == 2 and "--evaluate needs exactly one of --model" in err
    code, _, err = dyn(capsys, *base, "--model-factory", "nosuchmodule:make")
    assert code == 2 and "cannot import 'nosuchmodule'" in err
    code, _, err = dyn(capsys, *base, "--model", "resnet20", "--split", "everything")
    assert code == 2 and "--split 'everything'" in err
    assert not (tmp_path / "run.h5").exists()
