"""The Triton BatchNorm+ReLU kernels against a float64 PyTorch reference.

On the CPU the kernels run under Triton's interpreter: scripts/test.sh sets TRITON_INTERPRET=1
before anything imports triton. Sizes stay small (the interpreter pays per program). On a GPU the
same tests run on CUDA tensors, plus the ``gpu``-marked ones.
"""

import math

import pytest
import torch

pytest.importorskip("triton")

from fastcifar.kernels import autograd as A  # noqa: E402
from fastcifar.kernels import bn_relu as K  # noqa: E402
from fastcifar.kernels import reference as R  # noqa: E402
from fastcifar.models import create_model  # noqa: E402
from fastcifar.models.layers import BatchNormAddReLU2d, BatchNormReLU2d  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
pytestmark = pytest.mark.skipif(
    not (CUDA or K.INTERPRETED),
    reason="needs CUDA, or TRITON_INTERPRET=1 set before import (./scripts/test.sh sets it)")


def gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))



# (atol, rtol) against float64 maths on the same input values. The kernels compute in fp32, so
# the error is fp32 rounding (a few 1e-7 over these sizes) plus rounding the result to the
# storage dtype: fp16 keeps 11 significant bits (2**-11 ~ 5e-4 relative), bf16 8 (2**-8 ~ 4e-3,
# and the interpreter truncates rather than rounds, so up to one full ulp).
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1e-2, 1e-2)}
# dweight and dbias are fp32 sums whatever the input dtype: only fp32 rounding (and the dtype of
# dx's inputs, which are exact in float64) separates them from the reference.
PARAM_TOL = (1e-4, 1e-4)

# (N, C, H, W): odd sizes; C not a power of two; N*H*W not a multiple of any block size;
# resnet_final's channel counts at tiny spatial sizes; H = W = 1 (both layouts coincide).
SHAPES = [(3, 37, 5, 7), (2, 32, 3, 3), (2, 128, 2, 3), (2, 512, 2, 2), (5, 3, 1, 1)]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


@pytest.fixture(autouse=True)
def _poison(monkeypatch):
    """Every buffer the launchers allocate starts as NaN, so unwritten elements show."""
    nan = lambda t: t.fill_(math.nan) if t.is_floating_point() else t
    monkeypatch.setattr(K, "_empty", lambda *a, **kw: nan(torch.empty(*a, **kw)))
    monkeypatch.setattr(K, "_empty_like", lambda *a, **kw: nan(torch.empty_like(*a, **kw)))


def make_inputs(shape, dtype, channels_last, residual):
    """Random, never-zero inputs: a shifted, scaled batch (its mean is not 0, its std not 1)."""
    n, c, h, w = shape
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = (torch.randn(shape, device=DEVICE) * 3 + 2).to(dtype).contiguous(memory_format=fmt)
    res = torch.randn(shape, device=DEVICE).to(dtype).contiguous(memory_format=fmt)
    weight = torch.rand(c, device=DEVICE) + 0.5
    bias = torch.randn(c, device=DEVICE)
    running = (torch.randn(c, device=DEVICE), torch.rand(c, device=DEVICE) + 0.5)
    return x, weight, bias, res if residual else None, running


def reference64(x, weight, bias, residual, running, dy, momentum=0.1):
    """Outputs, stats, new running stats and grads in float64 from the same input values."""
    leaves = [t.double().requires_grad_() for t in (x, weight, bias)]
    res = residual.double().requires_grad_() if residual is not None else None
    rm, rv = (t.double() for t in running)
    y = R.bn_relu(*leaves, rm, rv, True, momentum, 1e-5, res)
    y.backward(dy.double())
    mean, invstd, _ = R.batch_stats(x.double())
    grads = [t.grad for t in leaves] + [res.grad if res is not None else None]
    return y.detach(), mean, invstd, (rm, rv), grads


