"""Per-sample training dynamics (issue 17, recording): `train-presented` from the training forward
pass, `--record-train-every K`, resume after SIGKILL, and two ranks.

Oracles: the true-class probability and margin computed here in numpy (float64) from the logits
the loop saw, and the run's own running train accuracy/loss, which dyn counts on another path
(Recorder.observe) from the same forward passes.
"""

import signal
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dyn import open_run
from dyn.train.recorder import PRESENTED, Recorder
from helpers import DIGITS, run_dyn

F16 = dict(rtol=2 ** -10, atol=1e-6)  # float16 keeps 11 significant bits


def oracle(logits: np.ndarray, y: np.ndarray):
    """(correct, true-class softmax probability, margin) in float64, as the three tools define them."""
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(1, keepdims=True))
    prob = (e / e.sum(1, keepdims=True))[np.arange(len(y)), y]
    true = z[np.arange(len(y)), y]
    other = np.where(np.eye(z.shape[1], dtype=bool)[y], -np.inf, z).max(1)
    return z.argmax(1) == y, prob, true - other


def test_recorder_records_what_the_training_forward_pass_saw(tmp_path):
    torch.manual_seed(0)
    n, classes = 12, 4
    x, y = torch.randn(n, 5), torch.randint(0, classes, (n,))
    model = torch.nn.Linear(5, classes)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    rec = Recorder.create(tmp_path / "r.h5", model, [0.5], {"val": (x[:4], y[:4])}, final_splits={"train": (x, y)},
                          optimizer=opt, presented=y, record_every={"train": 2},
                          indices={PRESENTED: np.arange(100, 100 + n)})
    # epoch 1 presents example 3 twice (the later presentation is kept); epoch 2 never presents 7;
    # epoch 3 presents everything
    plan = {1: [[0, 1, 2, 3], [4, 5, 6, 7, 8], [9, 10, 11, 3]], 2: [[11, 0, 1, 2, 3, 4], [5, 6, 8, 9, 10]],
            3: [list(range(n))]}
    want = {}
    for epoch, batches in plan.items():
        seen = {}
        for b in batches:
            idx = torch.tensor(b)
            logits = model(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            c, p, m = oracle(logits.detach().numpy(), y[idx].numpy())
            for k, i in enumerate(b):
                seen[i] = (c[k], p[k], m[k])
            rec.step(loss, logits, y[idx], indices=idx)
        want[epoch] = seen
        rec.end_epoch(epoch)
    with torch.no_grad():
        clean = oracle(model(x).numpy(), y.numpy())  # no BatchNorm: eval mode = train mode
    rec.finish()
    with open_run(tmp_path / "r.h5") as run:
        assert list(run.epochs(PRESENTED)) == [1, 2, 3]
        assert run.has(PRESENTED, "sgd", "prob") and not run.has(PRESENTED, "ema-0.5", "correct")
        assert not run.has(PRESENTED, "sgd", "loss") and not run.has(PRESENTED, "sgd", "predicted")
        assert run.split_source(PRESENTED) == "training forward pass"
        np.testing.assert_array_equal(run.dataset_index(PRESENTED), np.arange(100, 100 + n))
        prob, margin, correct = (run.prob(PRESENTED, "sgd"), run.margin(PRESENTED, "sgd"),
                                 run.correct(PRESENTED, "sgd"))
        assert prob.dtype == np.float32 and prob.shape == (3, n)
        for row, (epoch, seen) in enumerate(want.items()):
            for i in range(n):
                if i not in seen:  # not presented: correct 0, prob and margin NaN
                    assert epoch == 2 and i == 7
                    assert not correct[row, i] and np.isnan(prob[row, i]) and np.isnan(margin[row, i])
                    continue
                c, p, m = seen[i]
                assert correct[row, i] == c
                np.testing.assert_allclose(prob[row, i], p, **F16)
                np.testing.assert_allclose(margin[row, i], m, **F16)
        # --record-train-every's view: every network, clean inputs, epochs 0, 2 and the last
        assert list(run.epochs("train")) == [0, 2, 3]
        for net in run.networks:
            assert run.has("train", net, "prob") and run.has("train", net, "margin")
        assert not run.has("val", "sgd", "prob")
        np.testing.assert_array_equal(run.correct("train", "sgd")[-1], clean[0])
        np.testing.assert_allclose(run.prob("train", "sgd")[-1], clean[1], **F16)
        np.testing.assert_allclose(run.margin("train", "sgd")[-1], clean[2], **F16)
        # at epoch 0 the EMA network is the initial network
        np.testing.assert_array_equal(run.prob("train", "ema-0.5")[0], run.prob("train", "sgd")[0])


ARGS = [*DIGITS, "--record-train", "--record-train-every", "2"]


TRAIN = ["train", *ARGS, "--epochs", "4", "--resume"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted `dyn train --record-train --record-train-every 2` run, fresh interpreter."""
    out = tmp_path_factory.mktemp("record_train") / "ref.h5"
    r = run_dyn(*TRAIN, "--out", out, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.slow
def test_dyn_train_record_train_agrees_with_its_running_metrics(reference):
    with open_run(reference) as run:
        n = run.split_size(PRESENTED)
        assert n == run.split_size("train") == 1077
        assert list(run.epochs(PRESENTED)) == [1, 2, 3, 4] and list(run.epochs("train")) == [0, 2, 4]
        assert run.config["record_train"] is True and run.config["record_train_every"] == 2
        assert "drawn anew every epoch" in run.augmentation(PRESENTED)
        np.testing.assert_array_equal(run.dataset_index(PRESENTED), run.dataset_index("train"))
        m = run.metrics().set_index("epoch")
        prob, correct = run.prob(PRESENTED, "sgd"), run.correct(PRESENTED, "sgd")
        assert not np.isnan(prob).any()  # every example is presented once an epoch
        for row, epoch in enumerate(run.epochs(PRESENTED)):
            # the running accuracy counts the same argmaxes on the device, summed another way
            assert correct[row].sum() == round(m.loc[epoch, "train_acc"] * n)
            # and the running loss is the mean cross-entropy, -log p, of the same forward passes
            np.testing.assert_allclose(-np.log(prob[row]).mean(), m.loc[epoch, "train_loss"], rtol=2e-3)
        margin = run.margin(PRESENTED, "sgd")
        assert ((margin > 0) == correct).mean() > 0.99  # equal but for float16 ties
        for net in run.networks:
            p, c, loss = run.prob("train", net), run.correct("train", net), run.loss("train", net)
            np.testing.assert_allclose(p, np.exp(-loss.astype(np.float64)), rtol=4e-3, atol=1e-4)
            assert (((run.margin("train", net) > 0) == c).mean()) > 0.99


def records(path) -> dict:
    """Every per-sample record of every split (prob and margin too), and the metrics."""
    out = {}
    with open_run(path) as run:
        assert run.state == "complete"
        for split in run.splits:
            out[split, "epoch"] = run.epochs(split)
            for net in run.networks:
                for key in ("correct", "predicted", "loss", "prob", "margin"):
                    if run.has(split, net, key):
                        out[split, net, key] = (run.correct_packed(split, net) if key == "correct"
                                                else getattr(run, key)(split, net))
        m = run.metrics()
        out["metrics"] = m[[c for c in m.columns if c != "seconds"]].to_numpy()
    return out


@pytest.mark.slow
def test_train_dynamics_after_sigkill_and_resume_equal_an_uninterrupted_run(forkserver, reference, tmp_path):
    path = tmp_path / "run.h5"
    # killed half-way through writing epoch 2's records, then during epoch 3 of the resumed run
    kills = [({"DYN_TEST_PAUSE": "2:epoch 2 (metrics"}, "epoch 2 (", "half written", 0.5),
             ({"DYN_TEST_PAUSE": "0"}, "open: ready", "", 0.3)]
    for env, first, second, delay in kills:
        child = forkserver.start(*TRAIN, "--out", path, env={"OMP_NUM_THREADS": "1", **env})
        lines, fire = [], None
        while child.poll() is None:
            for line in child.new_lines():
                lines.append(line)
                if fire is None and line.startswith("dyn-test:") and first in line and second in line:
                    fire = time.monotonic() + delay
            if fire is not None and time.monotonic() >= fire:
                child.kill(signal.SIGKILL)
                break
            time.sleep(0.002)
        child.wait(120)
        assert child.status.get("signal") == signal.SIGKILL, "\n".join(lines + child.new_lines())
        with open_run(path) as run:
            assert run.state == "interrupted" and run.rows("metrics") == run.rows(f"split/{PRESENTED}") + 1
    r = run_dyn(*TRAIN, "--out", path, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    want, got = records(reference), records(path)
    assert want.keys() == got.keys() and (PRESENTED, "sgd", "margin") in got and ("train", "ema-0.9", "prob") in got
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=str(key))


@pytest.mark.slow
def test_two_ranks_gather_every_presented_example(tmp_path):
    from test_distributed import torchrun

    from dyn.train.data import load_dataset, normalize
    from dyn.train.models import build_model

    out = tmp_path / "ddp.h5"
    r = torchrun(2, "--epochs", "2", "--record-train", "--record-train-every", "1", "--out", out)
    assert r.returncode == 0, r.stderr
    data = load_dataset("digits")
    x, y = data.split("train")
    with open_run(out) as run:
        n = run.split_size(PRESENTED)
        prob, correct = run.prob(PRESENTED, "sgd"), run.correct(PRESENTED, "sgd")
        assert prob.shape == (2, n) and not np.isnan(prob).any()  # each rank's half, gathered
        m = run.metrics().set_index("epoch")
        for row, epoch in enumerate((1, 2)):
            assert correct[row].sum() == round(m.loc[epoch, "train_acc"] * n)
            np.testing.assert_allclose(-np.log(prob[row]).mean(), m.loc[epoch, "train_loss"], rtol=2e-3)
        assert list(run.epochs("train")) == [0, 1, 2]
        # the gathered clean-train prob and margin equal a separate evaluation of the stored weights
        for net in run.networks:
            model = build_model("resnet20", 10, in_channels=1)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in run.state_dict(net, 2).items()})
            model.eval()
            with torch.no_grad():
                c, p, mg = oracle(model(normalize(x, data.mean, data.std)).numpy(), y.numpy())
            np.testing.assert_array_equal(run.correct("train", net)[-1], c)
            np.testing.assert_allclose(run.prob("train", net)[-1], p, rtol=2 ** -10, atol=1e-5)
            np.testing.assert_allclose(run.margin("train", net)[-1], mg, rtol=2 ** -10, atol=1e-4)
