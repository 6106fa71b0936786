"""CIFAR ResNets: the paper's ResNet-20 (and its 6n+2 siblings) and the Appendix C ResNet-50.

The 6n+2 ResNets follow He et al. (2016), section 4.2, as the paper's authors ran them: a 3x3 stem
to 16 channels, three stages of n BasicBlocks with 16/32/64 channels and strides 1/2/2, global
average pooling and one Linear layer. Where a block changes shape, its shortcut is "option A":
subsample by 2 and zero-pad the new channels, so shortcuts have no parameters (ResNet-20 has
269,722 parameters with it). Module names match the widely copied akamaster/pytorch_resnet_cifar10
(conv1, bn1, layer1..3, linear), so state_dicts from that lineage load as they are.

The 6n+2 ResNets keep PyTorch's default initialisation: the authors did not apply
kaiming_normal_ to them. Their ResNet-50 is initialised differently (see resnet50_cifar).

The average pool is adaptive, so any input size works (8x8 digits as well as 32x32 CIFAR).
"""

import torch.nn as nn
import torch.nn.functional as F


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        # option A needs the channel count to double exactly, as it does in every CIFAR ResNet
        self.subsample = stride != 1 or in_planes != planes
        if self.subsample:
            assert planes == 2 * in_planes, "option-A shortcut pads to exactly twice the channels"
        self.pad = planes // 4

    def shortcut(self, x):
        if not self.subsample:
            return x
        # option A: take every other pixel (same size as a stride-2, pad-1 3x3 conv gives, odd
        # sizes included), then zero-pad planes//4 channels on each side: no parameters
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, num_blocks, num_classes=10, in_channels=3):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, num_blocks, stride=1)
        self.layer2 = self._stage(16, 32, num_blocks, stride=2)
        self.layer3 = self._stage(32, 64, num_blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)

    @staticmethod
    def _stage(in_planes, planes, n, stride):
        blocks = [BasicBlock(in_planes, planes, stride)]
        blocks += [BasicBlock(planes, planes, 1) for _ in range(n - 1)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.linear(out)


def resnet(depth, num_classes=10, in_channels=3):
    """The CIFAR ResNet of the given depth 6n+2 (20, 32, 44, 56, 110, ...)."""
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"CIFAR ResNet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110), got {depth}")
    return ResNet((depth - 2) // 6, num_classes=num_classes, in_channels=in_channels)


def resnet50_cifar(num_classes=10, in_channels=3):
    """Appendix C's ResNet-50, built and initialised as the paper's authors built theirs: a
    subclass of torchvision's Bottleneck `ResNet` (layers 3, 4, 6, 3) whose 3x3 stride-1 stem
    replaces the 7x7 one, with no max-pool (23,520,842 parameters for 10 classes).

    Initialisation, each from where the authors' model got it (recipe.md):
    - every convolution of the blocks and shortcuts: torchvision's `ResNet.__init__`,
      kaiming_normal_(mode="fan_out", nonlinearity="relu"), std sqrt(2 / (out_channels * k * k));
    - every BatchNorm: the same constructor, weight 1 and bias 0;
    - the final Linear: PyTorch's default (torchvision's constructor leaves it alone);
    - the 3x3 stem conv: PyTorch's default, because the authors' subclass replaces the stem after
      torchvision's constructor has run.
    The layers are made in that order too (torchvision's constructor, then the new stem), so one
    seed gives the authors' initial weights."""
    from torchvision.models import resnet50  # only this model needs torchvision

    model = resnet50(weights=None, num_classes=num_classes)  # its constructor does the kaiming/BN init
    model.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)  # PyTorch's default init
    model.maxpool = nn.Identity()
    return model


MODELS = {
    "resnet20": lambda num_classes=10, in_channels=3: resnet(20, num_classes, in_channels),
    "resnet32": lambda num_classes=10, in_channels=3: resnet(32, num_classes, in_channels),
    "resnet44": lambda num_classes=10, in_channels=3: resnet(44, num_classes, in_channels),
    "resnet56": lambda num_classes=10, in_channels=3: resnet(56, num_classes, in_channels),
    "resnet110": lambda num_classes=10, in_channels=3: resnet(110, num_classes, in_channels),
    "resnet50": resnet50_cifar,
}


def build_model(name, num_classes, in_channels=3):
    """The model registered as `name` in MODELS, freshly initialised."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[name](num_classes=num_classes, in_channels=in_channels)