def close(actual, expected, tol, what):
    atol, rtol = tol
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol, msg=what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_forward_and_backward_match_float64(shape, channels_last, dtype, residual):
    x, weight, bias, res, running = make_inputs(shape, dtype, channels_last, residual)
    dy = torch.randn(shape, device=DEVICE).to(dtype)
    y, mean, invstd, new_rm, new_rv = K.bn_relu_forward(x, weight, bias, res, *running, 0.1, 1e-5)
    ref_y, ref_mean, ref_invstd, ref_running, ref_grads = reference64(x, weight, bias, res,
                                                                      running, dy)
    assert y.dtype == dtype and y.stride() == x.stride()
    close(y, ref_y, TOL[dtype], "output")
    # saved stats and running stats are fp32 whatever the input dtype
    close(mean, ref_mean, (1e-5, 1e-5), "saved mean")
    close(invstd, ref_invstd, (1e-5, 1e-5), "saved invstd")
    close(new_rm, ref_running[0], (1e-5, 1e-5), "running mean")
    close(new_rv, ref_running[1], (1e-5, 1e-5), "running var")
    saved_y = y if residual else None  # the residual variant's mask comes from its output
    dx, dw, db, dres = K.bn_relu_backward(dy, x, weight, bias, mean, invstd, saved_y)
    close(dx, ref_grads[0], TOL[dtype], "grad x")
    close(dw, ref_grads[1], PARAM_TOL, "grad weight")
    close(db, ref_grads[2], PARAM_TOL, "grad bias")
    if residual:
        close(dres, ref_grads[3], TOL[dtype], "grad residual")
    else:
        assert dres is None


