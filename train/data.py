"""Datasets held whole on the training device, with augmentation done there in batches.

Like Keller Jordan's airbench, and unlike a DataLoader of PIL images: the split's uint8 images
live on the device; each epoch draws its shuffle (a device-side randperm), crop offsets and flips
at once from one seeded torch.Generator; each batch is then a few tensor ops: gather, zero-pad,
crop and flip by one indexing op, normalise. No worker processes, no host-device copies.

The augmentation is the paper's (He et al. 2016): zero-pad the raw image by 4 pixels (1 for 8x8
digits), take a random crop of the original size, flip horizontally with p=0.5, then normalise as
torchvision's ToTensor + Normalize do (x / 255 - mean) / std, in the same float32 operations. The
last partial batch is kept (drop_last False): CIFAR-10's 45,000 images give 352 batches of 128.

Datasets (load_dataset):
  cifar10    torchvision's files, never downloaded. The 50k training file is split 45k/5k as the
             authors did: random_split with a generator seeded 1234, i.e. torch.randperm(50000)
             with that generator; train = perm[:45000], val = perm[45000:], in that order.
  digits     scikit-learn's bundled 1,797 8x8 digits (0..16 scaled to uint8), one channel, split
             1,077 / 360 / 360 by the same randperm rule; mean/std from the train split.
  synthetic  random CIFAR-shaped uint8 images and labels, for benchmarks and tests.
"""

import math
import os
import tarfile
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .ranks import shard as shard_slice

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_FOLDER = "cifar-10-batches-py"
DATASETS = ("cifar10", "digits", "synthetic")


class DataNotFound(FileNotFoundError):
    """The dataset's files are not where they were looked for (dyn never downloads)."""


# -- augmentation: pure functions of the images and the drawn randomness ---------------------------

def crop_flip(images, pad, offsets, flips):
    """Crop each zero-padded image at its (row, col) offset in [0, 2*pad], mirrored where flips.

    images (B, C, H, W) any dtype; offsets (B, 2) int64; flips (B,) bool. One gather for the batch:
    out[b, c, i, j] = padded[b, c, offsets[b, 0] + i, offsets[b, 1] + (W-1-j if flips[b] else j)].
    """
    B, C, H, W = images.shape
    dev = images.device
    padded = F.pad(images, (pad, pad, pad, pad)) if pad else images
    rows = offsets[:, 0, None] + torch.arange(H, device=dev)
    cols = offsets[:, 1, None] + torch.arange(W, device=dev)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    return padded[torch.arange(B, device=dev)[:, None, None, None], torch.arange(C, device=dev)[None, :, None, None],
                  rows[:, None, :, None], cols[:, None, None, :]]


AUGMENTED_SEED = 0  # the one draw of the `train-augmented` split: the same for every run


def augment_once(images, pad, seed=AUGMENTED_SEED, chunk=4096):
    """One random crop (zero-pad `pad`) and horizontal flip per image, as training draws them,
    from a CPU generator seeded `seed`: the same images on any device, for every network.

    The paper's Train columns are accuracies on augmented training images (recipe.md); a fixed
    draw keeps networks and runs compared on the same images. uint8 in, uint8 out.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(images)
    offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=g).to(images.device)
    flips = (torch.rand(n, generator=g) < 0.5).to(images.device)
    # in chunks: crop_flip's gather indexes every element, too much memory for 45k images at once
    return torch.cat([crop_flip(images[i:i + chunk], pad, offsets[i:i + chunk], flips[i:i + chunk])
                      for i in range(0, n, chunk)]) if n else images.clone()


def augmentation_note(pad, seed=AUGMENTED_SEED):
    """The `augmentation` attribute of the `train-augmented` split."""
    return f"random crop (zero-pad {pad}) + horizontal flip (p=0.5), one draw per image, seed {seed}"


def training_augmentation_note(pad, flip=True):
    """The `augmentation` attribute of `train-presented`: what training drew, anew each epoch."""
    what = f"random crop (zero-pad {pad})" + (" + horizontal flip (p=0.5)" if flip else "")
    return f"{what}, drawn anew every epoch from the run's seed (the training augmentation)"


def _channel_tensor(values, device):
    return torch.as_tensor(values, dtype=torch.float32, device=device)


def normalize(images, mean, std):
    """uint8 (B, C, H, W) -> float32, as torchvision's ToTensor then Normalize(mean, std)."""
    # as_tensor is a no-op for float32 tensors already on the device: the batch loops pass those,
    # sparing a host-to-device copy per batch
    mean = _channel_tensor(mean, images.device)[:, None, None]
    std = _channel_tensor(std, images.device)[:, None, None]
    return images.float().div(255).sub_(mean).div_(std)


