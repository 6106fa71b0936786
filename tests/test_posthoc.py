"""Post-hoc EMA (issue 16): the profile solver against step-by-step sums, and `dyn posthoc` on
digits against EMA networks that a second run with the same seed trained directly."""

import hashlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, run_dyn

from dyn.analyze import posthoc as ph


# ------------------------------------------------------------------ closed forms vs direct sums
def ema_by_steps(decay, t, T, warmup=False):
    """Profile of an EMA after t updates over iterates 0..T, by running the update itself."""
    p = np.zeros(T + 1)
    p[0] = 1.0
    for n in range(t):
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        p *= d
        p[n + 1] += 1 - d
    return p


def power_by_steps(sigma_rel, t, T):
    g = ph.sigma_rel_to_gamma(sigma_rel)
    p = np.zeros(T + 1)
    p[0] = 1.0
    for s in range(1, t + 1):
        beta = (1 - 1 / s) ** (g + 1)
        p *= beta
        p[s] += 1 - beta
    return p


def test_gram_matches_direct_summation():
    T = 80
    cases = [(a, t, b, u) for a in (0.0, 0.5, 0.9, 0.999) for b in (0.0, 0.3, 0.95) for t in (0, 1, 7, 80)
             for u in (0, 1, 30, 80)]
    got = ph.gram(*np.array(cases).T)
    want = [ema_by_steps(a, int(t), T) @ ema_by_steps(b, int(u), T) for a, t, b, u in cases]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("target,direct", [
    (ph.Target("ema", 0.97), lambda t: ema_by_steps(0.97, t, t)),
    (ph.Target("ema-warmup", 0.97), lambda t: ema_by_steps(0.97, t, t, warmup=True)),
    (ph.Target("power", 0.1), lambda t: power_by_steps(0.1, t, t)),
])
def test_target_profiles_and_cross_products_match_direct_summation(target, direct):
    t = 150
    q = direct(t)
    np.testing.assert_allclose(ph.target_profile(target, t), q, rtol=1e-10, atol=1e-15)
    assert abs(q.sum() - 1) < 1e-12
    decays = np.array([0.0, 0.0, 0.9, 0.9, 0.99])
    times = np.array([0, 150, 40, 150, 100])
    b, qq = ph._cross(target, t, decays, times)
    np.testing.assert_allclose(b, [ema_by_steps(a, s, t) @ q for a, s in zip(decays, times)], rtol=1e-10)
    assert qq == pytest.approx(q @ q, rel=1e-12)


def test_sigma_rel_to_gamma_gives_a_profile_of_that_width():
    # the continuous profile (g + 1) x^g on [0, 1] (time relative to the training's) has std sigma_rel
    for sigma in (0.05, 0.1, 0.2):
        g = ph.sigma_rel_to_gamma(sigma)
        mean = (g + 1) / (g + 2)
        var = (g + 1) / (g + 3) - mean ** 2
        assert np.sqrt(var) == pytest.approx(sigma, rel=1e-9)


