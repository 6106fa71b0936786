"""Evaluating several networks at once equals evaluating each on its own."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dyn.train.ema import EMA
from dyn.train.evaluate import evaluate
from dyn.train.models import build_model


@pytest.fixture(scope="module")
def networks():
    torch.manual_seed(0)
    model = build_model("resnet20", 10, in_channels=1)
    ema = EMA(model, [0.9, 0.99])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(3):  # real steps: weights and BatchNorm statistics differ between networks
        loss = F.cross_entropy(model(torch.randn(64, 1, 8, 8)), torch.randint(0, 10, (64,)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ema.update()
    x, y = torch.randn(300, 1, 8, 8), torch.randint(0, 10, (300,))
    return model, ema, x, y


@pytest.mark.parametrize("stacked", [False, True])
def test_every_network_as_if_evaluated_alone(networks, stacked):
    model, ema, x, y = networks
    states = {"sgd": None, **{n: ema.state_dict_for(k) for k, n in enumerate(ema.names)}}
    got = evaluate(model, states, x, y, batch_size=128, stacked=stacked)
    assert model.training  # the module's mode is restored
    for name, state in [("sgd", model.state_dict())] + [(n, ema.state_dict_for(k)) for k, n in enumerate(ema.names)]:
        alone = build_model("resnet20", 10, in_channels=1)
        alone.load_state_dict(state)
        alone.eval()
        with torch.no_grad():
            logits = alone(x)
        np.testing.assert_array_equal(got[name].predicted, logits.argmax(1).numpy())
        np.testing.assert_array_equal(got[name].correct, (logits.argmax(1) == y).numpy())
        np.testing.assert_allclose(got[name].loss, F.cross_entropy(logits, y, reduction="none").numpy(),
                                   rtol=1e-5, atol=1e-5)
