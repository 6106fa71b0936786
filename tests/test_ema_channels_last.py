"""The EMA of a channels_last model (issue 22, point 5): its update stays one fused copy per dtype
group on CUDA, which needs every destination view to have its source's strides, and it averages,
records and resumes exactly as the EMA of the same model in the default layout."""

import copy

import torch

from dyn.train.ema import EMA, flatten_state
from dyn.train.models import build_model


def models():
    torch.manual_seed(0)
    plain = build_model("resnet20", 10)
    cl = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    assert any(p.dim() == 4 and not p.is_contiguous() for p in cl.parameters())  # the layout took
    return plain, cl


def mismatched(ema):
    return [(v.shape, v.stride(), s.stride()) for g in ema._groups for v, s in zip(g.views, g.sources)
            if v.stride() != s.stride()]


def test_every_staging_view_has_its_sources_strides():
    plain, cl = models()
    assert mismatched(EMA(plain, [0.9])) == []
    # before: 19 of 116 pairs (ResNet-20's convolution weights: contiguous views, channels_last
    # sources), so CUDA fell back to a copy kernel per tensor instead of one fused copy
    assert mismatched(EMA(cl, [0.9, 0.99])) == []


def perturb(models_, step):
    g = torch.Generator().manual_seed(step)
    with torch.no_grad():
        noise = [torch.randn(p.shape, generator=g) for p in models_[0].parameters()]
        for m in models_:
            for p, n in zip(m.parameters(), noise):
                p.add_(n * 0.01)
            for b in m.buffers():
                if b.is_floating_point():
                    b.mul_(1.01)
                else:
                    b.add_(1)


def test_channels_last_ema_averages_records_and_resumes_as_the_plain_one():
    plain, cl = models()
    decays = [0.9, 0.999]
    a, b = EMA(plain, decays), EMA(cl, decays)
    for step in range(3):
        perturb([plain, cl], step)
        a.update()
        b.update()
    for k in range(len(decays)):
        for (name, x), y in zip(a.state_dict_for(k).items(), b.state_dict_for(k).values()):
            assert torch.equal(x, y), name
        assert torch.equal(a.flat_params(k), b.flat_params(k))  # what the recorder writes
        assert torch.equal(a.flat_buffers(k), b.flat_buffers(k))
        assert torch.equal(b.flat_params(k), flatten_state(b.state_dict_for(k), b.table)[0])
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa["storage"][d], sb["storage"][d]) for d in sa["storage"])
    # a resume state of either layout loads into the other
    _, cl2 = models()
    c = EMA(cl2, decays)
    c.load_state_dict(sa)
    assert c.step == 3 and mismatched(c) == []
    for k in range(len(decays)):
        assert torch.equal(c.flat_params(k), a.flat_params(k))