def test_solver_matches_dense_constrained_least_squares():
    # snapshots every 6 steps of SGD, EMA 0.8 and EMA 0.97 over 60 steps; target EMA 0.9 at 60
    T = 60
    times = np.repeat(np.arange(0, T + 1, 6), 3)
    decays = np.tile([0.0, 0.8, 0.97], len(times) // 3)
    table, X = ph.coefficients(decays, times, times, [ph.Target("ema", 0.9), ph.Target("power", 0.15)], [T])
    P = np.stack([ema_by_steps(a, t, T) for a, t in zip(decays, times)])
    for k, q in enumerate([ema_by_steps(0.9, T, T), power_by_steps(0.15, T, T)]):
        x = X[k]
        assert x.sum() == pytest.approx(1, abs=1e-12)
        achieved = np.linalg.norm(x @ P - q) / np.linalg.norm(q)
        assert table["residual"][k] == pytest.approx(achieved, rel=1e-4, abs=1e-7)
        assert table["l1"][k] == pytest.approx(np.abs(x).sum())
        # the exact optimum (KKT system, minimum norm) on the dense profiles
        J = len(x)
        K = np.block([[P @ P.T, np.ones((J, 1))], [np.ones((1, J)), np.zeros((1, 1))]])
        best = np.linalg.lstsq(K, np.concatenate([P @ q, [1.0]]), rcond=None)[0][:J]
        optimum = np.linalg.norm(best @ P - q) / np.linalg.norm(q)
        assert achieved <= optimum * 1.01 + 1e-9
        assert achieved < 0.05


def test_a_memory_short_next_to_the_snapshot_spacing_is_refused():
    times = np.repeat(np.arange(0, 101, 25), 2)
    decays = np.tile([0.0, 0.99], len(times) // 2)
    table, _ = ph.coefficients(decays, times, times, [ph.Target("ema", 0.5), ph.Target("ema", 0.995)], [100])
    short, long_ = table.iloc[0], table.iloc[1]
    assert short["refused"] and short["residual"] > 0.3
    assert not long_["refused"]


# ------------------------------------------------------------------ digits ground truth
TRAIN = ["train", "--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--batch-size", "128",
         "--checkpoint-every", "1", "--no-progress", "--epochs", "4"]


@pytest.fixture(scope="module")
def digits_pair(tmp_path_factory):
    """(source, truth): the same training with decays {0.9, 0.99} and {0.95, 0.98, 0.995}."""
    d = tmp_path_factory.mktemp("posthoc")
    out = []
    for decays in ("0.9,0.99", "0.95,0.98,0.995"):
        path = d / f"run-{decays}.h5"
        r = run_dyn(*TRAIN, "--decay", decays, "--out", path)
        assert r.returncode == 0, r.stderr
        out.append(path)
    return out


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.slow
def test_sgd_is_bit_identical_whatever_the_decays(digits_pair):
    from dyn import open_run

    with open_run(digits_pair[0]) as a, open_run(digits_pair[1]) as b:
        for e in a.weight_epochs():
            np.testing.assert_array_equal(a.params("sgd", e), b.params("sgd", e))
            np.testing.assert_array_equal(a.buffers("sgd", e), b.buffers("sgd", e))


@pytest.mark.slow
def test_posthoc_reproduces_trained_emas(digits_pair, tmp_path):
    from dyn import open_run

    src, truth = digits_pair
    before = sha(src)
    out = tmp_path / "posthoc.h5"
    r = run_dyn("posthoc", src, "--decay", "0.95,0.98,0.995", "--evaluate", "--out", out)
    assert r.returncode == 0, r.stderr
    assert sha(src) == before  # --out: the source is not touched
    with open_run(out) as p, open_run(truth) as t, open_run(src) as s:
        assert p.networks == s.networks + ["posthoc-0.95", "posthoc-0.98", "posthoc-0.995"]
        assert p.network_info("posthoc-0.95") == {"name": "posthoc-0.95", "kind": "posthoc", "decay": 0.95}
        for net in s.networks:  # what was recorded is kept bit for bit
            for e in s.weight_epochs():
                np.testing.assert_array_equal(p.params(net, e), s.params(net, e))
            np.testing.assert_array_equal(p.correct_packed("val", net), s.correct_packed("val", net))
        for d in ("0.95", "0.98", "0.995"):
            g = p.f[f"networks/posthoc-{d}"]
            np.testing.assert_allclose(g["coefficients"][...].sum(axis=1), 1, atol=1e-9)
            assert (g["residual"][...] < ph.MAX_RESIDUAL).all()
            assert len(g["sources"]) == g["coefficients"].shape[1] == 3 * len(s.weight_epochs())
            for e in t.weight_epochs()[1:]:
                true, sgd = t.params(f"ema-{d}", e).astype(float), t.params("sgd", e).astype(float)
                err = np.linalg.norm(p.params(f"posthoc-{d}", e) - true) / np.linalg.norm(true - sgd)
                assert err < 1e-3, (d, e, err)  # measured: 1.1e-4 for 0.95 at epoch 3, less for the others
            for split in ("val", "test"):
                a, b = p.correct(split, f"posthoc-{d}"), t.correct(split, f"ema-{d}")
                assert (a == b).mean(axis=1).min() >= 0.995
                assert np.abs(a.mean(axis=1) - b.mean(axis=1)).max() <= 0.005
        final = {n: p.accuracy("test", n)[-1] for n in p.networks}
    # dyn analyze decays sees recorded and post-hoc networks alike
    import json

    r = run_dyn("analyze", "decays", out, "--split", "test", "--json")
    assert r.returncode == 0, r.stderr
    nets = {n["network"]: n for n in json.loads(r.stdout)["runs"][0]["networks"]}
    assert set(nets) == {"ema-0.9", "ema-0.99", "posthoc-0.95", "posthoc-0.98", "posthoc-0.995"}
    for n, rec in nets.items():
        assert rec["accuracy"] == pytest.approx(final[n])
        assert rec["kind"] == ("posthoc" if n.startswith("posthoc") else "ema")


@pytest.mark.slow
def test_refused_target_is_one_line_and_writes_nothing(digits_pair, tmp_path):
    src = digits_pair[0]
    before = sha(src)
    r = run_dyn("posthoc", src, "--decay", "0.3")
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dyn: error: "), r.stderr
    assert "posthoc-0.3 refused: profile residual" in lines[0] and "L1 norm" in lines[0]
    assert sha(src) == before
    assert not [p for p in src.parent.iterdir() if "tmp-" in p.name]  # .NAME.dyn-tmp-* (and older .NAME.tmp-*)


@pytest.mark.slow
@pytest.mark.parametrize("point", ["derive: posthoc-0.95 row 2 written", "derive: complete"])
def test_sigkill_mid_write_leaves_the_run_intact(digits_pair, tmp_path, point):
    from dyn import open_run

    run = tmp_path / "run.h5"
    run.write_bytes(digits_pair[0].read_bytes())
    before = sha(run)
    code = "import sys\nfrom dyn.cli import main\nmain(sys.argv[1:])\n"
    proc = subprocess.Popen([sys.executable, "-c", code, "posthoc", str(run), "--decay", "0.95"], cwd=ROOT,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "DYN_TEST_PAUSE": f"60:{point}"})
    try:
        for line in proc.stderr:
            if point in line:
                os.kill(proc.pid, signal.SIGKILL)
                break
    finally:
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert sha(run) == before
    with open_run(run) as r:
        assert "posthoc-0.95" not in r.networks and r.state == "complete"
    # the next try cleans up the stale copy and succeeds
    r = run_dyn("posthoc", run, "--decay", "0.95")
    assert r.returncode == 0, r.stderr
    assert not [p for p in tmp_path.iterdir() if "tmp-" in p.name]  # .NAME.dyn-tmp-* (and older .NAME.tmp-*)
    with open_run(run) as r:
        assert r.networks[-1] == "posthoc-0.95"


def test_decay_table_by_hand():
    from dyn.analyze.measures.decays import decay_table

    # 4 samples, 3 epochs: network a flips sample 0 twice, network b never flips
    a = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 1, 1, 0]], bool)
    b = np.array([[1, 0, 0, 0]] * 3, bool)
    t = decay_table(["posthoc-0.95", "ema-0.9"], [0.95, 0.9], ["posthoc", "ema"], [a, b], [0.01, np.nan])
    assert list(t["network"]) == ["ema-0.9", "posthoc-0.95"]  # by decay
    assert list(t["accuracy"]) == [0.25, 0.75]
    assert t["stability"][1] == pytest.approx((3 / 4 + 2 / 4) / 2)
    assert t["stability"][0] == 1.0
    assert t["residual"][1] == 0.01 and np.isnan(t["residual"][0])
    assert decay_table(["x"], [0.9], ["ema"], [a], at=0)["accuracy"][0] == 0.5


