"""Muon (fastcifar.muon): the orthogonalisation, its step, SGD's step on the other groups, and
how the recipe's muon_lr splits a model's parameters."""

import pytest
import torch
from torch import nn

from fastcifar.engine import make_optimizer
from fastcifar.models import create_model, parse_model_options
from fastcifar.muon import Muon, orthogonalize
from fastcifar.recipes import RecipeError, get_recipe


@pytest.mark.parametrize("shape", [(64, 576), (576, 64), (10, 10), (256, 2304)])
def test_orthogonalize_evens_out_the_singular_values(shape):
    torch.manual_seed(0)
    # singular values spread over three orders of magnitude
    u, _ = torch.linalg.qr(torch.randn(shape[0], min(shape)))
    v, _ = torch.linalg.qr(torch.randn(shape[1], min(shape)))
    s = torch.logspace(-3, 0, min(shape))
    g = u @ torch.diag(s) @ v.T
    o = orthogonalize(g)
    assert o.shape == g.shape and o.dtype == g.dtype
    # the same singular vectors: in g's singular bases, o is (nearly) diagonal
    in_bases = u.T @ o @ v
    values = in_bases.diagonal()
    assert (in_bases - torch.diag(values)).norm() < 0.05 * in_bases.norm()
    # and the values pressed together: Jordan's quintic puts them in roughly [0.5, 1.5] x a
    # scale, the smallest ones (below its reach in 3 steps) excepted
    assert values.max() < 1.3
    top = values[s >= s.max() / 30]  # a 30-fold spread in g ...
    assert top.min() > 0.25 and top.max() / top.min() < 5  # ... under 5-fold in o


def test_orthogonalize_takes_matrices_only():
    with pytest.raises(ValueError, match="2-D"):
        orthogonalize(torch.randn(4, 3, 3, 3))


def _sgd_and_muon(params_a, params_b, **kwargs):
    return torch.optim.SGD(params_a, **kwargs), Muon(params_b, **kwargs)


@pytest.mark.parametrize("kwargs", [dict(lr=0.1), dict(lr=0.1, momentum=0.9),
                                    dict(lr=0.05, momentum=0.85, nesterov=True, weight_decay=0.01)])
def test_groups_without_muon_step_exactly_as_sgd(kwargs):
    torch.manual_seed(0)
    a = [torch.randn(5, 3, requires_grad=True), torch.randn(7, requires_grad=True)]
    b = [p.detach().clone().requires_grad_() for p in a]
    sgd, muon = _sgd_and_muon(a, b, **kwargs)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in a]
        for params, opt in ((a, sgd), (b, muon)):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
        for pa, pb in zip(a, b):
            torch.testing.assert_close(pb, pa, rtol=1e-6, atol=1e-7)


def test_muon_step_renormalizes_then_takes_the_orthogonalized_nesterov_step():
    torch.manual_seed(0)
    w = torch.randn(8, 4, 3, 3) * 3
    p = w.clone().requires_grad_()
    opt = Muon([{"params": [p], "muon": True}], lr=0.2, momentum=0.6, nesterov=True)
    g1, g2 = torch.randn_like(w), torch.randn_like(w)
    expected, buf = w.clone(), None
    for g in (g1, g2):
        p.grad = g.clone()
        opt.step()
        buf = g.clone() if buf is None else 0.6 * buf + g
        direction = g + 0.6 * buf
        expected = expected * (8 ** 0.5 / expected.norm())
        expected = expected - 0.2 * orthogonalize(direction.reshape(8, -1)).view_as(w)
        torch.testing.assert_close(p.detach(), expected, rtol=1e-5, atol=1e-6)
    # the norm before each step is fixed, so the weights' scale cannot drift far
    assert abs(p.norm() - 8 ** 0.5) < 0.2 * 4


def test_muon_groups_refuse_decay_and_flat_parameters():
    with pytest.raises(ValueError, match="weight decay"):
        Muon([{"params": [torch.zeros(4, 4, requires_grad=True)], "muon": True}], lr=0.1,
             weight_decay=0.1)
    with pytest.raises(ValueError, match="2\\+ dims"):
        Muon([{"params": [torch.zeros(4, requires_grad=True)], "muon": True}], lr=0.1)
    with pytest.raises(ValueError, match="Nesterov"):
        Muon([torch.zeros(4, requires_grad=True)], lr=0.1, nesterov=True)


def test_muon_recipe_puts_every_filter_in_muon_and_the_rest_in_sgd():
    recipe = get_recipe("muon8")
    model = create_model("speedrun", **parse_model_options(recipe.model_options))
    optimizer = make_optimizer(model, recipe)
    assert isinstance(optimizer, Muon)
    weights, shifts, filters = optimizer.param_groups
    trained = [p for p in model.parameters() if p.requires_grad]
    grouped = [p for g in optimizer.param_groups for p in g["params"]]
    assert len(grouped) == len(trained) and {id(p) for p in grouped} == {id(p) for p in trained}
    assert filters["muon"] and not weights["muon"] and not shifts["muon"]
    assert all(p.ndim == 4 for p in filters["params"]) and len(filters["params"]) == 6
    assert filters["lr"] == recipe.muon_lr and filters["momentum"] == recipe.muon_momentum
    assert filters["weight_decay"] == 0.0
    assert [p is model.head.weight for p in weights["params"]] == [True]
    # airbench94_muon: the whitening bias trains at the shifts' lr, not the head's
    assert any(p is model.whiten.bias for p in shifts["params"])
    assert shifts["lr"] == pytest.approx(recipe.lr * recipe.norm_bias_lr_scale)
    # as much decay a step off the shifts and off the head
    assert shifts["lr"] * shifts["weight_decay"] == pytest.approx(
        weights["lr"] * weights["weight_decay"])
    sgd = make_optimizer(model, recipe.replace(muon_lr=0.0))
    assert type(sgd) is torch.optim.SGD and len(sgd.param_groups) == 2


def test_muon_recipe_trains_a_few_steps():
    torch.manual_seed(0)
    recipe = get_recipe("muon8")
    model = create_model("speedrun", **parse_model_options(recipe.model_options))
    optimizer = make_optimizer(model, recipe)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    losses = []
    for _ in range(5):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("field,value", [("muon_lr", -0.1), ("muon_momentum", 1.0)])
def test_bad_muon_values_are_refused(field, value):
    with pytest.raises(RecipeError, match=field):
        get_recipe("muon8").replace(**{field: value})


def test_muon_needs_its_own_group_for_the_shifts():
    with pytest.raises(RecipeError, match="no_decay_norm_bias"):
        get_recipe("row1_cnn").replace(muon_lr=0.1)
