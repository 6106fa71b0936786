"""train-presented from the Lightning and Hugging Face callbacks (issue 17): every presented
example's correctness, true-class probability and margin equal values computed here in numpy
(float64) from the logits the training forward pass produced, captured inside the model itself;
examples not presented are correct 0 / NaN; under Lightning DDP (2 CPU processes, gloo) every
rank's examples reach rank 0's file. Resume is checked by test_lightning.py and test_hf.py on the
examples, which record train-presented."""

import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dyn import open_run
from helpers import ROOT
from test_record_train import F16, oracle

PRESENTED = "train-presented"
N, CLASSES = 40, 3


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, 5, generator=g)
    return x, torch.randint(0, CLASSES, (N,), generator=g)


def expected(seen, epochs):
    """{epoch: {index: (correct, prob, margin)}} from [(epoch, index, logits, labels)] in order
    (a later presentation in an epoch replaces an earlier one)."""
    want = {e: {} for e in epochs}
    for epoch, idx, logits, y in seen:
        c, p, m = oracle(np.asarray(logits), np.asarray(y))
        for k, i in enumerate(np.asarray(idx).tolist()):
            want[epoch][i] = (c[k], p[k], m[k])
    return want


def check(path, want):
    with open_run(path) as run:
        assert list(run.epochs(PRESENTED)) == sorted(want)
        assert run.split_source(PRESENTED) == "training forward pass"
        assert not run.has(PRESENTED, run.networks[1], "correct")  # network sgd only
        correct, prob, margin = (run.correct(PRESENTED, "sgd"), run.prob(PRESENTED, "sgd"),
                                 run.margin(PRESENTED, "sgd"))
    for row, epoch in enumerate(sorted(want)):
        for i in range(N):
            if i not in want[epoch]:
                assert not correct[row, i] and np.isnan(prob[row, i]) and np.isnan(margin[row, i]), (epoch, i)
                continue
            c, p, m = want[epoch][i]
            assert correct[row, i] == c, (epoch, i)
            np.testing.assert_allclose(prob[row, i], p, **F16)
            np.testing.assert_allclose(margin[row, i], m, **F16)
    return correct, prob


# ------------------------------------------------------------------ Lightning
pl = pytest.importorskip("pytorch_lightning")


class Plan(torch.utils.data.Sampler):
    """Epoch 1 (Lightning's 0): every example once, shuffled; epoch 2: examples 3..9 never, 0..2
    twice; epoch 3: every example once, in order."""

    def __init__(self):
        self.epoch = 0

    def set_epoch(self, epoch):
        self.epoch = epoch

    def order(self):
        if self.epoch == 0:
            return torch.randperm(N, generator=torch.Generator().manual_seed(1)).tolist()
        if self.epoch == 1:
            return [0, 1, 2, *range(10, N), 0, 1, 2]
        return list(range(N))

    def __iter__(self):
        return iter(self.order())

    def __len__(self):
        return len(self.order())


class Module(pl.LightningModule):
    """BatchNorm: train-mode logits differ from eval mode's, so a value from any other pass fails."""

    def __init__(self, returns=("loss", "logits", "index")):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, CLASSES))
        self.returns, self.seen = returns, []

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, i):
        x, y, index = batch
        logits = self(x)
        self.seen.append((self.current_epoch + 1, index.clone(), logits.detach().clone(), y.clone()))
        out = {"loss": F.cross_entropy(logits, y), "logits": logits, "index": index}
        return {k: out[k] for k in self.returns}

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.5)


