import math

import pytest
import torch
import torch.nn as nn

from dyn.train.models import MODELS, BasicBlock, build_model, resnet, resnet50_cifar


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "name, count",
    [("resnet20", 269_722), ("resnet32", 464_154), ("resnet44", 658_586),
     ("resnet56", 853_018), ("resnet110", 1_727_962), ("resnet50", 23_520_842)],
)
def test_parameter_counts_match_the_paper(name, count):
    assert n_params(build_model(name, num_classes=10)) == count


def test_resnet20_has_20_weighted_layers_and_the_akamaster_names():
    model = resnet(20)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(convs) + len(linears) == 20
    keys = model.state_dict().keys()
    for key in ["conv1.weight", "bn1.running_mean", "layer1.0.conv1.weight",
                "layer3.2.bn2.num_batches_tracked", "linear.weight", "linear.bias"]:
        assert key in keys


def test_parameter_count_by_hand_for_resnet20():
    # stem conv + bn, then per stage: first block (maybe changing channels) + n-1 blocks, fc
    def block(cin, cout):
        return 9 * cin * cout + 9 * cout * cout + 4 * cout  # two convs, two bns (weight + bias)
    n = 3
    total = 9 * 3 * 16 + 2 * 16
    for cin, cout in [(16, 16), (16, 32), (32, 64)]:
        total += block(cin, cout) + (n - 1) * block(cout, cout)
    total += 64 * 10 + 10
    assert total == 269_722 == n_params(resnet(20))


def test_option_a_shortcut_subsamples_and_zero_pads_channels():
    block = BasicBlock(4, 8, stride=2)
    x = torch.arange(2 * 4 * 5 * 5, dtype=torch.float32).reshape(2, 4, 5, 5)
    got = block.shortcut(x)
    expected = torch.zeros(2, 8, 3, 3)
    for b in range(2):
        for c in range(4):
            for i in range(3):
                for j in range(3):
                    expected[b, c + 2, i, j] = x[b, c, 2 * i, 2 * j]  # planes//4 = 2 zeros each side
    assert torch.equal(got, expected)
    # the shortcut has no parameters: only the two convs and two bns do
    assert n_params(block) == 9 * 4 * 8 + 9 * 8 * 8 + 4 * 8


@pytest.mark.parametrize("size", [7, 8, 32])
def test_any_input_size_channels_and_classes(size):
    model = build_model("resnet20", num_classes=3, in_channels=1)
    out = model(torch.randn(2, 1, size, size))
    assert out.shape == (2, 3)
    out.sum().backward()  # trainable end to end


def test_resnet50_cifar_stem_is_3x3_stride_1_without_max_pool():
    model = resnet50_cifar(num_classes=5, in_channels=1)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert model.conv1.in_channels == 1
    feats = {}
    model.layer1.register_forward_hook(lambda m, i, o: feats.update(layer1=o.shape))
    model.eval()
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 5)
    assert feats["layer1"] == (1, 256, 8, 8)  # no stem downsampling at all


@pytest.mark.parametrize("name", ["resnet20"])  # resnet50: the authors' kaiming init, test_table3_recipe.py
def test_default_pytorch_init_not_kaiming_normal(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=10)
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            # PyTorch's default is kaiming_uniform_(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
            # kaiming_normal_(fan_out) has std sqrt(2/fan_out) and would overshoot this bound.
            fan_in = m.weight[0].numel()
            bound = 1 / math.sqrt(fan_in)
            assert m.weight.abs().max() <= bound
            assert m.weight.abs().max() > 0.9 * bound
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)


def test_unknown_model_and_bad_depth_are_helpful_errors():
    with pytest.raises(ValueError, match="resnet20.*resnet50"):
        build_model("resnet18", 10)
    with pytest.raises(ValueError, match="6n\\+2"):
        resnet(21)
    assert set(MODELS) == {"resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet50"}
