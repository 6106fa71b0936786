import io

import pytest
import torch
import torch.nn as nn
from torch.utils._python_dispatch import TorchDispatchMode

from dyn.train.ema import EMA, ema_name, flatten_state, param_table, unflatten_state
from dyn.train.models import resnet

from helpers import TableRow

PAPER_DECAYS = [0.9, 0.99, 0.999, 0.9995, 0.9997]


def tiny_resnet(seed=0):
    torch.manual_seed(seed)
    return resnet(20, num_classes=4)


def sgd_steps(model, n, seed=1, after_step=None):
    """n real SGD steps on random 8x8 inputs, BN in train mode so its running stats move."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    model.train()
    for _ in range(n):
        x = torch.randn(8, 3, 8, 8, generator=gen)
        y = torch.randint(0, 4, (8,), generator=gen)
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if after_step:
            after_step()


def test_names_round_trip_the_decay():
    assert [ema_name(d) for d in PAPER_DECAYS] == \
        ["ema-0.9", "ema-0.99", "ema-0.999", "ema-0.9995", "ema-0.9997"]
    assert ema_name(0.9999999) == "ema-0.9999999"  # f"{d:g}" would say ema-1
    assert EMA(nn.Linear(2, 2), PAPER_DECAYS).names == tuple(ema_name(d) for d in PAPER_DECAYS)
    with pytest.raises(ValueError, match="repeat"):
        EMA(nn.Linear(2, 2), [0.9, 0.9])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        EMA(nn.Linear(2, 2), [1.5])


def ema_beside_the_hand_formula(model, decays=(0.5, 0.9), steps=4):
    """(EMA of `model`, its states by hand in float64 over the whole state) after `steps` SGD steps."""
    ema = EMA(model, list(decays))
    ref = [{k: v.double().clone() for k, v in model.state_dict().items()} for _ in decays]

    def by_hand():
        for d, r in zip(decays, ref):
            for k, v in model.state_dict().items():
                r[k] = d * r[k] + (1 - d) * v.double() if v.is_floating_point() else v.double().clone()

    sgd_steps(model, steps, after_step=lambda: (ema.update(), by_hand()))
    return ema, ref


def test_ema_matches_the_formula_by_hand_including_bn_buffers():
    model = tiny_resnet()
    ema, ref = ema_beside_the_hand_formula(model)
    live = model.state_dict()
    for k, r in enumerate(ref):
        got = ema.state_dict_for(k)
        assert list(got) == list(live)
        for name, v in got.items():
            assert v.dtype == live[name].dtype and v.shape == live[name].shape
            torch.testing.assert_close(v.double(), r[name], rtol=1e-5, atol=1e-6, msg=name)
        # the EMA moved away from the initial weights but not all the way to SGD's
        assert not torch.allclose(got["layer1.0.bn1.running_var"], live["layer1.0.bn1.running_var"])
        assert not torch.allclose(got["conv1.weight"], live["conv1.weight"])
        assert got["layer1.0.bn1.num_batches_tracked"].item() == 4  # copied, not averaged
    assert ema.step == 4


def test_ema_starts_as_a_copy_of_the_initial_weights_and_does_not_alias_them():
    model = tiny_resnet()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    ema = EMA(model, [0.99])
    sgd_steps(model, 1)  # no ema.update(): the EMA must not follow the model by aliasing
    for name, v in ema.state_dict_for(0).items():
        assert torch.equal(v, init[name]), name


def test_several_decays_at_once_equal_separate_single_decay_emas():
    model = tiny_resnet()
    together = EMA(model, [0.3, 0.9, 0.99])
    alone = [EMA(model, [d]) for d in (0.3, 0.9, 0.99)]
    sgd_steps(model, 3, after_step=lambda: [e.update() for e in [together, *alone]])
    for k, single in enumerate(alone):
        for (n1, a), (n2, b) in zip(together.state_dict_for(k).items(), single.state_dict_for(0).items()):
            assert n1 == n2 and torch.equal(a, b), n1


def test_warmup_follows_timm():
    model = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema, expected = EMA(model, [0.99, 0.05], warmup=True), [0.0, 0.0]
    for step in range(5):
        with torch.no_grad():
            model.weight.fill_(float(step + 1))
        ema.update()
        for k, d in enumerate((0.99, 0.05)):
            eff = min(d, (1 + step) / (10 + step))
            expected[k] = eff * expected[k] + (1 - eff) * (step + 1)
            assert ema.state_dict_for(k)["weight"].item() == pytest.approx(expected[k], rel=1e-6)


class CountOps(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def ops_per_update(num_decays, warmup=False):
    model = tiny_resnet()
    ema = EMA(model, [0.5 + 0.04 * i for i in range(num_decays)], warmup=warmup)
    with CountOps() as counter:
        ema.update()
    return counter.ops


def test_update_is_a_few_fused_ops_whatever_the_number_of_decays():
    one, ten = ops_per_update(1), ops_per_update(10)
    assert one == ten
    assert len(one) <= 4, one  # ResNet-20 has 65 state tensors: a per-tensor loop would show
    assert len(ops_per_update(10, warmup=True)) <= 5


def test_param_table_and_flatten_by_hand():
    model = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    table = param_table(model)
    assert table == [
        TableRow("0.weight", (3, 2), 0, 6, "param", "float32"),
        TableRow("0.bias", (3,), 6, 3, "param", "float32"),
        TableRow("1.weight", (3,), 9, 3, "param", "float32"),
        TableRow("1.bias", (3,), 12, 3, "param", "float32"),
        TableRow("1.running_mean", (3,), 0, 3, "buffer", "float32"),
        TableRow("1.running_var", (3,), 3, 3, "buffer", "float32"),
        TableRow("1.num_batches_tracked", (), 6, 1, "buffer", "int64"),
    ]
    model[1].num_batches_tracked.fill_(7)
    params, buffers = flatten_state(model)
    assert params.dtype == torch.float32 and buffers.dtype == torch.float64
    assert torch.equal(params[:6], model[0].weight.detach().reshape(-1))
    assert torch.equal(params[12:], model[1].bias.detach())
    assert buffers.tolist() == [0, 0, 0, 1, 1, 1, 7]


def test_flatten_unflatten_round_trip_bit_exact():
    model = tiny_resnet()
    sgd_steps(model, 2)
    table = param_table(model)
    params, buffers = flatten_state(model)
    assert params.numel() == 269_722 - 64 * 10 - 10 + 64 * 4 + 4  # resnet20 with 4 classes
    back = unflatten_state(params.numpy(), buffers.numpy(), table)  # numpy in, as from a run file
    live = model.state_dict()
    assert list(back) == list(live)
    for name, v in live.items():
        assert back[name].dtype == v.dtype and torch.equal(back[name], v), name
    with pytest.raises(TypeError, match="param_table"):
        flatten_state(live)
    with pytest.raises(ValueError, match="params"):
        unflatten_state(params[:-1], buffers, table)


def test_flat_params_and_buffers_of_each_ema_network():
    model = tiny_resnet()
    ema = EMA(model, [0.5, 0.9])
    sgd_steps(model, 2, after_step=ema.update)
    for k in range(2):
        p, b = flatten_state(ema.state_dict_for(k), ema.table)
        assert ema.flat_params(k).is_contiguous() and torch.equal(ema.flat_params(k), p)
        assert ema.flat_buffers(k).dtype == torch.float64 and torch.equal(ema.flat_buffers(k), b)
    assert not torch.equal(ema.flat_params(0), ema.flat_params(1))


def test_load_into_evaluates_the_ema_network():
    model = tiny_resnet()
    ema = EMA(model, [0.5, 0.9])
    sgd_steps(model, 3, after_step=ema.update)
    x = torch.randn(5, 3, 8, 8)
    evaluator = ema.load_into(tiny_resnet(seed=7).eval(), 1)
    for name, v in evaluator.state_dict().items():
        assert torch.equal(v, ema.state_dict_for(1)[name])
    model.eval()
    with torch.no_grad():
        functional = torch.func.functional_call(model, dict(ema.state_dict_for(1)), (x,))
        assert torch.allclose(evaluator(x), functional)
        assert not torch.allclose(evaluator(x), model(x))


def test_state_dict_resumes_bit_exactly():
    model = tiny_resnet()
    ema = EMA(model, [0.9, 0.999], warmup=True)
    sgd_steps(model, 2, after_step=ema.update)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "ema": ema.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    sgd_steps(model, 2, seed=5, after_step=ema.update)  # the uninterrupted run

    resumed_model = tiny_resnet(seed=3)
    resumed_model.load_state_dict(saved["model"])
    resumed = EMA(resumed_model, [0.9, 0.999])
    resumed.load_state_dict(saved["ema"])
    assert resumed.step == 2 and resumed.warmup
    sgd_steps(resumed_model, 2, seed=5, after_step=resumed.update)
    for k in range(2):
        for (name, a), b in zip(ema.state_dict_for(k).items(), resumed.state_dict_for(k).values()):
            assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="decays differ"):
        EMA(resumed_model, [0.9]).load_state_dict(saved["ema"])


def test_mixed_dtypes_are_grouped_and_keep_state_dict_order():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3).double(), nn.BatchNorm1d(3), nn.Linear(3, 1))
    ema = EMA(model, [0.5, 0.75])
    init = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_var.fill_(3.0)
        model[1].num_batches_tracked.fill_(9)
    ema.update()
    live = model.state_dict()
    for k, d in enumerate([0.5, 0.75]):
        got = ema.state_dict_for(k)
        assert list(got) == list(live)
        for name, v in got.items():
            assert v.dtype == live[name].dtype, name
            want = d * init[name] + (1 - d) * live[name] if v.is_floating_point() else live[name]
            assert torch.allclose(v, want.to(v.dtype)), name
        p, b = flatten_state(got, ema.table)
        assert torch.equal(ema.flat_params(k), p) and torch.equal(ema.flat_buffers(k), b)
    assert ema.state_dict_for(1)["0.weight"].dtype == torch.float64