@pytest.mark.slow
def test_posthoc_and_weight_diff_without_torch(digits_pair, tmp_path):
    import json

    from dyn import open_run

    out = tmp_path / "p.h5"
    r = run_dyn("posthoc", digits_pair[0], "--decay", "0.97", "--epochs", "2-4", "--out", out, block=("torch",))
    assert r.returncode == 0, r.stderr
    r = run_dyn("analyze", "weight-diff", out, "--net", "posthoc-0.97", "--json", block=("torch",))
    assert r.returncode == 0, r.stderr
    curve = json.loads(r.stdout)["runs"][0]["networks"]["posthoc-0.97"]
    got = dict(zip(curve["epochs"], curve["relative"]))
    with open_run(out) as p:
        assert np.isnan(p.params("posthoc-0.97", 1)).all()  # outside --epochs: not synthesized
        assert np.isnan(p.f["networks/posthoc-0.97/residual"][1])
        for e in (2, 3, 4):
            sgd = p.params("sgd", e).astype(float)
            want = np.linalg.norm(p.params("posthoc-0.97", e) - sgd) / np.linalg.norm(sgd)
            assert got[e] == pytest.approx(want, rel=1e-5)


def test_evaluate_skips_the_training_pass_split(tmp_path):
    """A run recorded with --record-train holds train-presented (SGD's own training passes):
    --evaluate evaluates the other splits and leaves that one to SGD."""
    from helpers import run_dyn

    run = tmp_path / "r.h5"
    r = run_dyn("train", "--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9,0.99",
                "--batch-size", "512", "--epochs", 3, "--record-train", "--no-progress", "--out", run)
    assert r.returncode == 0, r.stderr
    r = run_dyn("posthoc", run, "--decay", "0.95", "--evaluate")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    from dyn import open_run

    with open_run(run) as f:
        assert f.has("val", "posthoc-0.95", "correct") and not f.has("train-presented", "posthoc-0.95", "correct")
        assert f.epochs("val").tolist() == [0, 1, 2, 3]


@pytest.mark.slow
def test_a_full_disk_at_every_phase_leaves_the_run_as_it_was(digits_pair, tmp_path):
    """RLIMIT_FSIZE from nothing (the copy fails) to past the copy (HDF5's own writes fail:
    a segmentation fault before they went through safeio): one line, exit 1, the run unchanged,
    no temporary."""
    import resource
    import shutil
    import subprocess
    import sys

    src = tmp_path / "r.h5"
    shutil.copyfile(digits_pair[0], src)
    before, size = sha(src), src.stat().st_size
    code = "import sys; from dyn.cli import main; main(sys.argv[1:])"
    for limit in (0, 4096, size // 2, size + 4096, size + 64 * 1024, size + 256 * 1024):
        def cap(limit=limit):
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        r = subprocess.run([sys.executable, "-c", code, "posthoc", str(src), "--decay", "0.95"],
                           capture_output=True, text=True, preexec_fn=cap, timeout=300)
        assert r.returncode == 1, f"limit {limit}: exit {r.returncode}\n{r.stderr[-2000:]}"
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("dyn: error: ") and "Traceback" not in r.stderr, r.stderr
        assert sha(src) == before
        assert sorted(p.name for p in tmp_path.iterdir()) == ["r.h5"]
