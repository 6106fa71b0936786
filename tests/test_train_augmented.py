"""The `train-augmented` split (issue 13, point 3): after the last epoch every network is
evaluated on the training set twice, clean (`train`) and with one fixed-seed crop and flip per
image (`train-augmented`), the paper's Train columns. Checked against a second, per-image numpy
implementation of the augmentation and a separate evaluation of the recorded weights."""

import numpy as np
import pytest
import torch
import torch.nn as nn

from dyn import open_run
from dyn.train.data import AUGMENTED_SEED, augment_once, load_dataset, normalize
from dyn.train.recorder import Recorder
from helpers import run_dyn


def numpy_augment(images, pad, seed):
    """Per image: zero-pad, crop at the drawn offset, mirror where the drawn flip says so. The
    draws are those augment_once documents: offsets then flips from one CPU generator."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = images.shape
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=g).numpy()
    flips = (torch.rand(n, generator=g) < 0.5).numpy()
    out = np.empty_like(images)
    for i in range(n):
        p = np.pad(images[i], ((0, 0), (pad, pad), (pad, pad)))
        r, c = offsets[i]
        crop = p[:, r:r + h, c:c + w]
        out[i] = crop[:, :, ::-1] if flips[i] else crop
    return out, offsets, flips


def test_augment_once_is_one_seeded_crop_and_flip_per_image():
    images = torch.randint(1, 256, (300, 3, 6, 5), generator=torch.Generator().manual_seed(7), dtype=torch.uint8)
    got = augment_once(images, 2, seed=5, chunk=64).numpy()  # chunks must not change the draw
    want, offsets, flips = numpy_augment(images.numpy(), 2, 5)
    np.testing.assert_array_equal(got, want)
    assert 0.35 < flips.mean() < 0.65 and set(offsets.ravel()) == {0, 1, 2, 3, 4}  # the draw really varies
    np.testing.assert_array_equal(augment_once(images, 2, seed=5).numpy(), got)  # fixed: the same every time
    assert not np.array_equal(augment_once(images, 2, seed=6).numpy(), got)


def test_resuming_a_run_made_without_train_augmented_still_finishes(tmp_path):
    """A run begun before train-augmented existed keeps its layout when resumed."""
    torch.manual_seed(0)
    x, y = torch.randn(40, 4), torch.randint(0, 3, (40,))
    model = nn.Sequential(nn.Linear(4, 3))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    rec = Recorder.create(tmp_path / "old.h5", model, [0.9], {"val": (x[:8], y[:8])},
                          final_splits={"train": (x[8:], y[8:])}, num_classes=3, optimizer=opt)
    loss = nn.functional.cross_entropy(model(x[8:]), y[8:])
    loss.backward()
    opt.step()
    rec.step(loss)
    rec.end_epoch(1)
    rec.close()  # killed before finish()
    final = {"train": (x[8:], y[8:]), "train-augmented": (x[8:].flip(1), y[8:])}
    rec, epoch, _ = Recorder.resume(tmp_path / "old.h5", model, [0.9], {"val": (x[:8], y[:8])},
                                    final_splits=final, optimizer=opt)
    assert epoch == 1
    rec.finish()
    with open_run(tmp_path / "old.h5") as run:
        assert run.state == "complete" and run.splits == ["val", "train"]
        assert list(run.epochs("train")) == [1] and run.augmentation("train") is None


@pytest.mark.slow
def test_dyn_train_records_train_and_train_augmented(tmp_path):
    from dyn.train.models import build_model

    out = tmp_path / "run.h5"
    r = run_dyn("train", "--dataset", "digits", "--schedule", "constant", "--lr", "0.05", "--decay", "0.9",
                "--batch-size", "256", "--epochs", "2", "--no-progress", "--out", out)
    assert r.returncode == 0, r.stderr
    data = load_dataset("digits")
    x, y = data.train_images, data.train_labels
    augmented = torch.from_numpy(numpy_augment(x.numpy(), data.pad, AUGMENTED_SEED)[0])
    with open_run(out) as run:
        assert run.splits == ["val", "test", "train", "train-augmented"]
        assert run.augmentation("train") == "none" and run.augmentation("val") == "none"
        note = run.augmentation("train-augmented")
        assert "crop" in note and "flip" in note and f"zero-pad {data.pad}" in note and f"seed {AUGMENTED_SEED}" in note
        assert list(run.epochs("train")) == list(run.epochs("train-augmented")) == [2]
        np.testing.assert_array_equal(run.labels("train-augmented"), y.numpy())
        np.testing.assert_array_equal(run.dataset_index("train-augmented"), data.train_indices)
        for net in run.networks:
            model = build_model("resnet20", 10, in_channels=1)
            model.load_state_dict({k: torch.from_numpy(v) for k, v in run.state_dict(net, 2).items()})
            model.eval()
            with torch.no_grad():
                clean = model(normalize(x, data.mean, data.std)).argmax(1)
                aug = model(normalize(augmented, data.mean, data.std)).argmax(1)
            np.testing.assert_array_equal(run.correct("train", net)[-1], (clean == y).numpy())
            np.testing.assert_array_equal(run.correct("train-augmented", net)[-1], (aug == y).numpy())
            np.testing.assert_array_equal(run.predicted("train-augmented", net)[-1], aug.numpy())
            assert (clean != aug).any()  # the two splits really are different inputs
