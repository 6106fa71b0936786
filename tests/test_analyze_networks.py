"""Network names: "sgd" and "ema-<decay>" as the run file writes them."""

from dyn.analyze.networks import decay, label, order


def test_names():
    assert decay("ema-0.9995") == 0.9995 and decay("sgd") is None and decay("ema-x") is None
    assert label("sgd") == "SGD" and label("ema-0.9995") == "EMA 0.9995" and label("swa") == "swa"
    assert order(["swa", "ema-0.9997", "sgd", "ema-0.9"]) == ["sgd", "ema-0.9", "ema-0.9997", "swa"]
