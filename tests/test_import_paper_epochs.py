"""The paper's `preds/{e}.npy` is written after training epoch e + 1 (the authors' loop counts
from 0 and saves after training): imported, it must sit at dyn's epoch e + 1, so that one epoch
number is one training state in imported and native runs (issue 13, point 4, first bullet).

One training loop here records a native run through dyn's Recorder AND saves preds/ as the
authors' loop does; both are then read through the same --from-epoch/--to-epoch windows."""

import json

import numpy as np
import pytest
import torch
import torch.nn as nn
from torch.func import functional_call

import dyn
from dyn.analyze.window import select
from dyn.importers.predictions import import_predictions
from dyn.train.recorder import Recorder
from helpers import run_dyn

EPOCHS, DECAY = 6, 0.9


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("paper_epochs")
    preds = tmp / "preds"
    preds.mkdir()
    torch.manual_seed(0)
    x, y = torch.randn(160, 5), torch.randint(0, 3, (160,))
    xv, yv = x[:40], y[:40]
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = Recorder.create(tmp / "native.h5", model, [DECAY], {"val": (xv, yv)}, num_classes=3, optimizer=opt)
    for epoch in range(EPOCHS):  # the authors' loop: epochs counted from 0
        for i in range(40, 160, 30):
            loss = nn.functional.cross_entropy(model(x[i:i + 30]), y[i:i + 30])
            opt.zero_grad()
            loss.backward()
            opt.step()
            rec.step(loss)
        with torch.no_grad():  # ... and after training epoch `epoch`, their preds/{epoch}.npy
            np.save(preds / f"{epoch}.npy", (model(xv).argmax(1) == yv).numpy())
            ema = dict(rec.states()[f"ema-{DECAY}"])
            np.save(preds / f"{epoch}_average.npy", (functional_call(model, ema, (xv,)).argmax(1) == yv).numpy())
        rec.end_epoch(epoch + 1)  # dyn's epoch k: the state after k passes
    rec.finish()
    imported = import_predictions([preds], tmp / "imported.h5", decay=DECAY)
    return tmp / "native.h5", imported


def test_imported_preds_sit_at_the_epoch_of_the_same_training_state(runs):
    native, imported = runs
    with dyn.open_run(native) as n, dyn.open_run(imported) as p:
        assert list(n.epochs("val")) == list(range(EPOCHS + 1))  # 0: the initial weights
        assert list(p.epochs("val")) == list(range(1, EPOCHS + 1))  # preds/0.npy .. preds/5.npy
        assert p.networks == n.networks == ["sgd", f"ema-{DECAY}"]
        for lo, hi in ((2, 4), (1, EPOCHS), (EPOCHS, EPOCHS)):
            wn, wp = select(n, "val", lo, hi).rows, select(p, "val", lo, hi).rows
            assert list(n.epochs("val")[wn]) == list(p.epochs("val")[wp]) == list(range(lo, hi + 1))
            for net in n.networks:
                np.testing.assert_array_equal(n.correct("val", net, wn), p.correct("val", net, wp))


@pytest.mark.slow
def test_the_same_window_gives_the_same_stability_from_both(runs):
    native, imported = runs
    out = {}
    for name, path in (("native", native), ("imported", imported)):
        r = run_dyn("analyze", "stability", str(path), "--from-epoch", "3", "--to-epoch", "5", "--json")
        assert r.returncode == 0, r.stderr
        [out[name]] = json.loads(r.stdout)["runs"]
    for o in out.values():
        assert o["window"] == [3, 5] and o["networks"]["sgd"]["epochs"] == [3, 4, 5]
        o.pop("label"), o.pop("path")  # the run's name
    assert out["native"] == out["imported"]
