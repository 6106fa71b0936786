"""`dyn import predictions`: the paper's preds/ folders, arrays and long tables, checked
against the analyses' definitions computed by hand on the arrays that were saved."""

import numpy as np
import pandas as pd
import pytest

import dyn
from dyn.analyze.measures.agreement import agreement
from dyn.analyze.measures.flips import flips_per_sample
from dyn.analyze.measures.misclassification import misclassification
from dyn.analyze.measures.stability import stability
from dyn.errors import DynError
from dyn.importers.predictions import import_predictions

from helpers import run_dyn

N, EPOCHS = 37, np.arange(1, 13)  # 37: the last packed byte is partly padding


def chains(seed, flip):
    """Correctness over epochs that flips with probability `flip` per sample and epoch."""
    rng = np.random.default_rng(seed)
    c = [rng.random(N) < 0.5]
    for _ in EPOCHS[1:]:
        c.append(np.where(rng.random(N) < flip, ~c[-1], c[-1]))
    return np.array(c)


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    """A preds/ folder as the paper's code writes it, and the arrays in it."""
    folder = tmp_path_factory.mktemp("paper") / "preds"
    folder.mkdir()
    sgd, ema = chains(1, 0.3), chains(2, 0.05)
    for i, e in enumerate(EPOCHS):  # their file e - 1 is written after epoch e: dyn's epoch e
        np.save(folder / f"{e - 1}.npy", sgd[i])
        np.save(folder / f"{e - 1}_average.npy", ema[i])
    return folder, sgd, ema


def test_papers_preds_folder_gives_the_stability_of_the_definition(paper, tmp_path):
    folder, sgd, ema = paper
    out = import_predictions([folder], tmp_path / "run.h5", decay=0.999)
    with dyn.open_run(out) as r:
        assert r.networks == ["sgd", "ema-0.999"] and r.splits == ["val"]
        assert list(r.epochs("val")) == list(EPOCHS)
        assert r.split_size("val") == N and r.num_classes("val") == 0 and (r.labels("val") == -1).all()
        rows = {net: r.correct_packed("val", net) for net in r.networks}
        acc = r.metrics()
    for net, c in (("sgd", sgd), ("ema-0.999", ema)):
        # the paper's definition: stability at t = mean over samples of (correct[t] == correct[t-1])
        by_hand = np.array([np.mean(c[t] == c[t - 1]) for t in range(1, len(EPOCHS))])
        got = stability(rows[net], N, EPOCHS)
        assert list(got.stability_epochs) == list(EPOCHS[1:])
        np.testing.assert_array_equal(got.stability, by_hand)
        np.testing.assert_array_equal(acc[f"{net}/val/acc"], c.mean(axis=1))
        # flips per sample, and the misclassification ratio over the second half (for histograms)
        np.testing.assert_array_equal(flips_per_sample(rows[net], N, EPOCHS).flips, (c[1:] != c[:-1]).sum(axis=0))
        half = misclassification(rows[net], N, EPOCHS)
        lo = np.searchsorted(EPOCHS, half.epochs[0])
        np.testing.assert_array_equal(half.correct, c[lo:].sum(axis=0))
        np.testing.assert_allclose(half.ratio, 1 - c[lo:].mean(axis=0), rtol=0, atol=1e-15)
    a = agreement(rows["sgd"], rows["ema-0.999"], N, EPOCHS)
    np.testing.assert_array_equal(a.epoch_mismatch, (sgd != ema).mean(axis=1))
    np.testing.assert_array_equal(a.sample_mismatch, (sgd != ema).mean(axis=0))


def test_net_arrays_bool_and_predicted_labels(tmp_path):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, N)
    pred = np.where(chains(3, 0.2), labels, (labels + 1) % 5)  # right where the chain says
    correct = chains(4, 0.1)
    np.save(tmp_path / "pred.npy", pred)
    np.save(tmp_path / "ema.npy", correct)
    np.save(tmp_path / "labels.npy", labels)
    r = run_dyn("import", "predictions", "--net", f"sgd={tmp_path / 'pred.npy'}", "--net",
                f"ema-0.99={tmp_path / 'ema.npy'}", "--labels", tmp_path / "labels.npy", "--first-epoch", "0",
                "--out", tmp_path / "run.h5", block=("torch",))
    assert r.returncode == 0, r.stderr
    with dyn.open_run(tmp_path / "run.h5") as run:
        assert list(run.epochs("val")) == list(range(len(EPOCHS)))
        np.testing.assert_array_equal(run.labels("val"), labels)
        assert run.num_classes("val") == 5
        np.testing.assert_array_equal(run.correct("val", "sgd"), pred == labels)
        np.testing.assert_array_equal(run.predicted("val", "sgd"), pred)
        np.testing.assert_array_equal(run.correct("val", "ema-0.99"), correct)
        assert (run.predicted("val", "ema-0.99") == -1).all()  # not given: unknown


def test_npz_with_epochs_and_labels(tmp_path):
    labels = np.arange(N) % 3
    sgd, ema = chains(5, 0.3), chains(6, 0.1)
    np.savez(tmp_path / "dump.npz", sgd=sgd, **{"ema-0.9": ema}, epochs=EPOCHS * 2, labels=labels)
    out = import_predictions([tmp_path / "dump.npz"], tmp_path / "run.h5", split="test")
    with dyn.open_run(out) as r:
        assert r.splits == ["test"] and list(r.epochs("test")) == list(EPOCHS * 2)
        assert r.network_info("ema-0.9") == {"name": "ema-0.9", "kind": "ema", "decay": 0.9}
        np.testing.assert_array_equal(r.correct("test", "ema-0.9"), ema)
        np.testing.assert_array_equal(r.labels("test"), labels)


