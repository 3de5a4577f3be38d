"""What the speedrun recipe borrows from airbench94: Lookahead, the schedule's ends,
the whitening bias's first epochs, BatchNorm momentum and the reflect-padded crop, each against
a reference computed here, plus the race script's bookkeeping."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastcifar.augment import AugmentSpec, get_preset, identity_params, make_loader
from fastcifar.augment.torch_ops import to_float_nchw, warp
from fastcifar.data.synthetic import make_arrays
from fastcifar.ema import ModelEMA
from fastcifar.engine import make_optimizer, make_schedules
from fastcifar.models import create_model
from fastcifar.recipes import RecipeError, get_recipe

# ---------------------------------------------------------------- the reflect-padded crop


@pytest.mark.parametrize("dy,dx", [(-2, -2), (2, 1), (0, -1), (1, 2), (-2, 0)])
def test_reflect_crop_is_fpad_reflect_then_crop(dy, dx):
    array, _ = make_arrays(4, seed=5)
    x = to_float_nchw(torch.from_numpy(array)).contiguous()
    spec = get_preset("altflip_crop2_reflect")
    p = identity_params(4, 32, 32)
    p.crop[:] = torch.tensor([float(dy), float(dx)])
    ours = warp(x, p, spec)
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    ref = padded[..., 2 + dy: 2 + dy + 32, 2 + dx: 2 + dx + 32]
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    if dy or dx:  # and unlike the zero fill
        assert not torch.allclose(ours, warp(x, p, get_preset("altflip_crop2")))


def test_crop_fill_is_validated_and_dali_refuses_reflect():
    with pytest.raises(ValueError, match="crop_fill"):
        AugmentSpec(crop_padding=2, crop_fill="edge")
    array, labels = make_arrays(8, seed=1)
    pytest.importorskip("nvidia.dali")
    with pytest.raises(ValueError, match="zeros only"):
        make_loader(torch.from_numpy(array), torch.from_numpy(labels),
                    get_preset("altflip_crop2_reflect"), 4, train=True, backend="dali")


# ---------------------------------------------------------------- Lookahead


def lookahead_reference(model, steps, update_at, decay, total):
    """airbench's rule, written out: after each step counted in ``update_at``,
    ema <- lerp(ema, live, 1 - a) and live <- ema, with a = decay * (done / total)^3; after the
    last step live <- ema."""
    ema = copy.deepcopy(model.state_dict())
    live = copy.deepcopy(model.state_dict())
    for done, delta in enumerate(steps, start=1):
        for k in live:
            live[k] = live[k] + delta[k]
        if done in update_at:
            a = decay * (done / total) ** 3
            for k in live:
                ema[k] = ema[k] + (1 - a) * (live[k] - ema[k])
                live[k] = ema[k].clone()
        if done >= total:
            live = {k: v.clone() for k, v in ema.items()}
    return live


@pytest.mark.parametrize("epoch_len, total, update_at", [
    (10, 20, {5, 10, 15, 20}),  # epochs a multiple of the cadence
    (7, 13, {5, 12}),  # the cadence restarts each epoch; the run ends between two updates
])
def test_lookahead_pulls_back_on_a_cubic_ramp_and_ends_on_the_average(epoch_len, total,
                                                                       update_at):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)).double()
    steps = [{k: torch.randn_like(v) if v.is_floating_point() else torch.zeros_like(v)
              for k, v in model.state_dict().items()} for _ in range(total)]
    want = lookahead_reference(model, steps, update_at, 0.8, total)
    ema = ModelEMA(model, 0.8, every=5, lookahead=True, total_steps=total)
    for g, delta in enumerate(steps):
        with torch.no_grad():
            for k, v in model.state_dict().items():
                if v.is_floating_point():
                    v.add_(delta[k])
        ema.update(model, g % epoch_len, global_step=g)
    assert ema.updates == len(update_at)
    for k, v in model.state_dict().items():
        if v.is_floating_point():
            torch.testing.assert_close(v, want[k])
            torch.testing.assert_close(v, ema.module.state_dict()[k])


def test_lookahead_needs_its_ramp_and_the_recipe_needs_an_ema():
    model = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="total_steps"):
        ModelEMA(model, 0.8, lookahead=True)
    with pytest.raises(ValueError, match="global step"):
        ModelEMA(model, 0.8, lookahead=True, total_steps=10).update(model, 4)
    with pytest.raises(RecipeError, match="ema_decay"):
        get_recipe("speedrun10").replace(ema_decay=0.0, lookahead=True)


# ---------------------------------------------------------------- the schedule's ends


def test_onecycle_starts_and_ends_where_the_recipe_says():
    recipe = get_recipe("speedrun10").replace(epochs=2, warmup_fraction=0.25, warmup_start=0.2,
                                              final_lr_fraction=0.07)
    model = nn.Linear(2, 2)
    optimizer = make_optimizer(model, recipe)
    _, schedule = make_schedules(optimizer, recipe, steps_per_epoch=10)
    lambdas = [schedule.lr_lambdas[0](s) for s in range(21)]
    assert lambdas[0] == pytest.approx(0.2)
    assert lambdas[5] == pytest.approx(1.0)  # the peak at 25 % of 20 steps
    assert lambdas[20] == pytest.approx(0.07)
    assert lambdas[10] == pytest.approx(0.07 + 0.93 * 10 / 15)
    default = get_recipe("fast").replace(epochs=2)
    _, schedule = make_schedules(make_optimizer(model, default), default, steps_per_epoch=10)
    assert schedule.lr_lambdas[0](0) == pytest.approx(0.1)
    assert schedule.lr_lambdas[0](20) == 0.0


# ---------------------------------------------------------------- the speedrun net's options


def test_whitening_bias_trains_at_the_weights_lr_for_its_epochs_only():
    model = create_model("speedrun", whiten_bias_epochs=3)
    recipe = get_recipe("speedrun10")
    optimizer = make_optimizer(model, recipe)
    weights, norm_bias = optimizer.param_groups
    assert any(p is model.whiten.bias for p in weights["params"])
    assert not any(p is model.whiten.bias for p in norm_bias["params"])
    assert norm_bias["lr"] == recipe.lr * recipe.norm_bias_lr_scale
    assert all(p.ndim == 1 for p in norm_bias["params"])
    model.start_epoch(2)
    assert model.whiten.bias.requires_grad
    model.start_epoch(3)
    assert not model.whiten.bias.requires_grad
    assert create_model("speedrun").whiten.bias is None  # off by default


def test_frozen_whitening_bias_is_left_alone_by_sgd():
    model = create_model("speedrun", whiten_bias_epochs=1)
    optimizer = make_optimizer(model, get_recipe("speedrun10"))
    x = torch.randn(4, 3, 32, 32)
    for epoch in range(2):
        model.start_epoch(epoch)
        before = model.whiten.bias.detach().clone()
        optimizer.zero_grad(set_to_none=True)
        model(x).sum().backward()
        optimizer.step()
        moved = not torch.equal(before, model.whiten.bias.detach())
        assert moved == (epoch == 0)


def test_bn_momentum_reaches_every_batchnorm_and_is_checked():
    model = create_model("speedrun", bn_momentum=0.4)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == 6 and all(m.momentum == 0.4 for m in norms)
    with pytest.raises(ValueError, match="bn_momentum"):
        create_model("speedrun", bn_momentum=0.0)


def test_cli_refuses_the_reflect_crop_with_dali_before_any_work(tmp_path, capsys):
    from fastcifar import train

    with pytest.raises(SystemExit) as stop:  # argparse's usage error
        train.main(["--recipe", "speedrun10", "--augment", "altflip_crop2_reflect",
                    "--loader", "dali", "--out", str(tmp_path / "run"),
                    "--data-dir", str(tmp_path / "nowhere"), "--no-download"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "needs --loader torch" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def test_norm_bias_step_decay_takes_as_much_a_step_as_off_the_weights():
    recipe = get_recipe("speedrun10").replace(norm_bias_step_decay=True)
    model = create_model("speedrun")
    weights, norm_bias = make_optimizer(model, recipe).param_groups
    assert weights["lr"] * weights["weight_decay"] == pytest.approx(
        norm_bias["lr"] * norm_bias["weight_decay"])
    assert norm_bias["lr"] == 64 * weights["lr"]
    off = make_optimizer(model, get_recipe("speedrun10")).param_groups[1]
    assert off["weight_decay"] == 0.0
    with pytest.raises(RecipeError, match="norm_bias_step_decay"):
        get_recipe("row1_cnn").replace(norm_bias_step_decay=True)
