"""A planted run end to end: stream both networks' bits once, then tables of
facts we planted and every figure drawn from the results."""

import numpy as np
import pytest

from dyn.analyze.measures.agreement import AgreementAccumulator
from dyn.analyze.measures.flips import FlipsAccumulator, barcode, top_flips
from dyn.analyze.measures.misclassification import MisclassificationAccumulator
from dyn.analyze.measures.stability import StabilityAccumulator

N, T = 5000, 181      # the paper's validation split and epochs 0..180


def planted():
    """SGD: samples 0-9 flip every epoch, 10-999 flip at random, 1000-3999 always
    right, 4000-4999 always wrong. EMA: the same but 0-999 settle on right at epoch 50."""
    rng = np.random.default_rng(0)
    sgd = np.zeros((T, N), bool)
    sgd[:, 1000:4000] = True
    sgd[:, 10:1000] = rng.random((T, 990)) < 0.7
    sgd[::2, :10] = True
    ema = sgd.copy()
    ema[50:, :1000] = True
    return np.packbits(sgd, axis=1), np.packbits(ema, axis=1), sgd, ema


def test_planted_run_end_to_end(tmp_path):
    pytest.importorskip("matplotlib")
    from dyn.analyze.plot.agreement import agreement_figure
    from dyn.analyze.plot.barcode import barcode_figure
    from dyn.analyze.plot.misclassification import misclassification_figure
    from dyn.analyze.plot.stability import stability_figure

    ps, pe, sgd, ema = planted()
    epochs = np.arange(T)
    nets = {"sgd": ps, "ema-0.9995": pe}
    accs = {name: (StabilityAccumulator(N, epochs), MisclassificationAccumulator(N, epochs),
                   FlipsAccumulator(N, epochs)) for name in nets}
    agree = AgreementAccumulator(N, epochs)
    for a in range(0, T, 64):                       # one pass, as from the reader
        for name, rows in nets.items():
            for acc in accs[name]:
                acc.add(rows[a:a + 64])
        agree.add(ps[a:a + 64], pe[a:a + 64])
    res = {name: [acc.result() for acc in triple] for name, triple in accs.items()}
    (s_sgd, m_sgd, f_sgd), (s_ema, m_ema, f_ema) = res["sgd"], res["ema-0.9995"]
    g = agree.result()

    assert f_sgd.flips[:10].tolist() == [180] * 10
    assert f_ema.flips[:10].tolist() == [50] * 10   # 50 alternations, then right for good
    assert f_sgd.flips[1000:].max() == 0
    top = top_flips(f_sgd.flips, f_ema.flips, k=10, rank_by="stability", transitions=f_sgd.transitions)
    assert top.tolist() == list(range(10))
    # planted fractions over epochs 90..180
    assert m_ema.always_right == pytest.approx(4000 / N) and m_ema.always_wrong == pytest.approx(1000 / N)
    assert m_sgd.always_wrong == pytest.approx(1000 / N)
    assert (s_ema.stability[50:] == 1).all() and (s_sgd.stability < 1).all()
    assert g.mismatch[1000:].max() == 0 and g.mismatch[:10].tolist() == [(T - 50) // 2] * 10

    codes = {name: barcode(rows, top, N) for name, rows in nets.items()}
    assert np.array_equal(codes["sgd"], sgd[:, top].T) and np.array_equal(codes["ema-0.9995"], ema[:, top].T)
    images = np.random.default_rng(1).integers(0, 256, (10, 32, 32, 3), dtype=np.uint8)
    outs = [
        stability_figure(tmp_path / "fig2.pdf", {"sgd": (s_sgd.stability_epochs, s_sgd.stability),
                                                 "ema-0.9995": (s_ema.stability_epochs, s_ema.stability)},
                         {"sgd": (s_sgd.epochs, s_sgd.accuracy), "ema-0.9995": (s_ema.epochs, s_ema.accuracy)}),
        misclassification_figure(tmp_path / "fig3.svg", {"sgd": m_sgd.histogram(), "ema-0.9995": m_ema.histogram()}),
        barcode_figure(tmp_path / "fig4.png", codes, epochs, top, images=images),
        agreement_figure(tmp_path / "agree.png", g.epochs, g.epoch_mismatch, histogram=g.histogram(),
                         names=("sgd", "ema-0.9995")),
    ]
    assert all(p.stat().st_size > 1000 for p in outs)