# -- batches ---------------------------------------------------------------------------------------

class TrainBatches:
    """Shuffled, augmented batches of one split, made on the split's device.

    All randomness of an epoch comes from `generator` when the epoch starts, so the generator state
    at an epoch's start plus the number of batches already taken pin down the rest of the epoch:
    that pair is the state_dict, valid at any point, also mid-epoch. An epoch left unfinished is
    resumed, not redrawn, by the next call to epoch(); keep one epoch iterator alive at a time.
    """

    def __init__(self, images, labels, *, batch_size, mean, std, pad, flip=True, seed=0, shard=(0, 1)):
        self.images, self.labels = images, labels
        self.batch_size, self.pad, self.flip = batch_size, pad, flip
        # (rank, world): hand out only this rank's contiguous part of each batch. Every rank
        # draws the same randomness, so the parts of all ranks make up the one-process batch.
        self.rank, self.world = shard
        self.global_size = 0  # samples of the whole batch last handed out, over all ranks
        self.indices = None  # positions in the split of this rank's samples in the batch last handed out
        self.mean, self.std = _channel_tensor(mean, images.device), _channel_tensor(std, images.device)
        self.seed, self.device_type = seed, images.device.type
        self.generator = torch.Generator(device=images.device).manual_seed(seed)
        self._epoch_start = None  # generator state when the unfinished epoch began
        self._position = 0  # batches of that epoch handed out

    def __len__(self):
        return math.ceil(len(self.labels) / self.batch_size)  # the last partial batch is kept

    def __iter__(self):
        return self.epoch()

    def _draw(self):
        n, dev, g = len(self.labels), self.images.device, self.generator
        perm = torch.randperm(n, generator=g, device=dev)
        offsets = torch.randint(0, 2 * self.pad + 1, (n, 2), generator=g, device=dev)
        flips = torch.rand(n, generator=g, device=dev) < 0.5
        if not self.flip:
            flips.zero_()
        return perm, offsets, flips

    def epoch(self):
        """Yield (normalised float32 images, int64 labels) for the rest of the current epoch."""
        if not len(self):
            return
        if self._epoch_start is None:
            self._epoch_start = self.generator.get_state()
        else:  # unfinished (or resumed) epoch: redraw its randomness, skip what was handed out
            self.generator.set_state(self._epoch_start)
        perm, offsets, flips = self._draw()
        B = self.batch_size
        for b in range(self._position, len(self)):
            idx = perm[b * B:(b + 1) * B]
            sl = slice(b * B, (b + 1) * B)
            self.global_size = len(idx)
            if self.world > 1:
                part = shard_slice(len(idx), self.rank, self.world)
                idx, sl = idx[part], slice(sl.start + part.start, sl.start + part.stop)
            x = normalize(crop_flip(self.images[idx], self.pad, offsets[sl], flips[sl]), self.mean, self.std)
            # counted before the yield: a checkpoint taken while batch b trains skips it on resume,
            # and the epoch is over as soon as its last batch is handed out
            self._position = b + 1
            if self._position == len(self):
                self._epoch_start, self._position = None, 0
            self.indices = idx
            yield x, self.labels[idx]

    def state_dict(self):
        start = self._epoch_start if self._epoch_start is not None else self.generator.get_state()
        return {"generator": start.clone(), "position": self._position, "device": self.device_type}

    def load_state_dict(self, state, epoch=None):
        """Continue where `state` left off. Returns the device type `state` was drawn on.

        A generator's state only loads into a generator of the same device type (a CPU one is
        5,056 bytes, a CUDA one 16). Across types, with `epoch` (the epochs already done) the
        generator is re-seeded from (seed, epoch) instead: deterministic, but another data order
        than an uninterrupted run's, so the run is no longer bit-identical to one.
        """
        saved = saved_device(state)
        if saved == self.device_type:
            self.generator.set_state(state["generator"])
            self._epoch_start = state["generator"].clone() if int(state["position"]) else None
        elif epoch is None:
            raise ValueError(f"the data order was drawn on {saved} and cannot continue on {self.device_type}")
        else:
            self.generator.manual_seed(reseed(self.seed, epoch))
            self._epoch_start = None
        self._position = int(state["position"])
        return saved


