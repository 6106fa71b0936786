"""Issue 19, points 6 and 7: --out and --csv treat a folder alike (the analysis's file inside
it), and `flips --top 0 --out` is refused instead of exiting 0 with nothing written."""

import pytest

from dyn.synthetic import Synthetic
from helpers import run_dyn


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return Synthetic(epochs=6, samples=60, decays=(0.9,), weights_every=2).write(
        tmp_path_factory.mktemp("r") / "r.h5")


@pytest.mark.parametrize("slash", [False, True])
def test_out_and_csv_into_a_folder(run, tmp_path, slash):
    figs = tmp_path / "figs"
    if not slash:
        figs.mkdir()
    arg = str(figs) + ("/" if slash else "")
    r = run_dyn("analyze", "stability", run, "--out", arg, "--csv", arg)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in figs.iterdir()) == ["stability.csv", "stability.png"]
    assert not (tmp_path / "figs.png").exists()
    assert f"wrote {figs / 'stability.png'}" in r.stderr


def test_flips_top_zero_with_a_figure_is_refused(run, tmp_path):
    r = run_dyn("analyze", "flips", run, "--top", "0", "--out", tmp_path / "f.png")
    assert r.returncode == 2 and r.stderr.startswith("dyn: error: --top 0 with --out")
    assert "Traceback" not in r.stderr and list(tmp_path.iterdir()) == []
    ok = run_dyn("analyze", "flips", run, "--top", "0")  # the counts alone are still fine
    assert ok.returncode == 0 and "mean flips" in ok.stdout
