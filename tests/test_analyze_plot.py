"""Every figure writes a real file of the format its name asks for, atomically."""

import os

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from dyn.analyze.measures.accuracy import seed_band  # noqa: E402
from dyn.analyze.plot import style  # noqa: E402
from dyn.analyze.plot.accuracy import accuracy_figure  # noqa: E402
from dyn.analyze.plot.agreement import agreement_figure  # noqa: E402
from dyn.analyze.plot.barcode import barcode_figure  # noqa: E402
from dyn.analyze.plot.misclassification import misclassification_figure  # noqa: E402
from dyn.analyze.plot.save import save, target  # noqa: E402
from dyn.analyze.plot.stability import stability_figure  # noqa: E402
from dyn.analyze.plot.weight_diff import weight_diff_figure  # noqa: E402

SIGNATURES = {".png": b"\x89PNG\r\n\x1a\n", ".pdf": b"%PDF"}
E = np.arange(0, 31)
RNG = np.random.default_rng(0)


def curve(lo=0.8, hi=1.0):
    return E, np.linspace(lo, hi, E.size) + 0.01 * RNG.standard_normal(E.size)


def figures():
    bars = {"ema-0.9995": RNG.random((4, E.size)) < 0.9, "sgd": RNG.random((4, E.size)) < 0.5}
    band = seed_band([curve(), curve(), curve()])
    return {
        "stability": lambda p: stability_figure(p, {"sgd": curve(), "ema-0.9995": curve(0.95)},
                                                {"sgd": curve(0.5, 0.8), "ema-0.9995": curve(0.6, 0.9)}),
        "misclassification": lambda p: misclassification_figure(
            p, {"sgd": (np.linspace(0, 1, 21), RNG.integers(0, 100, 20)),
                "ema-0.9995": (np.linspace(0, 1, 21), RNG.integers(0, 100, 20))}),
        "barcode": lambda p: barcode_figure(p, bars, E, [5, 17, 3, 99]),
        "barcode_rgb": lambda p: barcode_figure(p, bars, E, [5, 17, 3, 99],
                                                images=RNG.integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)),
        "barcode_gray": lambda p: barcode_figure(p, bars, E, [5, 17, 3, 99],
                                                 images=RNG.integers(0, 256, (4, 8, 8, 1), dtype=np.uint8)),
        "weight_diff": lambda p: weight_diff_figure(
            p, {"constant": curve(0.1, 0.1), "cosine": (E, np.r_[np.nan, np.linspace(0.1, 0, 30)])}),
        "accuracy": lambda p: accuracy_figure(
            p, {"constant": {"sgd": band, "ema-0.99": band, "ema-0.9995": curve()},
                "cosine": {"sgd": band}},
            lr={"constant": (E, np.full(E.size, 0.1)), "cosine": (E, 0.05 * (1 + np.cos(np.pi * E / 30)))}),
        "agreement": lambda p: agreement_figure(p, E, curve(0, 0.1)[1], curve(0.05, 0.2)[1],
                                                (np.linspace(0, 1, 11), RNG.integers(0, 50, 10)),
                                                names=("sgd", "ema-0.9995")),
    }


@pytest.mark.parametrize("ext", [".png", ".pdf", ".svg"])
@pytest.mark.parametrize("name", list(figures()))
def test_figure_writes_a_file_of_its_format(tmp_path, name, ext):
    out = figures()[name](tmp_path / f"{name}{ext}")
    assert out == tmp_path / f"{name}{ext}"
    data = out.read_bytes()
    if ext == ".svg":
        assert b"<svg" in data[:2000]
    else:
        assert data.startswith(SIGNATURES[ext])
    assert len(data) > 1000
    assert os.listdir(tmp_path) == [out.name]   # no temporary left beside it


def test_no_suffix_means_png_and_unknown_suffix_is_refused(tmp_path):
    out = figures()["weight_diff"](tmp_path / "fig5")
    assert out.name == "fig5.png" and out.read_bytes().startswith(SIGNATURES[".png"])
    with pytest.raises(ValueError, match="use one of"):
        figures()["weight_diff"](tmp_path / "fig5.jpg")
    assert sorted(os.listdir(tmp_path)) == ["fig5.png"]


def test_bad_input_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="expected"):
        barcode_figure(tmp_path / "b.png", {"sgd": np.zeros((3, 5), bool)}, np.arange(4), [1, 2, 3])
    with pytest.raises(ValueError, match="images"):
        barcode_figure(tmp_path / "b.png", {"sgd": np.zeros((1, 4), bool)}, np.arange(4), [1],
                       images=np.zeros((1, 8, 8, 2), np.uint8))
    with pytest.raises(ValueError):
        stability_figure(tmp_path / "s.png", {"sgd": (np.arange(3), np.zeros(4))})
    assert os.listdir(tmp_path) == []


def test_failure_while_writing_leaves_no_partial_file_and_keeps_the_old_one(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    old = tmp_path / "fig.pdf"
    old.write_bytes(b"%PDF old figure")

    def broken_savefig(self, f, **kw):
        f.write(b"%PDF half a fig")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(RuntimeError, match="disk full"):
        figures()["stability"](old)
    with pytest.raises(RuntimeError, match="disk full"):
        figures()["stability"](tmp_path / "new.png")
    assert os.listdir(tmp_path) == ["fig.pdf"] and old.read_bytes() == b"%PDF old figure"


def test_save_is_deterministic_and_respects_umask(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    a = save(fig, tmp_path / "a.svg").read_bytes()
    b = save(fig, tmp_path / "b.svg").read_bytes()
    assert a == b
    assert save(fig, tmp_path / "c.pdf").read_bytes() == save(fig, tmp_path / "d.pdf").read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "a.svg").stat().st_mode & 0o777 == 0o666 & ~umask
    assert target("x")[1] == "png" and target("x.SVG")[1] == "svg"


def test_style_names_orders_and_colours_networks():
    assert style.label("sgd") == "SGD" and style.label("ema-0.9995") == "EMA 0.9995"
    assert style.order(["ema-0.9997", "sgd", "ema-0.9"]) == ["sgd", "ema-0.9", "ema-0.9997"]
    assert style.color("sgd") == style.SGD_COLOR
    # a decay keeps its colour whatever else is drawn with it
    c = style.color
    assert c("ema-0.9995", ["sgd", "ema-0.9995"]) == c("ema-0.9995", ["ema-0.9", "ema-0.9995"])
    others = ["ema-0.95", "ema-0.97"]
    assert c("ema-0.95", others) != c("ema-0.97", others) and c("ema-0.95", others) in style.EXTRA_COLORS


def test_drawing_does_not_change_global_matplotlib_state(tmp_path):
    import matplotlib

    before = dict(matplotlib.rcParams)
    figures()["stability"](tmp_path / "s.png")
    assert dict(matplotlib.rcParams) == before


def test_figures_never_import_pyplot():
    import subprocess
    import sys

    code = ("import sys, tempfile, numpy as np\n"
            "from dyn.analyze.plot.weight_diff import weight_diff_figure\n"
            "weight_diff_figure(tempfile.mkdtemp() + '/f.png', {'c': (np.arange(3), np.ones(3))})\n"
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
