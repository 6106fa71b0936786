import io
import os
import pickle
import socket
import tarfile

import numpy as np
import pytest
import torch

from dyn.train.data import (CIFAR10_MEAN, CIFAR10_STD, DataNotFound, TrainBatches, crop_flip, load_dataset,
                        normalize, split_indices)

# -- CIFAR-10 from torchvision's on-disk layout ----------------------------------------------------

N_PER_BATCH, N_TEST = 4, 6


def fake_cifar(root):
    """A tiny cifar-10-batches-py folder as torchvision reads it; returns its arrays.

    The real files are Python 2 pickles whose str keys torchvision's latin1 unpickling turns into
    'data' and 'labels'; a Python 3 pickle needs str keys to look the same (bytes keys stay bytes).
    """
    rng = np.random.default_rng(0)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    train_x, train_y = [], []
    for i in range(1, 6):
        x = rng.integers(0, 256, (N_PER_BATCH, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, N_PER_BATCH).tolist()
        (folder / f"data_batch_{i}").write_bytes(pickle.dumps({"data": x, "labels": y}))
        train_x.append(x)
        train_y += y
    test_x = rng.integers(0, 256, (N_TEST, 3072), dtype=np.uint8)
    test_y = rng.integers(0, 10, N_TEST).tolist()
    (folder / "test_batch").write_bytes(pickle.dumps({"data": test_x, "labels": test_y}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))
    # CIFAR's rows are the R, G and B planes of 32x32 images, one after another
    return (np.concatenate(train_x).reshape(-1, 3, 32, 32), np.array(train_y),
            test_x.reshape(-1, 3, 32, 32), np.array(test_y))


@pytest.fixture
def trust_fake_files(monkeypatch):
    import torchvision.datasets.cifar as cifar

    # the md5 sums are the real files'; _load_meta checks batches.meta through this same function,
    # so patching CIFAR10._check_integrity alone would not be enough
    monkeypatch.setattr(cifar, "check_integrity", lambda *a, **k: True)


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("tried to open a network connection")
    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_fake_cifar10_loads_split_and_matches_the_files(tmp_path, trust_fake_files, no_network):
    train_x, train_y, test_x, test_y = fake_cifar(tmp_path)
    data = load_dataset("cifar10", tmp_path, val_size=5, split_seed=1234)
    n = 5 * N_PER_BATCH
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (n - 5, 5, N_TEST)
    assert sorted(np.concatenate([data.train_indices, data.val_indices])) == list(range(n))
    # the authors' split: random_split with a generator seeded 1234
    train_sub, val_sub = torch.utils.data.random_split(range(n), [n - 5, 5],
                                                       generator=torch.Generator().manual_seed(1234))
    assert data.train_indices.tolist() == list(train_sub.indices)
    assert data.val_indices.tolist() == list(val_sub.indices)
    for split, x, y in [("train", train_x, train_y), ("val", train_x, train_y), ("test", test_x, test_y)]:
        images, labels = data.split(split)
        ix = getattr(data, f"{split}_indices")
        assert images.dtype == torch.uint8 and labels.dtype == torch.int64
        assert np.array_equal(images.numpy(), x[ix]) and np.array_equal(labels.numpy(), y[ix])
    assert data.image_shape == (3, 32, 32) and data.num_classes == 10 and data.pad == 4
    assert data.mean == CIFAR10_MEAN and data.std == CIFAR10_STD
    nhwc = data.val_images_nhwc()
    assert isinstance(nhwc, np.ndarray) and nhwc.shape == (5, 32, 32, 3)
    assert np.array_equal(nhwc[0, 3, 7], train_x[data.val_indices[0], :, 3, 7])  # pixel (3, 7), RGB
    x0, _ = next(data.eval_batches("val", batch_size=2))
    expected = (train_x[data.val_indices[0], 1, 3, 7] / 255 - 0.4822) / 0.2435  # green, by hand
    assert x0[0, 1, 3, 7].item() == pytest.approx(expected, abs=1e-5)


def test_the_paper_split_is_random_split_seed_1234():
    train, val = split_indices(50_000, [45_000, 5_000], 1234)
    sub_train, sub_val = torch.utils.data.random_split(range(50_000), [45_000, 5_000],
                                                       generator=torch.Generator().manual_seed(1234))
    assert train.tolist() == list(sub_train.indices) and val.tolist() == list(sub_val.indices)


def test_the_archive_alone_is_extracted_offline(tmp_path, trust_fake_files, no_network):
    src = tmp_path / "src"
    train_x, *_ = fake_cifar(src)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    data = load_dataset("cifar10", data_dir, val_size=2)
    assert (data_dir / "cifar-10-batches-py" / "data_batch_3").is_file()
    assert np.array_equal(data.train_images[0].numpy(), train_x[data.train_indices[0]])


@pytest.mark.timeout(30)  # a missing dataset must fail fast, not hang on a download
def test_missing_cifar10_says_where_to_put_it(tmp_path, no_network):
    with pytest.raises(DataNotFound) as err:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg
    assert str(tmp_path / "nowhere") in msg and "cifar-10-python.tar.gz" in msg and "cifar-10-batches-py" in msg
    assert isinstance(err.value, FileNotFoundError)


def test_damaged_cifar10_is_reported_not_downloaded(tmp_path, no_network):
    fake_cifar(tmp_path)  # real md5 sums: these files fail torchvision's check
    with pytest.raises(DataNotFound, match="failed torchvision's check"):
        load_dataset("cifar10", tmp_path)


# -- digits and synthetic --------------------------------------------------------------------------

def test_digits_split_scaling_and_statistics():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    raw = load_digits()
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (1077, 360, 360)
    every = np.concatenate([data.train_indices, data.val_indices, data.test_indices])
    assert sorted(every) == list(range(1797))
    assert data.image_shape == (1, 8, 8) and data.pad == 1
    i = data.val_indices[3]
    by_hand = [[int(np.rint(v * 255 / 16)) for v in row] for row in raw.images[i]]
    assert data.val_images[3, 0].tolist() == by_hand
    assert data.val_labels[3].item() == raw.target[i]
    px = np.rint(raw.images[data.train_indices] * 255 / 16) / 255
    assert data.mean[0] == pytest.approx(px.mean()) and data.std[0] == pytest.approx(px.std())
    again = load_dataset("digits")
    assert np.array_equal(again.train_indices, data.train_indices)
    assert not np.array_equal(load_dataset("digits", split_seed=7).train_indices, data.train_indices)


def test_synthetic_and_unknown_names():
    data = load_dataset("synthetic", size=50, num_classes=3, val_size=10)
    assert (len(data.train_labels), len(data.val_labels), len(data.test_labels)) == (40, 10, 10)
    assert data.image_shape == (3, 32, 32) and int(data.train_labels.max()) < 3
    with pytest.raises(ValueError, match="cifar10, digits, synthetic"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="val_size"):
        load_dataset("synthetic", size=50, val_size=50)


# -- augmentation ----------------------------------------------------------------------------------

def test_crop_is_a_window_of_the_zero_padded_image_and_flip_a_mirror():
    img = torch.arange(1, 2 * 4 * 5 + 1, dtype=torch.uint8).reshape(1, 2, 4, 5)
    padded = np.pad(img.numpy(), ((0, 0), (0, 0), (2, 2), (2, 2)))  # zeros, by numpy
    got = crop_flip(img, 2, torch.tensor([[3, 1]]), torch.tensor([False]))
    assert np.array_equal(got.numpy(), padded[:, :, 3:7, 1:6])
    got = crop_flip(img, 2, torch.tensor([[0, 4]]), torch.tensor([True]))
    assert np.array_equal(got.numpy(), padded[:, :, 0:4, 4:9][..., ::-1])
    assert got[0, 0, 0, -1].item() == 0  # the window reached into the padding


def test_normalize_matches_torchvision_bit_for_bit():
    import torchvision.transforms.functional as TF

    img = torch.randint(0, 256, (3, 6, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = normalize(img[None], CIFAR10_MEAN, CIFAR10_STD)[0]
    theirs = TF.normalize(TF.to_tensor(img.permute(1, 2, 0).numpy()), CIFAR10_MEAN, CIFAR10_STD)
    assert torch.equal(ours, theirs)
    assert ours[2, 1, 1].item() == pytest.approx((img[2, 1, 1].item() / 255 - 0.4465) / 0.2616, abs=1e-6)


def distinct_images(n, h=4, w=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, 256, (n, 1, h, w), dtype=torch.uint8, generator=g)  # nonzero: padding shows


def test_every_training_sample_is_a_padded_window_and_all_offsets_and_flips_occur():
    n, pad = 400, 1
    images = distinct_images(n)
    batches = TrainBatches(images, torch.arange(n), batch_size=64, mean=(0.0,), std=(1 / 255,), pad=pad, seed=3)
    seen = {}
    for x, y in batches.epoch():
        raw = np.rint(x.numpy()).astype(np.int64)  # mean 0, std 1/255: normalisation is the identity
        for out, i in zip(raw, y.tolist()):
            padded = np.pad(images[i].numpy().astype(np.int64), ((0, 0), (pad, pad), (pad, pad)))
            matches = [(r, c, f) for r in range(2 * pad + 1) for c in range(2 * pad + 1) for f in (False, True)
                       if np.array_equal(out, padded[:, r:r + 4, c:c + 4][..., ::-1] if f else padded[:, r:r + 4, c:c + 4])]
            assert len(matches) == 1
            seen[matches[0]] = seen.get(matches[0], 0) + 1
    assert len(seen) == 18  # 3 x 3 offsets x 2 flips
    flipped = sum(v for (r, c, f), v in seen.items() if f) / n
    assert 0.42 < flipped < 0.58  # binomial(400, 0.5): 4 standard deviations


def test_flip_fraction_over_many_samples_is_one_half():
    n = 4000
    images = distinct_images(n, 2, 3)
    batches = TrainBatches(images, torch.arange(n), batch_size=512, mean=(0.0,), std=(1 / 255,), pad=0, seed=1)
    flips = 0
    for x, y in batches:
        raw = torch.round(x).to(torch.uint8)
        mirrored = (raw == images[y].flip(-1)).flatten(1).all(1) & ~(raw == images[y]).flatten(1).all(1)
        flips += int(mirrored.sum())
    assert abs(flips / n - 0.5) < 0.03  # 3.8 standard deviations


# -- shuffling, resuming ---------------------------------------------------------------------------

def loader(n=10, batch_size=4, seed=0):
    return TrainBatches(distinct_images(n), torch.arange(n), batch_size=batch_size, mean=(0.5,), std=(0.25,),
                        pad=1, seed=seed)


def test_each_epoch_covers_every_sample_once_and_keeps_the_last_batch():
    batches = loader()
    assert len(batches) == 3
    orders = []
    for _ in range(2):
        ys = [y for _, y in batches.epoch()]
        assert [len(y) for y in ys] == [4, 4, 2]
        order = torch.cat(ys).tolist()
        assert sorted(order) == list(range(10))
        orders.append(order)
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_same_seed_same_batches_and_a_restored_state_continues_the_epoch():
    def run(b):
        return [(x.clone(), y.clone()) for x, y in b.epoch()]

    a, b = loader(seed=5), loader(seed=5)
    first_a, first_b = run(a), run(b)
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(first_a, first_b))
    assert not all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(first_a, run(loader(seed=6))))

    at_boundary = a.state_dict()
    it = a.epoch()
    next(it)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)  # mid-epoch: one batch handed out
    rest = [(x.clone(), y.clone()) for x, y in it]
    next_epoch = run(a)

    buf.seek(0)
    resumed = loader(seed=99)
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    got = run(resumed)
    assert len(got) == 2
    assert all(torch.equal(x1, x2) and torch.equal(y1, y2) for (x1, y1), (x2, y2) in zip(got, rest))
    assert all(torch.equal(x1, x2) for (x1, _), (x2, _) in zip(run(resumed), next_epoch))

    from_boundary = loader(seed=99)
    from_boundary.load_state_dict(at_boundary)
    assert all(torch.equal(y1, y2) for (_, y1), (_, y2) in zip(run(from_boundary)[1:], rest))


