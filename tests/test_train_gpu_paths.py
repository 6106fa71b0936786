"""CUDA-path options of `dyn train`, run on the CPU (issue 22, points 4 and 6): --compile
compiles the model once, --deterministic sets PyTorch's switches and can change on --resume."""

import functools

import pytest
import torch

from dyn.train.config import TrainConfig
from dyn.train.loop import Trainer, set_deterministic


@pytest.fixture
def counting_compile(monkeypatch):
    """torch.compile with a backend that counts the graphs it is given and runs them as traced
    (no C++ compiler, seconds instead of minutes): one per compile of the model."""
    graphs = []

    def backend(gm, example_inputs):
        graphs.append({tuple(t.shape) for t in example_inputs if isinstance(t, torch.Tensor)})
        return gm.forward

    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend=backend))
    yield graphs
    torch._dynamo.reset()


@pytest.mark.slow
def test_compile_compiles_once_though_the_last_batch_is_partial(counting_compile, tmp_path):
    # 1,077 digits in batches of 256: 4 full batches and a last one of 53, twice
    cfg = TrainConfig(dataset="digits", schedule="constant", decays=(0.9,), epochs=2, batch_size=256,
                      device="cpu", compile=True).validate()
    assert Trainer(cfg, tmp_path / "c.h5", progress=False).run() == 0
    # before: a second graph for the batch of 53 (dynamo recompiles on the new shape)
    assert len(counting_compile) == 1, counting_compile
    assert (256, 1, 8, 8) in counting_compile[0]  # the images of a full batch


def test_set_deterministic_switches_and_restores():
    before = torch.are_deterministic_algorithms_enabled()
    try:
        set_deterministic(True, torch.device("cpu"))
        assert torch.are_deterministic_algorithms_enabled() and torch.is_deterministic_algorithms_warn_only_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
        set_deterministic(False, torch.device("cuda"))  # the CUDA default: autotuned, not repeatable
        assert not torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    finally:
        set_deterministic(before, torch.device("cpu"))
    assert not torch.backends.cudnn.benchmark


def test_deterministic_is_a_flag_stored_in_the_config_and_free_on_resume():
    from click.testing import CliRunner

    from dyn.train.cli import train
    from dyn.train.config import RUN_KEYS

    assert "deterministic" not in RUN_KEYS  # how a run is computed, not what: may change on --resume
    assert TrainConfig(deterministic=True).to_dict()["deterministic"] is True
    help_text = CliRunner().invoke(train, ["--help"]).output
    assert "--deterministic" in help_text and "docs/reproduce.md" in help_text
