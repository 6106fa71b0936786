"""Appendix C (Table 3) as the authors ran it (issue 13, point 2): the warm-up cosine schedule
and the ResNet-50 initialisation, against the authors' closed form and torchvision's own ResNet."""

import math

import pytest
import torch
import torch.nn as nn

from dyn.train.models import resnet50_cifar
from dyn.train.schedules import lr_at

# Table 3's run: lr0 0.1, T = 200 epochs x 352 iterations, W = 5,000 warm-up iterations
LR0, T, W = 0.1, 70_400, 5_000


def authors_warmup_cosine(s):
    """The authors' WarmupCosineSchedule factor times lr0: a linear ramp, then a cosine from its
    peak over the remaining T - W steps."""
    if s < W:
        return LR0 * s / W
    return LR0 * (1 + math.cos(math.pi * (s - W) / (T - W))) / 2


@pytest.mark.parametrize("step, value", [(4_999, 0.09998), (10_000, 0.0985647), (40_000, 0.0444870)])
def test_warmup_cosine_matches_the_authors_form_at_table3_steps(step, value):
    got = lr_at("cosine", step, base_lr=LR0, total_iters=T, warmup_iters=W)
    assert got == pytest.approx(authors_warmup_cosine(step), rel=1e-12)
    assert got == pytest.approx(value, rel=1e-5)  # the numbers worked out by hand
    if step == 40_000:  # not the cosine over 0..T times the ramp (0.0394), 11% lower
        assert abs(got - LR0 * (1 + math.cos(math.pi * step / T)) / 2) > 0.005


def _authors_resnet50():
    """What the authors' code builds: torchvision's ResNet subclassed, stem replaced after its
    constructor, no max-pool."""
    from torchvision.models.resnet import Bottleneck, ResNet

    m = ResNet(Bottleneck, [3, 4, 6, 3], num_classes=10)
    m.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(1234)
    return resnet50_cifar(10)


def test_resnet50_has_the_authors_initial_weights_for_one_seed(model):
    torch.manual_seed(1234)
    ref = _authors_resnet50()
    ours, theirs = model.state_dict(), ref.state_dict()
    assert list(ours) == list(theirs)
    for k in theirs:
        assert torch.equal(ours[k], theirs[k]), k


def test_resnet50_init_statistics_per_layer_kind(model):
    convs = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert convs[0][0] == "conv1" and len(convs) == 53  # stem + 48 block convs + 4 shortcut convs
    for name, m in convs[1:]:  # kaiming_normal_(fan_out, relu): N(0, 2 / fan_out)
        w = m.weight.detach().double()
        fan_out = w.shape[0] * w.shape[2] * w.shape[3]
        sd = math.sqrt(2 / fan_out)
        assert w.std().item() == pytest.approx(sd, rel=0.06), name  # >= 4,096 weights: ~1% sampling error
        assert abs(w.mean().item()) < 5 * sd / math.sqrt(w.numel()), name
    # the replaced 3x3 stem keeps PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for name, m in (convs[0], ("fc", model.fc)):
        w = m.weight.detach().double()
        bound = 1 / math.sqrt(w[0].numel())
        assert w.abs().max().item() <= bound, name
        assert w.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.06), name
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 53
    for m in bns:
        assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
        assert torch.all(m.running_mean == 0) and torch.all(m.running_var == 1)
    # PyTorch's default for a 3x3 64->64 conv would be 2.4x smaller: the kaiming init is in place
    w = model.layer1[0].conv2.weight.detach()
    assert w.std().item() / (1 / math.sqrt(3 * 64 * 9)) == pytest.approx(math.sqrt(2 * 3 * 64 * 9 / (64 * 9)),
                                                                         rel=0.06)
