"""Imported prediction names: the usual spellings of an EMA network are EMA networks, with
their decay where the name carries one, and `dyn inspect` shows each network's kind
(issue 19, point 10)."""

import numpy as np
import pytest

from dyn import open_run
from dyn.importers.predictions import import_predictions, network
from dyn.inspect import render, summary


@pytest.mark.parametrize("name, want", [
    ("ema_0.99", ("ema-0.99", "ema", 0.99)),
    ("ema-0.99", ("ema-0.99", "ema", 0.99)),
    ("EMA0.999", ("ema-0.999", "ema", 0.999)),
    ("avg_0.9995", ("ema-0.9995", "ema", 0.9995)),
    ("average", ("ema", "ema", None)),
    ("avg", ("ema", "ema", None)),
    ("EMA", ("ema", "ema", None)),
    ("SGD", ("sgd", "sgd", None)),
    ("ema_1.5", ("ema_1.5", "other", None)),   # not a decay: left as it is
    ("emacs", ("emacs", "other", None)),
    ("swa", ("swa", "other", None)),
])
def test_spellings(name, want):
    n = network(name)
    assert (n.name, n.kind, n.decay) == want


def test_npy_and_npz_names_import_as_ema_networks(tmp_path):
    a = np.ones((3, 5), bool)
    np.save(tmp_path / "sgd.npy", a)
    np.save(tmp_path / "ema_0.99.npy", a)
    np.savez(tmp_path / "more.npz", ema=a, **{"ema-0.9": a})
    out = import_predictions([str(tmp_path / f) for f in ("sgd.npy", "ema_0.99.npy", "more.npz")], tmp_path / "r.h5")
    with open_run(out) as run:
        assert run.networks == ["sgd", "ema", "ema-0.9", "ema-0.99"]
        info = {n: run.network_info(n) for n in run.networks}
        assert (info["ema-0.99"]["kind"], info["ema-0.99"]["decay"]) == ("ema", 0.99)
        assert (info["ema"]["kind"], info["ema"]["decay"]) == ("ema", None)
        assert run.config["import"]["renamed"] == {"ema_0.99": "ema-0.99"}
        text = render(summary(out))
    assert "ema-0.99 (EMA, decay 0.99)" in text and "ema (EMA, decay unknown)" in text and "sgd (SGD)" in text
    assert "model=None" not in text and "dataset=None" not in text   # point 12: keys an import lacks


def test_two_spellings_of_one_network_are_refused(tmp_path):
    from dyn.errors import DynError

    a = np.ones((3, 5), bool)
    np.savez(tmp_path / "two.npz", avg=a, ema=a)
    with pytest.raises(DynError, match="network 'ema' is 'ema', as is"):
        import_predictions([str(tmp_path / "two.npz")], tmp_path / "r.h5")
    assert not (tmp_path / "r.h5").exists()


def test_an_other_network_says_it_is_left_out(tmp_path):
    np.save(tmp_path / "student.npy", np.ones((3, 5), bool))
    out = import_predictions([str(tmp_path / "student.npy")], tmp_path / "r.h5")
    assert "student (kind other, not analysed unless named with --net)" in render(summary(out))


def test_unknown_decay_ema_is_labelled_EMA():
    from dyn.analyze.networks import label

    assert (label("ema"), label("ema-0.9"), label("sgd")) == ("EMA", "EMA 0.9", "SGD")
