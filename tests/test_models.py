"""The Table-1 networks: exact parameter counts, shapes, channels_last, the BN+ReLU seam."""

import warnings

import pytest
import torch
from torch import nn

from fastcifar.models import (
    BatchNormReLU2d,
    create_model,
    list_models,
    norms,
    parse_model_options,
)

# docs/architectures.md
PARAMS = {
    "cnn": 1_838_346,
    "resnet_hybrid": 8_886_538,
    "resnet_avgpool": 4_954_378,
    "resnet_maxpool": 5_159_146,
    "resnet_final": 5_159_146,
}


def test_registry_lists_the_table1_networks():
    assert set(PARAMS) <= set(list_models())
    assert list_models("resnet_*") == sorted(n for n in PARAMS if n.startswith("resnet_"))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_count_is_exact(name):
    model = create_model(name)
    assert sum(p.numel() for p in model.parameters()) == PARAMS[name]


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_forward_backward_and_channels_last(name):
    model = create_model(name).train()
    x = torch.randn(4, 3, 32, 32)
    out = model(x)
    assert out.shape == (4, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    # the same weights in channels_last on channels_last input give the same logits
    model.eval()
    want = model(x)
    model = model.to(memory_format=torch.channels_last)
    got = model(x.contiguous(memory_format=torch.channels_last))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_resnet_final_stage_shapes():
    feats = create_model("resnet_final").features
    x, sizes = torch.randn(2, 3, 32, 32), []
    for layer in feats:
        x = layer(x)
        sizes.append(tuple(x.shape[1:]))
    assert sizes == [(32, 32, 32), (64, 32, 32), (128, 32, 32), (128, 16, 16), (256, 16, 16),
                     (256, 8, 8), (512, 8, 8), (512, 1, 1)]


def test_shortcut_has_no_batchnorm():
    block = create_model("resnet_final").features[0]
    assert isinstance(block.shortcut, nn.Conv2d) and block.shortcut.kernel_size == (1, 1)
    assert isinstance(create_model("resnet_final").features[2].shortcut, nn.Conv2d)
    bns = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2


def test_bn_relu_seam_keeps_batchnorm_state_dict():
    fused, plain = BatchNormReLU2d(7), nn.BatchNorm2d(7)
    assert fused.state_dict().keys() == plain.state_dict().keys()
    plain.weight.data.uniform_()
    plain.bias.data.normal_()
    fused.load_state_dict(plain.state_dict())
    x = torch.randn(3, 7, 5, 5)
    torch.testing.assert_close(fused(x), torch.relu(plain(x)))


def test_unknown_names_list_the_choices():
    with pytest.raises(ValueError, match="unknown model 'resnet9'.*resnet_final"):
        create_model("resnet9")
    with pytest.raises(ValueError, match="unknown bn_relu 'cuda'.*eager"):
        create_model("cnn", bn_relu="cuda")


def test_model_options_parse_and_unknown_ones_are_named():
    assert parse_model_options("") == {}
    assert parse_model_options("whiten=off, dirac=On,width=2,scale=0.5,act=gelu") == {
        "whiten": False, "dirac": True, "width": 2, "scale": 0.5, "act": "gelu"}
    with pytest.raises(ValueError, match="not key=value"):
        parse_model_options("whiten")
    with pytest.raises(ValueError, match=r"takes no option \['depth'\]; its options: num_classes"):
        create_model("cnn", depth=3)


@pytest.mark.parametrize("capability, want", [((9, 0), "triton"), ((8, 0), "triton"),
                                              ((8, 6), "triton"), ((7, 5), "eager"),
                                              ((7, 0), "eager")])
def test_auto_bn_relu_picks_triton_only_where_it_is_tested(monkeypatch, capability, want):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(norms, "triton_usable", lambda: True)
    choice, reason = norms.auto_bn_relu()
    assert choice == want and f"{capability[0]}.{capability[1]}" in reason


def test_auto_bn_relu_on_an_old_gpu_is_eager_and_says_why_once(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(norms, "triton_usable", lambda: True)
    norms._note_once.cache_clear()
    with pytest.warns(UserWarning, match="eager BatchNorm.*7.5.*8.0 and later"):
        assert norms.resolve_bn_relu("auto") is norms.EAGER
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a second model on the same GPU: no second note
        assert norms.resolve_bn_relu("auto") is norms.EAGER
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert norms.auto_bn_relu() == ("eager", "no CUDA device")
