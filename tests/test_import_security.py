"""Untrusted files: a pickle that would run code is refused, and its payload never runs.

Each payload, when unpickled in full, creates a marker file; every test first shows that it
does (so the test could fail), then that `dyn import` refuses the file with one line naming
it and the offending global, and that the marker was never created.
"""

import json
import os
import pickle

import numpy as np
import pytest
import torch

from dyn.errors import DynError
from dyn.importers.checkpoints import import_checkpoints
from dyn.importers.load import load

from helpers import run_dyn


class SystemPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


class OpenPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def save(obj, path, how):
    if how == "torch-zip":
        torch.save(obj, path)
    elif how == "torch-legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # plain pickle, as any script could write it
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=int(how[-1]))


PAYLOADS = [(SystemPayload, "posix.system"), (OpenPayload, "open")]
FORMATS = ["torch-zip", "torch-legacy", "pickle-2", "pickle-5"]


def full_unpickle_runs_it(tmp_path, payload, how):
    marker = tmp_path / "proof"
    path = tmp_path / f"proof.{how}.pt"
    save({"model": {"w": torch.ones(2)}, "extra": payload(marker)}, path, how)
    if how.startswith("torch"):
        torch.load(path, weights_only=False)  # what dyn never does
    else:
        with open(path, "rb") as f:
            pickle.load(f)
    return marker.exists()


@pytest.mark.parametrize("payload, name", PAYLOADS)
@pytest.mark.parametrize("how", FORMATS)
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, name, how):
    assert full_unpickle_runs_it(tmp_path, payload, how)  # the payload is real
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    save({"model": {"w": torch.ones(2)}, "extra": payload(marker)}, evil, how)
    with pytest.raises(DynError) as e:
        load(evil)
    msg = str(e.value)
    assert "\n" not in msg and str(evil) in msg and "refused" in msg
    assert name in msg, msg
    assert not marker.exists()
    with pytest.raises(DynError, match="refused"):
        import_checkpoints([evil], tmp_path / "run.h5")
    assert not marker.exists() and not (tmp_path / "run.h5").exists()


def test_cli_refuses_with_one_line_and_writes_nothing(tmp_path):
    marker = tmp_path / "pwned"
    good = tmp_path / "ckpt-1.pt"
    torch.save({"w": torch.ones(2)}, good)
    torch.save({"w": torch.ones(2), "extra": SystemPayload(marker)}, tmp_path / "ckpt-2.pt")
    r = run_dyn("import", "checkpoints", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("dyn: error: ")
    assert "ckpt-2.pt: refused: its pickle references posix.system" in r.stderr
    assert not marker.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1.pt", "ckpt-2.pt"]  # no run, no temporary


def test_argparse_namespace_is_the_one_class_allowed(tmp_path):
    # timm and torchvision store their args in one; building it runs nothing from the file
    import argparse

    p = tmp_path / "a.pt"
    torch.save({"state_dict": {"w": torch.ones(2)}, "args": argparse.Namespace(lr=0.1, model="x")}, p)
    assert load(p).tree["args"] == {"lr": 0.1, "model": "x"}
    # anything else outside torch's list is refused, harmless or not
    torch.save({"state_dict": {"w": torch.ones(2)}, "metric": np.float64(0.5)}, p)
    with pytest.raises(DynError, match="numpy"):
        load(p)


def test_object_arrays_are_never_unpickled(tmp_path):
    marker = tmp_path / "pwned"
    arr = np.empty(2, dtype=object)
    arr[0] = SystemPayload(marker)
    np.save(tmp_path / "1.npy", arr, allow_pickle=True)
    r = run_dyn("import", "predictions", tmp_path, "--out", tmp_path / "run.h5")
    assert r.returncode == 1 and r.stderr.count("\n") == 1
    assert "1.npy: holds a pickled (object) array" in r.stderr
    assert not marker.exists() and not (tmp_path / "run.h5").exists()


def test_provenance_is_stored_as_json_verbatim(tmp_path):
    # file names end up in the run's config; readers parse it as JSON, nothing is evaluated
    odd = tmp_path / "x'); __import__('os').system('touch pwned'); ('1.pt"
    torch.save({"w": torch.ones(2)}, odd)
    _, out = import_checkpoints([odd], tmp_path / "run.h5")
    import h5py

    with h5py.File(out, "r") as f:
        cfg = json.loads(f.attrs["config"])
    assert cfg["import"]["records"][0]["sgd"]["file"] == str(odd.resolve())
    assert not (tmp_path / "pwned").exists() and not os.path.exists("pwned")