CPU_GENERATOR_STATE_BYTES = 5056  # torch's CPU generator (mt19937); a CUDA (Philox) one is 16


def saved_device(state):
    """The device type a TrainBatches state was drawn on ("cpu" or "cuda"); states written before
    the "device" key existed are told apart by their generator state's size."""
    if "device" in state:
        return state["device"]
    return "cpu" if state["generator"].numel() == CPU_GENERATOR_STATE_BYTES else "cuda"


def reseed(seed, epoch):
    """The seed of the data order after `epoch` epochs, for a run resumed on another device type."""
    return (int(seed) * 1_000_003 + int(epoch)) % 2**63


def eval_batches(images, labels, *, batch_size, mean, std):
    """Un-augmented, normalised batches in dataset order."""
    mean, std = _channel_tensor(mean, images.device), _channel_tensor(std, images.device)
    for i in range(0, len(labels), batch_size):
        yield normalize(images[i:i + batch_size], mean, std), labels[i:i + batch_size]


# -- datasets --------------------------------------------------------------------------------------

@dataclass
class DeviceData:
    """A dataset's three splits as uint8 (N, C, H, W) images and int64 labels on one device.

    *_indices are each split's positions in the original dataset (for cifar10: in the 50k training
    file for train and val, in the 10k test file for test), in split order.
    """

    name: str
    train_images: torch.Tensor
    train_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    train_indices: np.ndarray
    val_indices: np.ndarray
    test_indices: np.ndarray
    num_classes: int
    mean: tuple
    std: tuple
    pad: int  # zero padding before the random crop

    @property
    def image_shape(self):
        return tuple(self.train_images.shape[1:])

    def split(self, name):
        if name == "train-augmented":
            return self.train_augmented()
        if name not in ("train", "val", "test"):
            raise ValueError(f"unknown split {name!r}; choose one of: train, val, test, train-augmented")
        return getattr(self, f"{name}_images"), getattr(self, f"{name}_labels")

    def split_indices(self, name):
        """Each sample's index in the original data set (train-augmented: the train split's)."""
        return getattr(self, f"{'train' if name == 'train-augmented' else name}_indices")

    def images_nhwc(self, split):
        """The split's uint8 images as a numpy (N, H, W, C) array, e.g. for the run file."""
        return self.split(split)[0].permute(0, 2, 3, 1).cpu().numpy()

    def val_images_nhwc(self):
        return self.images_nhwc("val")

    def train_batches(self, batch_size, seed, *, augment=True, shard=(0, 1)):
        images, labels = self.train_images, self.train_labels
        return TrainBatches(images, labels, batch_size=batch_size, mean=self.mean, std=self.std,
                            pad=self.pad if augment else 0, flip=augment, seed=seed, shard=shard)

    def train_augmented(self, seed=AUGMENTED_SEED):
        """The training images with one fixed-seed crop and flip each (see augment_once), labels."""
        return augment_once(self.train_images, self.pad, seed), self.train_labels

    def eval_batches(self, split, batch_size=1000):
        images, labels = self.split(split)
        return eval_batches(images, labels, batch_size=batch_size, mean=self.mean, std=self.std)