# Tiny tiles force what the default (big) tiles skip on these small inputs: several programs
# per channel (partial statistics merged in the finalize kernels), several loop iterations per
# program, a partial last row block, partial channel blocks and H*W split over blocks.
@pytest.mark.parametrize("channels_last, tiles", [
    (False, K.Tiles(block_r=2, block_c=4, block_k=8, splits=2)),
    (True, K.Tiles(block_r=16, block_c=4, block_k=1, splits=3)),
], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_small_tiles_split_and_loop(channels_last, tiles, residual):
    shape = (3, 5, 5, 7)
    x, weight, bias, res, running = make_inputs(shape, torch.float32, channels_last, residual)
    dy = torch.randn(shape, device=DEVICE)
    y, mean, invstd, new_rm, new_rv = K.bn_relu_forward(x, weight, bias, res, *running, 0.1, 1e-5,
                                                        tiles=tiles)
    ref_y, ref_mean, ref_invstd, ref_running, ref_grads = reference64(x, weight, bias, res,
                                                                      running, dy)
    tol = TOL[torch.float32]
    for got, want, what in [(y, ref_y, "y"), (mean, ref_mean, "mean"),
                            (invstd, ref_invstd, "invstd"), (new_rm, ref_running[0], "rm"),
                            (new_rv, ref_running[1], "rv")]:
        close(got, want, tol, what)
    grads = K.bn_relu_backward(dy, x, weight, bias, mean, invstd, y if residual else None,
                               tiles=tiles)
    for got, want, what in zip(grads, ref_grads, ["dx", "dweight", "dbias", "dresidual"]):
        if want is not None:
            close(got, want, PARAM_TOL if what in ("dweight", "dbias") else tol, what)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_eval_uses_running_stats(channels_last, dtype, residual):
    x, weight, bias, res, running = make_inputs((3, 37, 5, 7), dtype, channels_last, residual)
    y = K.bn_relu_eval(x, weight, bias, *running, res, 1e-5)
    rm, rv = (t.double() for t in running)
    ref = R.bn_relu(x.double(), weight.double(), bias.double(), rm, rv, False, 0.1, 1e-5,
                    res.double() if residual else None)
    close(y, ref, TOL[dtype], "eval output")


def test_numerically_sound_variance():
    # a large mean and a small spread: E[x^2] - E[x]^2 in fp32 would lose every digit here
    x = (1000 + 0.01 * torch.randn(4, 3, 8, 8, device=DEVICE, dtype=torch.float64)).float()
    ones, zeros = torch.ones(3, device=DEVICE), torch.zeros(3, device=DEVICE)
    _, mean, invstd, _, _ = K.bn_relu_forward(x, ones, zeros)
    _, ref_mean, ref_invstd, _, _ = reference64(x, ones, zeros, None, (zeros, ones),
                                                torch.ones_like(x))
    close(invstd, ref_invstd, (0, 1e-3), "invstd")


def test_launcher_rejects_bad_input():
    w = torch.ones(4, device=DEVICE)
    with pytest.raises(ValueError, match="4-D"):
        K.bn_relu_forward(torch.randn(2, 4, 3, device=DEVICE), w, w)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        K.bn_relu_forward(torch.randn(1, 4, 1, 1, device=DEVICE), w, w)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        K.bn_relu_forward(torch.randn(2, 4, 3, 3, device=DEVICE), w[:3], w)
    with pytest.raises(ValueError, match="NCHW-contiguous or channels_last"):
        K.bn_relu_forward(torch.randn(2, 3, 4, 3, device=DEVICE).transpose(1, 2), w, w)


# --------------------------------------------------------------------------------------------
# Modules and models
# --------------------------------------------------------------------------------------------


def _pair(fused_cls, eager_cls, channels, **kw):
    fused, eager = fused_cls(channels, **kw).to(DEVICE), eager_cls(channels, **kw).to(DEVICE)
    with torch.no_grad():
        fused.weight.uniform_(0.5, 1.5)
        fused.bias.normal_()
    eager.load_state_dict(fused.state_dict())  # same keys as nn.BatchNorm2d
    return fused, eager


@pytest.mark.parametrize("momentum", [0.1, None], ids=["momentum", "cumulative"])
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_module_matches_eager_over_steps(residual, momentum):
    classes = ((A.BatchNormAddReLU2d, BatchNormAddReLU2d) if residual
               else (A.BatchNormReLU2d, BatchNormReLU2d))
    fused, eager = _pair(*classes, 6, momentum=momentum)
    for step in range(3):  # two training steps, then eval: running stats must carry over
        if step == 2:
            fused.eval(), eager.eval()
        x = (torch.randn(2, 6, 3, 5, device=DEVICE) + step).requires_grad_()
        args = [x, torch.randn_like(x).requires_grad_()] if residual else [x]
        outs = []
        for module in (fused, eager):
            for t in args:
                t.grad = None
            module.zero_grad()
            y = module(*args)
            y.backward(torch.cos(y))  # a varied upstream grad
            outs.append([y, *(t.grad for t in args), module.weight.grad, module.bias.grad])
        for got, want in zip(*outs):  # fp32 end to end: fp32 rounding only
            torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
        for key, value in eager.state_dict().items():
            torch.testing.assert_close(fused.state_dict()[key], value, atol=1e-6, rtol=1e-6,
                                       msg=key)


def test_cpu_tensors_fall_back_to_the_reference(monkeypatch):
    # what happens without TRITON_INTERPRET: CPU tensors must never reach a Triton kernel
    monkeypatch.setattr(K, "INTERPRETED", False)
    monkeypatch.setattr(K, "bn_relu_forward", lambda *a, **kw: pytest.fail("kernel called"))
    fused, eager = _pair(A.BatchNormAddReLU2d, BatchNormAddReLU2d, 4)
    fused, eager = fused.cpu(), eager.cpu()
    x, r = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(fused(x, r), eager(x, r), atol=0, rtol=0)
    torch.testing.assert_close(fused.running_var, eager.running_var, atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        K._check(x)


def test_resnet_final_triton_matches_eager():
    torch.manual_seed(0)
    fused = create_model("resnet_final", bn_relu="triton").to(DEVICE)
    eager = create_model("resnet_final", bn_relu="eager").to(DEVICE)
    assert isinstance(fused.features[0].bn1, A.BatchNormReLU2d)
    assert isinstance(fused.features[0].bn2, A.BatchNormAddReLU2d)
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    outs = [model(x) for model in (fused, eager)]
    for out in outs:
        out.logsumexp(1).sum().backward()
    # fp32 throughout; ten BatchNorms and twelve convolutions compound fp32 rounding, and the
    # logits are O(0.1): 1e-4 absolute is ~1e3 fp32 ulps of slack, far below any real bug
    torch.testing.assert_close(outs[0], outs[1], atol=1e-4, rtol=1e-4)
    for (name, p), q in zip(fused.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, atol=1e-4, rtol=1e-3, msg=name)
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(fused.state_dict()[key], value, atol=1e-5, rtol=1e-5, msg=key)


@gpu
def test_resnet_final_bf16_autocast_and_compile_on_gpu():
    torch.manual_seed(0)
    cl = torch.channels_last
    fused = create_model("resnet_final", bn_relu="triton").cuda().to(memory_format=cl)
    eager = create_model("resnet_final", bn_relu="eager").cuda().to(memory_format=cl)
    eager.load_state_dict(fused.state_dict())
    compiled = torch.compile(fused, fullgraph=True)  # no graph break allowed
    x = torch.randn(64, 3, 32, 32, device="cuda").to(memory_format=cl)
    outs = []
    for model in (compiled, eager):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        out.float().logsumexp(1).sum().backward()
        outs.append(out.float())
    # bf16 activations (8 significant bits) through twelve convolutions: a few 1e-2 at most
    torch.testing.assert_close(outs[0], outs[1], atol=5e-2, rtol=5e-2)
    for (name, p), q in zip(fused.named_parameters(), eager.parameters()):
        scale = q.grad.abs().max().item() + 1e-12
        assert (p.grad - q.grad).abs().max().item() <= 5e-2 * scale, name