def fit(out, module, *, epochs=3, accumulate=1, ckpt_path=None, **record):
    from dyn.train.lightning import RecordEMA

    torch.manual_seed(0)
    x, y = data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, torch.arange(N)), batch_size=8,
                                         sampler=Plan())
    rec = RecordEMA(out, [0.9], val=(x[:10], y[:10]), num_classes=CLASSES, **record)
    trainer = pl.Trainer(max_epochs=epochs, accumulate_grad_batches=accumulate, callbacks=[rec], accelerator="cpu",
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.fit(module, loader, ckpt_path=ckpt_path)
    return trainer


def test_lightning_records_each_presentation_from_the_training_forward_pass(tmp_path):
    module = Module()
    trainer = fit(tmp_path / "r.h5", module, accumulate=2, train_labels=data()[1])
    assert trainer.global_step == 3 * 3  # ceil(5 batches / 2) optimizer steps an epoch
    # every batch's forward pass counts, not only those that end in an optimizer step
    assert [e for e, *_ in module.seen].count(2) == 5  # 36 presentations, batches of 8
    want = expected(module.seen, (1, 2, 3))
    assert len(want[2]) == N - 7  # 3..9 not presented in epoch 2
    check(tmp_path / "r.h5", want)


def test_lightning_without_logits_or_index_says_what_training_step_must_return(tmp_path):
    with pytest.raises(ValueError, match=r"training_step must return \{'loss': loss, 'logits': logits, "
                                         r"'index': index\}.*has no 'index'$"):
        fit(tmp_path / "r.h5", Module(returns=("loss", "logits")), epochs=1, train_labels=data()[1])
    with pytest.raises(ValueError, match=r"train_labels: the training set's integer class labels"):
        fit(tmp_path / "r2.h5", Module(), epochs=1, train_labels=data()[1].float())


def test_lightning_resume_refuses_a_train_labels_other_than_the_runs(tmp_path):
    from dyn.errors import RunFileError

    trainer = fit(tmp_path / "r.h5", Module(), epochs=1, train_labels=data()[1])
    trainer.save_checkpoint(tmp_path / "one.ckpt")
    for labels, says in ((None, "but no train_labels= were given"), (data()[1][:-1], "train_labels= has 39")):
        module = Module()
        with pytest.raises(RunFileError, match=f"r.h5: records train-presented of {N} examples, {says}"):
            fit(tmp_path / "r.h5", module, epochs=2, train_labels=labels, ckpt_path=tmp_path / "one.ckpt")
        assert module.seen == []  # refused before training
    with open_run(tmp_path / "r.h5") as run:
        assert list(run.epochs(PRESENTED)) == [1]


DDP = """
import sys
import numpy as np, torch, torch.nn.functional as F
import pytorch_lightning as pl
sys.path.insert(0, {tests!r})
from test_callbacks_presented import Module, data, N
from dyn.train.lightning import RecordEMA

out = sys.argv[1]
pl.seed_everything(0, verbose=False)
x, y = data()
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y, torch.arange(N)), batch_size=8, shuffle=True)
module = Module()
trainer = pl.Trainer(max_epochs=2, accelerator="cpu", devices=2, strategy="ddp", logger=False,
                     enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     callbacks=[RecordEMA(out + "/r.h5", [0.9], val=(x[:10], y[:10]), train_labels=y)])
trainer.fit(module, loader)
seen = {{f"{{k}}-{{j}}": np.asarray(v) for j, s in enumerate(module.seen) for k, v in zip(("epoch", "index", "logits", "y"), s)}}
np.savez(out + f"/seen-{{trainer.global_rank}}.npz", **seen)
"""


@pytest.mark.slow
def test_lightning_ddp_gathers_every_ranks_examples_into_rank_0s_file(tmp_path):
    script = tmp_path / "ddp.py"
    script.write_text(DDP.format(tests=str(ROOT / "tests")))
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr[-3000:]
    seen, ranks = [], []
    for rank in (0, 1):
        z = np.load(tmp_path / f"seen-{rank}.npz")
        for j in range(len(z.files) // 4):
            seen.append(tuple(z[f"{k}-{j}"] for k in ("epoch", "index", "logits", "y")))
            ranks.append(rank)
    seen = [(int(e), i, lg, y) for e, i, lg, y in seen]
    for epoch in (1, 2):  # each rank saw half, and together every example exactly once
        for rank in (0, 1):
            assert sum(len(i) for (e, i, *_), r in zip(seen, ranks) if e == epoch and r == rank) == N // 2
        idx = np.concatenate([i for e, i, *_ in seen if e == epoch])
        assert sorted(idx.tolist()) == list(range(N))
    correct, prob = check(tmp_path / "r.h5", expected(seen, (1, 2)))
    assert not np.isnan(prob).any()


# -------------------------------------------------------------- Hugging Face
class Classifier(torch.nn.Module):
    """An HF-style model (keyword inputs, dict outputs with loss and logits) that keeps what each
    training forward pass saw."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                                       torch.nn.Linear(8, CLASSES))
        self.seen = []

    def forward(self, x, labels=None):
        logits = self.net(x)
        if self.training:
            self.seen.append((x.detach().clone(), logits.detach().clone(), labels.clone()))
        loss = F.cross_entropy(logits, labels) if labels is not None else None
        return {"loss": loss, "logits": logits}


class Examples(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i], "note": "unused"}  # "note": dropped as an unused column


def hf_train(tmp_path, trainer_cls=None, epochs=2, **kw):
    transformers = pytest.importorskip("transformers")
    from dyn.train.hf import RecordEMACallback, RecordingTrainer

    torch.manual_seed(0)
    x, y = data()
    model = Classifier()
    cb = RecordEMACallback(tmp_path / "hf.h5", [0.9], val=(x[:10], y[:10]), num_classes=CLASSES, train_labels=y)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "trainer"), num_train_epochs=epochs, per_device_train_batch_size=8,
        gradient_accumulation_steps=2, learning_rate=0.1, save_strategy="no", eval_strategy="no",
        logging_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0)
    trainer = (trainer_cls or RecordingTrainer)(model=model, args=args, train_dataset=Examples(x, y), callbacks=[cb],
                                                **kw)
    trainer.train()
    return model, x, y


def test_hf_recording_trainer_records_each_presentation_from_the_training_forward_pass(tmp_path):
    model, x, y = hf_train(tmp_path)
    assert len(model.seen) == 2 * 5  # 5 batches an epoch, each one presented (accumulation 2)
    # which examples a batch held, found independently of the index dyn carried: by their inputs
    row = {bytes(r.numpy().tobytes()): i for i, r in enumerate(x)}
    seen = []
    for b, (xb, logits, yb) in enumerate(model.seen):
        idx = np.array([row[bytes(r.numpy().tobytes())] for r in xb])
        np.testing.assert_array_equal(y[idx].numpy(), yb.numpy())
        seen.append((b // 5 + 1, idx, logits, yb))
    _, prob = check(tmp_path / "hf.h5", expected(seen, (1, 2)))
    assert not np.isnan(prob).any()


def test_hf_plain_trainer_or_a_collator_dropping_the_index_is_refused(tmp_path):
    transformers = pytest.importorskip("transformers")
    with pytest.raises(ValueError, match="never see the training logits; train with dyn.train.hf.RecordingTrainer"):
        hf_train(tmp_path, trainer_cls=transformers.Trainer)
    assert not (tmp_path / "hf.h5").exists()  # refused before the run file is created

    def collate(features):  # knows only its own keys
        return {"x": torch.stack([f["x"] for f in features]), "labels": torch.stack([f["labels"] for f in features])}

    with pytest.raises(ValueError, match="the training batch has no 'dyn_index'.*the data_collator dropped it"):
        hf_train(tmp_path / "b", data_collator=collate)
