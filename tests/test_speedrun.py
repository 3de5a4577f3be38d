"""The speedrun network: its whitening layer, identity init, frozen BN
scales, parameter count, and one epoch of its recipe."""

import json

import pytest
import torch

from fastcifar import train
from fastcifar.checkpoint import load_checkpoint
from fastcifar.data.synthetic import write_synthetic_cifar
from fastcifar.models import create_model
from fastcifar.models.speedrun import FrozenScaleBatchNorm2d


def test_parameter_count_is_stated():
    model = create_model("speedrun")
    assert sum(p.numel() for p in model.parameters()) == 1_972_768
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == 1_972_768 - 288 - 2 * 64 - 4 * 256  # whitening filters, BN scales


def test_whitening_is_fitted_from_data_and_decorrelates():
    model = create_model("speedrun")
    # correlated channels: the whitened 2x2 patches must come out with unit covariance
    base = torch.randn(200, 1, 32, 32)
    images = torch.cat([base, 0.8 * base + 0.2 * torch.randn_like(base),
                        torch.randn(200, 1, 32, 32)], 1)
    before = model.whiten.weight.clone()
    model.fit_to_data(images)
    assert not torch.equal(before, model.whiten.weight)
    out = torch.nn.functional.conv2d(images - images.mean((0, 2, 3), keepdim=True),
                                     model.whiten.weight[:12])
    flat = out.permute(0, 2, 3, 1).reshape(-1, 12).double()
    covariance = flat.T @ flat / len(flat)
    torch.testing.assert_close(covariance, torch.eye(12, dtype=torch.double), atol=0.03, rtol=0)
    torch.testing.assert_close(model.whiten.weight[12:], -model.whiten.weight[:12])


def test_identity_init_and_frozen_bn_scales():
    model = create_model("speedrun")
    for group in model.groups:
        x = torch.randn(2, group.conv2.in_channels, 6, 6)
        torch.testing.assert_close(group.conv2(x), x)  # Dirac: conv2 starts as the identity
        x = torch.randn(2, group.conv1.in_channels, 6, 6)  # conv1 widens: identity on the first
        torch.testing.assert_close(group.conv1(x)[:, : x.shape[1]], x)  # channels, as airbench
    norms = [m for m in model.modules() if isinstance(m, FrozenScaleBatchNorm2d)]
    assert len(norms) == 6 and all(not m.weight.requires_grad for m in norms)


def test_recipe_runs_and_keeps_the_frozen_parts_frozen(tmp_path):
    write_synthetic_cifar(tmp_path / "data", n_train=256, n_test=64, seed=0)
    out = tmp_path / "run"
    assert train.main(["--model", "speedrun", "--epochs", "1", "--batch-size", "64",
                       "--data-dir", str(tmp_path / "data"), "--out", str(out), "--quiet",
                       "--device", "cpu", "--no-figures"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["recipe"] == "speedrun" and summary["parameters"] == 1_972_768
    state = load_checkpoint(out / "last.pt")["model"]
    fitted = create_model("speedrun")
    assert not torch.equal(state["whiten.weight"], fitted.whiten.weight)  # fitted to the data
    assert torch.equal(state["groups.0.bn1.weight"], torch.ones(64))  # scale never trained


def test_ablation_switches_undo_each_piece():
    plain = create_model("speedrun", whiten=False, dirac=False, frozen_bn_scale=False)
    assert plain.whiten.weight.requires_grad  # an ordinary learned first layer...
    before = plain.whiten.weight.clone()
    plain.fit_to_data(torch.randn(8, 3, 32, 32))
    assert torch.equal(before, plain.whiten.weight)  # ...that the data does not set
    x = torch.randn(2, 64, 6, 6)
    assert not torch.allclose(plain.groups[1].conv1(x)[:, :64], x, atol=0.1)  # no Dirac init
    norms = [m for m in plain.modules() if isinstance(m, FrozenScaleBatchNorm2d)]
    assert all(m.weight.requires_grad for m in norms)
    assert sum(p.numel() for p in plain.parameters()) == 1_972_768  # same shapes throughout


def test_model_options_reach_the_model_from_the_command_line(tmp_path):
    write_synthetic_cifar(tmp_path / "data", n_train=128, n_test=32, seed=0)
    out = tmp_path / "run"
    assert train.main(["--recipe", "speedrun10", "--epochs", "1", "--batch-size", "64",
                       "--model-options", "whiten=off", "--data-dir", str(tmp_path / "data"),
                       "--out", str(out), "--quiet", "--device", "cpu", "--no-figures"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["recipe"]["model_options"] == "whiten=off"
    state = load_checkpoint(out / "last.pt")
    trained = sum(len(group["params"]) for group in state["optimizer"]["param_groups"])
    assert trained == 1 + 6 + 6 + 1  # the learned first conv, six convs, six BN shifts, the head
    assert state["config"]["recipe"]["model_options"] == "whiten=off"


def test_bad_model_options_are_rejected_before_training(capsys):
    with pytest.raises(SystemExit) as exit_:
        train.main(["--recipe", "speedrun10", "--model-options", "whitening=off"])
    assert exit_.value.code == 2
    assert "takes no option ['whitening']" in capsys.readouterr().err