def long_form(nets: dict, sample_ids, labels=None, predicted=None):
    rows = []
    for name, c in nets.items():
        for i, e in enumerate(EPOCHS):
            for j, s in enumerate(sample_ids):
                row = {"epoch": e, "sample": s, "network": name}
                if predicted is None:
                    row["correct"] = bool(c[i, j])
                else:
                    row["predicted"], row["label"] = int(predicted[name][i, j]), int(labels[j])
                rows.append(row)
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # any row order


def test_csv_and_parquet_long_form(tmp_path):
    ids = np.arange(N) * 7 + 100  # the original dataset's indices
    sgd, ema = chains(7, 0.3), chains(8, 0.1)
    long_form({"sgd": sgd, "ema-0.999": ema}, ids).to_csv(tmp_path / "c.csv", index=False)
    out = import_predictions([tmp_path / "c.csv"], tmp_path / "csv.h5")
    with dyn.open_run(out) as r:
        assert r.networks == ["sgd", "ema-0.999"]
        np.testing.assert_array_equal(r.dataset_index("val"), ids)
        np.testing.assert_array_equal(r.correct("val", "sgd"), sgd)
        np.testing.assert_array_equal(r.correct("val", "ema-0.999"), ema)

    labels = np.arange(N) % 4
    pred = {"sgd": np.where(sgd, labels, (labels + 1) % 4), "ema-0.999": np.where(ema, labels, (labels + 2) % 4)}
    long_form(pred, ids, labels, pred).to_parquet(tmp_path / "p.parquet")
    out = import_predictions([tmp_path / "p.parquet"], tmp_path / "pq.h5")
    with dyn.open_run(out) as r:
        np.testing.assert_array_equal(r.correct("val", "ema-0.999"), ema)
        np.testing.assert_array_equal(r.predicted("val", "sgd"), pred["sgd"])
        np.testing.assert_array_equal(r.labels("val"), labels)


# --------------------------------------------------------------------------- bad input
def refused(tmp_path, *args, match):
    """In this process (test_import_security.py runs one in a fresh interpreter)."""
    import contextlib
    import io

    from dyn.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as e:
        main(["import", "predictions", *map(str, args), "--out", str(tmp_path / "run.h5")])
    err = err.getvalue()
    assert e.value.code != 0 and err.count("\n") == 1 and err.startswith("dyn: error: ")
    assert match in err, err
    assert not (tmp_path / "run.h5").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left
    return e.value.code


def test_predictions_of_different_lengths(tmp_path):
    np.save(tmp_path / "a.npy", chains(1, 0.1))
    np.save(tmp_path / "b.npy", chains(2, 0.1)[:, :30])
    refused(tmp_path, "--net", f"sgd={tmp_path / 'a.npy'}", "--net", f"ema={tmp_path / 'b.npy'}",
            match="b.npy: 30 samples, but")
    np.save(tmp_path / "c.npy", chains(2, 0.1)[:-1])
    refused(tmp_path, "--net", f"sgd={tmp_path / 'a.npy'}", "--net", f"ema={tmp_path / 'c.npy'}",
            match="c.npy: epochs 1..11 (11), but")


def test_paper_folder_with_a_missing_or_odd_file(tmp_path):
    folder = tmp_path / "preds"
    folder.mkdir()
    for e in (1, 2, 3):
        np.save(folder / f"{e}.npy", np.ones(N, bool))
    for e in (1, 2):
        np.save(folder / f"{e}_average.npy", np.ones(N, bool))
    refused(tmp_path, folder, match="3.npy: no EMA (_average.npy) file for its epoch 3")
    np.save(folder / "3_average.npy", np.ones(N - 1, bool))
    refused(tmp_path, folder, match="3_average.npy: 36 samples, but")


def test_integer_predictions_without_labels_and_other_mistakes(tmp_path):
    np.save(tmp_path / "p.npy", np.zeros((3, N), np.int64))
    code = refused(tmp_path, "--net", f"sgd={tmp_path / 'p.npy'}", match="pass the true labels with --labels")
    assert code == 2
    np.save(tmp_path / "f.npy", np.zeros((3, N), np.float32))
    refused(tmp_path, "--net", f"sgd={tmp_path / 'f.npy'}", match="holds float32 values")
    empty = tmp_path / "empty"
    empty.mkdir()
    refused(tmp_path, empty, match="folder holds no")
    pd.DataFrame({"epoch": [1, 1], "sample": [0, 1], "network": ["sgd", "sgd"]}).to_csv(tmp_path / "x.csv")
    refused(tmp_path, tmp_path / "x.csv", match="needs columns epoch, sample, network and correct")
    df = long_form({"sgd": chains(1, 0.1)}, np.arange(N)).iloc[1:]  # one row missing
    df.to_csv(tmp_path / "y.csv", index=False)
    refused(tmp_path, tmp_path / "y.csv", match="has no row for epoch")
    (tmp_path / "z.npy").write_text("not numpy")
    refused(tmp_path, "--net", f"sgd={tmp_path / 'z.npy'}", match="z.npy: not a numpy array")


def test_existing_output_is_kept(tmp_path, paper):
    folder, _, _ = paper
    out = tmp_path / "run.h5"
    out.write_text("precious")
    with pytest.raises(DynError, match="already exists; pass --overwrite"):
        import_predictions([folder], out)
    assert out.read_text() == "precious"
    import_predictions([folder], out, overwrite=True)
    with dyn.open_run(out) as r:
        assert r.networks == ["sgd", "ema"]
