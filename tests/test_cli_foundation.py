"""The `dyn` command line: help, version, lazy imports, `dyn inspect` and its bad inputs."""

import json
import struct

import h5py
import numpy as np
import pytest

from dyn.superblock import lookup3, read_superblock
from dyn.synthetic import Synthetic

from helpers import run_dyn

SHOW_MODULES = "import json; print('MODULES=' + json.dumps(sorted(sys.modules)))"


def modules(result):
    line = [l for l in result.stdout.splitlines() if l.startswith("MODULES=")][-1]
    return set(json.loads(line[len("MODULES="):]))


@pytest.fixture(scope="module")
def run_file(tmp_path_factory):
    return Synthetic(epochs=6, samples=101, splits=("val", "test"), decays=(0.99,), images=True).write(
        tmp_path_factory.mktemp("cli") / "run.h5", config={"schedule": "constant", "lr": 0.05})


def test_help_and_version():
    r = run_dyn("--help")
    assert r.returncode == 0 and "inspect" in r.stdout and "Usage: dyn" in r.stdout
    r = run_dyn("--version")
    assert r.returncode == 0 and r.stdout.strip() == "dyn, version 0.1.0"


def test_help_loads_neither_torch_nor_matplotlib():
    r = run_dyn("--help", code_after=SHOW_MODULES)
    loaded = modules(r)
    assert not {"torch", "matplotlib", "h5py"} & loaded


def test_inspect_loads_neither_torch_nor_matplotlib(run_file):
    r = run_dyn("inspect", run_file, code_after=SHOW_MODULES, block=("torch",))
    assert r.returncode == 0, r.stderr
    loaded = modules(r)
    assert not {"torch", "matplotlib", "pandas"} & loaded  # pandas alone costs ~0.5 s of start-up


def test_inspect_text_and_json(run_file):
    r = run_dyn("inspect", run_file)
    assert r.returncode == 0, r.stderr
    assert "complete" in r.stdout and "ema-0.99" in r.stdout and "101 samples" in r.stdout
    s = json.loads(run_dyn("inspect", run_file, "--json").stdout)
    assert s["state"] == "complete" and not s["resumable"]
    assert [n["name"] for n in s["networks"]] == ["sgd", "ema-0.99"]
    val = s["splits"][0]
    assert (val["name"], val["size"], val["records"], val["last_epoch"], val["images"]) == ("val", 101, 6, 5, True)
    assert s["weights"]["records"] == 2 and s["weights"]["every"] == 5
    assert s["config"]["schedule"] == "constant"


def _other_hdf5(p):
    with h5py.File(p, "w") as f:
        f["x"] = np.arange(3)


def _newer(p, src):
    p.write_bytes(src.read_bytes())
    with h5py.File(p, "r+") as f:
        f.attrs["format_version"] = 7


def _truncated(p, src):
    p.write_bytes(src.read_bytes()[: src.stat().st_size // 3])


def _corrupted(p, src):
    raw = bytearray(src.read_bytes())
    sb = read_superblock(src)
    raw[sb.offset + 28:sb.offset + 36] = (10**12).to_bytes(8, "little")  # absurd end address
    end = sb.offset + sb.length - 4
    raw[end:end + 4] = struct.pack("<I", lookup3(bytes(raw[sb.offset:end])))
    p.write_bytes(raw)


def _bad_status(p, src):
    p.write_bytes(src.read_bytes())
    with h5py.File(p, "r+") as f:
        st = f["status"][...]
        st[-1] = 10**6  # says a million rows were committed
        f["status"][...] = st


BAD = {
    "missing": (lambda p, src: None, "no such file"),
    "directory": (lambda p, src: p.mkdir(), "is a directory"),
    "not hdf5": (lambda p, src: p.write_text("epoch,acc\n1,0.5\n"), "not an HDF5 file"),
    "other hdf5": (lambda p, src: _other_hdf5(p), "not a dyn run file"),
    "newer format": (_newer, "format version 7 is newer than this dyn reads (1)"),
    "truncated": (_truncated, "truncated"),
    "corrupted": (_corrupted, "truncated"),
    "inconsistent": (_bad_status, "damaged run file"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_run_files_give_one_line(case, tmp_path, run_file):
    make, fragment = BAD[case]
    p = tmp_path / "bad.h5"
    make(p, run_file)
    r = run_dyn("inspect", p)
    assert r.returncode == 1, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dyn: error: ") and str(p) in lines[0], r.stderr
    assert fragment in lines[0]


def test_usage_errors_exit_2(run_file):
    r = run_dyn("inspect")
    assert r.returncode == 2 and "Missing argument" in r.stderr
    r = run_dyn("nonsense")
    assert r.returncode == 2 and "No such command" in r.stderr
