"""Damaged checkpoint and prediction files fed to `dyn import`: a run, or one line; never a
traceback, a crash, a hang, or a file left behind.

Hypothesis truncates or flips bytes of a valid file of each kind dyn imports: a timm-style
torch checkpoint (zip format and torch's legacy format), a .safetensors file and a .npy array
of correctness. Each import runs as a real `dyn import` process (tests/forkserver.py: no
torch operation ran before the fork; its address space is capped, so a size forged into the
file cannot swamp the machine) within a time limit, and must either write a run that opens
and is whole (complete, every record readable), or refuse in one line `dyn: error: ...`
naming the file, exit 1 or 2, with nothing written: no run, no temporary. A truncated file is
always refused.
"""

import os

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from dyn import open_run

SETTINGS = settings(max_examples=int(os.environ.get("DYN_TEST_EXAMPLES", 25)), deadline=None,
                    derandomize=True, database=None, phases=[Phase.explicit, Phase.generate],
                    suppress_health_check=list(HealthCheck))
KINDS = ["checkpoint-3.pth.tar", "legacy-3.pt", "weights-3.safetensors", "sgd.npy"]


def state(seed):
    g = torch.Generator().manual_seed(seed)
    return {"0.weight": torch.randn(4, 3, generator=g), "0.bias": torch.randn(4, generator=g),
            "1.running_mean": torch.randn(4, generator=g), "1.num_batches_tracked": torch.tensor(7)}


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One valid file of each kind, and what importing it gives: (networks, epochs, weights per record)."""
    folder = tmp_path_factory.mktemp("originals")
    ckpt = {"epoch": 2, "version": 2, "state_dict": state(0), "state_dict_ema": state(1)}
    torch.save(ckpt, folder / KINDS[0])
    torch.save(ckpt, folder / KINDS[1], _use_new_zipfile_serialization=False)
    save_file({k: v.numpy() for k, v in state(2).items()}, folder / KINDS[2], metadata={"epoch": "3"})
    np.save(folder / KINDS[3], np.random.default_rng(0).random((5, 40)) < 0.5)
    return {k: (folder / k).read_bytes() for k in KINDS}


def command(src, out):
    if src.name.endswith(".npy"):
        return ["import", "predictions", "--net", f"sgd={src}", "--out", out]
    return ["import", "checkpoints", src, "--out", out]


def shape(run_path):
    """A run's state, networks, weight epochs, and the shapes of everything it records (all read)."""
    with open_run(run_path) as run:
        weights = [run.params(n, e).shape + run.buffers(n, e).shape
                   for e in run.weight_epochs() for n in run.networks]
        bits = [run.correct(s, n).shape for s in run.splits for n in run.networks]
        return run.state, run.networks, list(run.weight_epochs()), weights, bits


def imported(forkserver, kind, data, folder):
    """Import `data` as a file of `kind` in a fresh folder; the outcome, checked."""
    for p in folder.iterdir():
        p.unlink()
    src = folder / kind
    src.write_bytes(data)
    out = folder / "run.h5"
    r = forkserver.run(*command(src, out), timeout=60, memory=2 << 30)
    assert r.signal is None and r.code is not None, f"died: {r}"
    assert "Traceback" not in r.stderr, r.stderr
    if r.code == 0:
        return shape(out)
    assert r.code in (1, 2), r
    assert r.stderr.startswith("dyn: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert str(src) in r.stderr or kind in r.stderr, r.stderr
    assert sorted(p.name for p in folder.iterdir()) == [kind], "a refused import left files behind"
    return None


@pytest.fixture(scope="module")
def expected(forkserver, originals, tmp_path_factory):
    folder = tmp_path_factory.mktemp("expected")
    out = {k: imported(forkserver, k, data, folder) for k, data in originals.items()}
    assert all(out.values()), out
    assert out[KINDS[0]][1] == ["sgd", "ema"] and out[KINDS[0]][2] == [3]
    return out


@SETTINGS
@given(data=st.data())
def test_truncated_files_are_refused(forkserver, originals, expected, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    raw = originals[kind]
    cut = data.draw(st.integers(0, len(raw) - 1), label="keep bytes")
    assert imported(forkserver, kind, raw[:cut], tmp_path_factory.mktemp("t", numbered=True)) is None


@SETTINGS
@given(data=st.data())
def test_flipped_bytes_give_a_run_or_one_line(forkserver, originals, expected, tmp_path_factory, data):
    kind = data.draw(st.sampled_from(KINDS), label="kind")
    raw = bytearray(originals[kind])
    for at, x in data.draw(st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(1, 255)),
                                    min_size=1, max_size=6), label="offset, xor"):
        raw[at] ^= x
    got = imported(forkserver, kind, bytes(raw), tmp_path_factory.mktemp("f", numbered=True))
    # a flip in a tensor's bytes, an epoch number or a key name imports as what the file now says
    # (no format checksums its data); whatever it says, the run is whole and complete
    assert got is None or (got[0] == "complete" and got[2]) or (got[0] == "complete" and got[4]), got


def test_damage_that_once_raised_a_traceback_is_refused_in_one_line(forkserver, originals, tmp_path):
    # found by the flips above: a header numpy's literal_eval cannot parse (a SyntaxError)
    raw = originals["sgd.npy"]
    assert b"False," in raw
    assert imported(forkserver, "sgd.npy", raw.replace(b"False,", b"False[", 1), tmp_path) is None
