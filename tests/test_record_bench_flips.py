"""record_bench's prediction comparison (issue 22, point 2): flips are counted and reported, not
asserted, and only a flip where the top-2 logit gap exceeds the tolerance is a disagreement; its
TF32 emulation rounds as tensor cores do (10-bit mantissa, round to nearest even)."""

import sys
from types import SimpleNamespace

import numpy as np
import torch

from helpers import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import record_bench  # noqa: E402


def test_to_tf32_rounds_to_ten_mantissa_bits_nearest_even():
    x = torch.tensor([1.0, 1 + 2**-11, 1 + 2**-10 + 2**-11, -1 - 2**-11 - 2**-20, 3.14159265, 1 + 2**-10])
    want = [1.0, 1.0, 1 + 2**-9, -1 - 2**-10, 3.140625, 1 + 2**-10]  # ties to even, sign kept
    assert record_bench.to_tf32(x).tolist() == want
    assert record_bench.to_tf32(torch.tensor([5], dtype=torch.int64)).tolist() == [5]  # only float32


def test_emulated_tf32_changes_convolutions_only_while_on():
    torch.manual_seed(0)
    x, w = torch.randn(2, 3, 8, 8), torch.randn(4, 3, 3, 3)
    exact = torch.nn.functional.conv2d(x, w)
    with record_bench.emulated_tf32():
        rounded = torch.nn.functional.conv2d(x, w)
    assert torch.equal(rounded, torch.nn.functional.conv2d(record_bench.to_tf32(x), record_bench.to_tf32(w)))
    assert not torch.equal(rounded, exact) and torch.allclose(rounded, exact, rtol=0, atol=1e-2)
    assert torch.equal(torch.nn.functional.conv2d(x, w), exact)  # restored


def test_compare_counts_flips_and_those_beyond_the_tolerance(capsys):
    ref = {("sgd", "val"): torch.tensor([0, 1, 2, 3]), ("ema-0.9", "val"): torch.tensor([5, 5])}
    gaps = {("sgd", "val"): np.array([1e-6, 0.5, 1e-4, 2.0]), ("ema-0.9", "val"): np.array([3e-3, 1e-7])}
    out = {"val": {"sgd": SimpleNamespace(predicted=np.array([9, 1, 9, 3])),  # two near-tie flips
                   "ema-0.9": SimpleNamespace(predicted=np.array([4, 5]))}}  # one flip at gap 3e-3
    assert record_bench.compare("stacked", out, ref, gaps, 1e-3) == 1
    line = capsys.readouterr().out
    assert line.startswith("predictions stacked vs plain: 3 of 6 flipped, 1 where the top-2 gap > 0.001; "
                           "largest top-2 gap at a flip 3.0e-03 (DISAGREE beyond rounding; 3 near-ties"), line
    assert record_bench.compare("loop", out, ref, gaps, 1e-2) == 0
    assert "3 of 6 flipped, 0 where the top-2 gap > 0.01" in capsys.readouterr().out