def split_indices(n, lengths, seed):
    """torch.utils.data.random_split's index sets for lengths summing to n, generator seeded `seed`."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    ends = np.cumsum(lengths)
    return [perm[e - k:e] for e, k in zip(ends, lengths)]


def _check_sizes(n, val_size, test_size=0):
    if not 0 <= val_size <= n - test_size - 1:
        raise ValueError(f"val_size must leave at least one training sample of {n - test_size}, got {val_size}")


def _cifar10_files(data_dir):
    """The CIFAR-10 train and test arrays via torchvision, extracting the archive if needed."""
    folder, archive = os.path.join(data_dir, CIFAR10_FOLDER), os.path.join(data_dir, CIFAR10_ARCHIVE)
    if not os.path.isdir(folder):
        if not os.path.isfile(archive):
            raise DataNotFound(f"CIFAR-10 not found in {os.path.abspath(data_dir)}: put {CIFAR10_ARCHIVE} "
                               f"or its extracted {CIFAR10_FOLDER}/ folder there (dyn never downloads)")
        with tarfile.open(archive, "r:gz") as tar:  # offline: the user's own copy
            tar.extractall(data_dir, filter="data")
    from torchvision.datasets import CIFAR10  # slow import, only needed here

    try:
        train = CIFAR10(root=data_dir, train=True, download=False)
        test = CIFAR10(root=data_dir, train=False, download=False)
    except RuntimeError as e:  # torchvision's md5 check: files missing or damaged
        raise DataNotFound(f"CIFAR-10 in {os.path.abspath(folder)} failed torchvision's check ({e}): "
                           f"replace it with a fresh {CIFAR10_ARCHIVE}") from None
    return train.data, np.asarray(train.targets), test.data, np.asarray(test.targets)


def _digits():
    """scikit-learn's bundled 8x8 digits: (1797, 8, 8) values 0..16 and their labels.

    Read from the CSV that scikit-learn ships, without importing scikit-learn (2-3 s of start-up
    for every `dyn train --dataset digits`); load_digits() reads the same file.
    """
    import importlib.util

    spec = importlib.util.find_spec("sklearn")
    if spec is None:
        raise DataNotFound("the digits data set comes with scikit-learn, which is not installed: "
                           "pip install scikit-learn (or 'dyn-ema[train]')")
    path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
    if os.path.isfile(path):
        table = np.loadtxt(path, delimiter=",")
        return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits  # the file moved: take the slow, sure way

    d = load_digits()
    return d.images, d.target


def _nchw(images_nhwc, device):
    return torch.from_numpy(np.ascontiguousarray(images_nhwc)).permute(0, 3, 1, 2).contiguous().to(device)


def _labels(labels, device):
    return torch.as_tensor(np.asarray(labels), dtype=torch.int64).to(device)


def load_dataset(name, data_dir=None, val_size=None, device="cpu", split_seed=1234, *,
                 size=2048, num_classes=10):
    """Load `name` onto `device` as DeviceData. size and num_classes apply to synthetic only
    (size images to split into train and val, plus size // 5 test images)."""
    if name == "cifar10":
        if data_dir is None:
            raise ValueError("cifar10 needs data_dir: the folder holding cifar-10-batches-py or its archive")
        train_x, train_y, test_x, test_y = _cifar10_files(data_dir)
        val_size = 5000 if val_size is None else val_size
        _check_sizes(len(train_y), val_size)
        tr, va = split_indices(len(train_y), [len(train_y) - val_size, val_size], split_seed)
        te = np.arange(len(test_y))
        pool = (train_x, train_y, tr), (train_x, train_y, va), (test_x, test_y, te)
        classes, mean, std, pad = 10, CIFAR10_MEAN, CIFAR10_STD, 4
    elif name == "digits":
        digit_images, digit_labels = _digits()
        images = np.rint(digit_images * (255 / 16)).astype(np.uint8)[..., None]  # NHWC, 1 channel
        n, test_size = len(images), 360
        val_size = 360 if val_size is None else val_size
        _check_sizes(n, val_size, test_size)
        tr, va, te = split_indices(n, [n - val_size - test_size, val_size, test_size], split_seed)
        pool = [(images, digit_labels, ix) for ix in (tr, va, te)]
        stats = images[tr].astype(np.float64) / 255
        classes, mean, std, pad = 10, (float(stats.mean()),), (float(stats.std()),), 1
    elif name == "synthetic":
        g = torch.Generator().manual_seed(split_seed)
        test_size = size // 5
        images = torch.randint(0, 256, (size + test_size, 32, 32, 3), generator=g, dtype=torch.uint8).numpy()
        labels = torch.randint(0, num_classes, (size + test_size,), generator=g).numpy()
        val_size = size // 10 if val_size is None else val_size
        _check_sizes(size, val_size)
        tr, va = split_indices(size, [size - val_size, val_size], split_seed)
        te = np.arange(test_size)  # the test images follow the `size` training images
        pool = (images, labels, tr), (images, labels, va), (images[size:], labels[size:], te)
        classes, mean, std, pad = num_classes, CIFAR10_MEAN, CIFAR10_STD, 4
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")

    tensors = []
    for x, y, ix in pool:
        tensors += [_nchw(x[ix], device), _labels(y[ix], device)]
    return DeviceData(name, *tensors, train_indices=np.asarray(tr, np.int64), val_indices=np.asarray(va, np.int64),
                      test_indices=np.asarray(te, np.int64), num_classes=classes, mean=mean, std=std, pad=pad)
