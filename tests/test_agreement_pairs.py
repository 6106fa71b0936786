"""`dyn analyze agreement` without --net compares SGD with each EMA network, as the paper does
(issue 13.4); --net a,b still picks one pair. Each pair's numbers are checked against a
second count over the unpacked correctness bits."""

import json
from types import SimpleNamespace

import numpy as np
import pytest

from dyn import open_run
from dyn.cli import main
from dyn.synthetic import Synthetic


@pytest.fixture
def dyn(capsys):
    def run(*args):
        try:
            main([*map(str, args)])
            code = 0
        except SystemExit as e:
            code = e.code or 0
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return run


def test_agreement_without_net_compares_sgd_with_each_ema(dyn, tmp_path):
    run = Synthetic(epochs=6, samples=50, decays=(0.9, 0.99), weights_every=0).write(tmp_path / "r.h5")
    r = dyn("analyze", "agreement", run, "--split", "val", "--json", "--out", tmp_path / "m.png")
    assert r.returncode == 0, r.stderr
    docs = json.loads(r.stdout)["runs"]
    assert [d["networks"] for d in docs] == [["sgd", "ema-0.9"], ["sgd", "ema-0.99"]]
    with open_run(run) as rr:
        sgd = rr.correct("val", "sgd")
        for d in docs:  # per epoch: the fraction of samples whose correctness differs, by hand
            other = rr.correct("val", d["networks"][1])
            np.testing.assert_allclose(d["correct_differs"], (sgd != other).mean(axis=1))
    assert (tmp_path / "m-r-ema-0.9.png").stat().st_size > 0 and (tmp_path / "m-r-ema-0.99.png").stat().st_size > 0
    text = dyn("analyze", "agreement", run, "--split", "val").stdout
    assert "SGD vs EMA 0.9 " in text and "SGD vs EMA 0.99 " in text
    # --net still picks one pair
    r = dyn("analyze", "agreement", run, "--split", "val", "--net", "ema-0.9,ema-0.99", "--json")
    assert [d["networks"] for d in json.loads(r.stdout)["runs"]] == [["ema-0.9", "ema-0.99"]]