def test_eval_batches_are_in_order_normalised_and_unaugmented():
    data = load_dataset("synthetic", size=30, val_size=10)
    xs, ys = zip(*data.eval_batches("val", batch_size=4))
    assert [len(y) for y in ys] == [4, 4, 2]
    assert torch.equal(torch.cat(ys), data.val_labels)
    by_hand = (data.val_images.double() / 255 - torch.tensor(CIFAR10_MEAN, dtype=torch.float64)[:, None, None]) \
        / torch.tensor(CIFAR10_STD, dtype=torch.float64)[:, None, None]
    torch.testing.assert_close(torch.cat(xs).double(), by_hand, rtol=0, atol=1e-5)


def test_the_epoch_ends_when_its_last_batch_is_handed_out():
    batches = loader()
    it = batches.epoch()
    last = [y for _, y in zip(range(3), it)][-1]  # all three batches, generator not yet exhausted
    assert len(last) == 2
    assert batches.state_dict()["position"] == 0
    ys = [y for _, y in batches.epoch()]  # a new epoch, not the empty rest of the old one
    assert [len(y) for y in ys] == [4, 4, 2]


def test_digits_read_without_sklearn_equal_load_digits():
    import subprocess
    import sys

    from sklearn.datasets import load_digits

    from dyn.train.data import _digits

    images, labels = _digits()
    d = load_digits()
    np.testing.assert_array_equal(images, d.images)
    np.testing.assert_array_equal(labels, d.target)
    code = "import sys; from dyn.train.data import load_dataset; load_dataset('digits'); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # its import costs seconds of every `dyn train --dataset digits`
