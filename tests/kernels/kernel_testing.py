"""What the kernel tests share: device, tolerances, inputs, the float64 reference, NaN-poisoned
buffers. A helper module, not a conftest, so that test files import it by name.

On the CPU the kernels run under Triton's interpreter (scripts/test.sh sets TRITON_INTERPRET=1
before anything imports triton); on a GPU the same tests run on CUDA tensors.

Compiles on a GPU: every distinct kernel specialisation (constexpr tile sizes and flags, pointer
dtypes, num_warps, and each int argument's class: equal to 1, divisible by 16, or neither) is a
Triton compile of ~0.3-1 s. ``python scripts/maint/count_kernel_specializations.py`` runs these
tests under the interpreter with the tile plan a GPU uses and counts the distinct keys: the
estimate of what ``pytest tests/kernels`` compiles on CUDA (plus the gpu-marked test's, which it
lists).
Shapes and dtypes are chosen to share keys; keep the count under 60 when adding tests.
Measured: 50 keys from the tests that run on the CPU, 8 more from the gpu-marked test,
and 1 for test_bn_relu.py's own offsets kernel (the counter sees only fastcifar.kernels): ~59
compiles, against ~258 before the variant flags became runtime bools and the row counts were
left unspecialised. Not counted: torch.compile's own kernels in the gpu-marked test, and
test_bn_relu_compiles.py's ahead-of-time compiles (14 kernels, in a subprocess).
"""

import math

import pytest
import torch

from fastcifar.kernels import bn_relu as K
from fastcifar.kernels import reference as R

CUDA = torch.cuda.is_available()
DEVICE = "cuda" if CUDA else "cpu"
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (atol, rtol) against float64 maths on the same input values. The kernels compute in fp32, so
# the error is fp32 rounding (a few 1e-7 over these sizes) plus rounding the result to the
# storage dtype: fp16 keeps 11 significant bits (2**-11 ~ 5e-4 relative), bf16 8 (2**-8 ~ 4e-3,
# and the interpreter truncates rather than rounds, so up to one full ulp).
TOL = {torch.float32: (1e-5, 1e-5), torch.float16: (2e-3, 2e-3), torch.bfloat16: (1e-2, 1e-2)}
# saved and running statistics are fp32 whatever the input dtype
STAT_TOL = (1e-5, 1e-5)
# dweight and dbias are fp32 sums whatever the input dtype: only fp32 rounding (and the dtype of
# dx's inputs, which are exact in float64) separates them from the reference.
PARAM_TOL = (1e-4, 1e-4)

needs_kernels = pytest.mark.skipif(
    not (CUDA or K.INTERPRETED),
    reason="needs CUDA, or TRITON_INTERPRET=1 set before import (./scripts/test.sh sets it)")


def gpu(test):
    return pytest.mark.gpu(pytest.mark.skipif(not CUDA, reason="needs a CUDA device")(test))


@pytest.fixture
def poison_buffers(monkeypatch):
    """Every buffer the launchers allocate starts as NaN, so unwritten elements show."""
    nan = lambda t: t.fill_(math.nan) if t.is_floating_point() else t
    monkeypatch.setattr(K, "_empty", lambda *a, **kw: nan(torch.empty(*a, **kw)))
    monkeypatch.setattr(K, "_empty_like", lambda *a, **kw: nan(torch.empty_like(*a, **kw)))


def layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last if channels_last else torch.contiguous_format


def make_inputs(shape, dtype, channels_last, residual, res_channels_last=None):
    """Random, never-zero inputs: a shifted, scaled batch (its mean is not 0, its std not 1).

    The residual takes x's layout unless ``res_channels_last`` says otherwise.
    """
    c = shape[1]
    if res_channels_last is None:
        res_channels_last = channels_last
    x = (torch.randn(shape, device=DEVICE) * 3 + 2).to(dtype)
    x = x.contiguous(memory_format=layout(channels_last))
    res = torch.randn(shape, device=DEVICE).to(dtype)
    res = res.contiguous(memory_format=layout(res_channels_last))
    weight = torch.rand(c, device=DEVICE) + 0.5
    bias = torch.randn(c, device=DEVICE)
    running = (torch.randn(c, device=DEVICE), torch.rand(c, device=DEVICE) + 0.5)
    return x, weight, bias, res if residual else None, running


def reference64(x, weight, bias, residual, running, dy, momentum=0.1, eps=1e-5):
    """Outputs, stats, new running stats and grads in float64 from the same input values."""
    leaves = [t.double().requires_grad_() for t in (x, weight, bias)]
    res = residual.double().requires_grad_() if residual is not None else None
    rm, rv = (t.double() for t in running)
    y = R.bn_relu(*leaves, rm, rv, True, momentum, eps, res)
    y.backward(dy.double())
    mean, invstd, _ = R.batch_stats(x.double(), eps)
    grads = [t.grad for t in leaves] + [res.grad if res is not None else None]
    return y.detach(), mean, invstd, (rm, rv), grads


def close(actual, expected, tol, what):
    atol, rtol = tol
    torch.testing.assert_close(actual.double(), expected.double(), atol=atol, rtol=rtol,
                               msg=lambda m: f"{what}: {m}")


def check_train_step(x, weight, bias, res, running, dy, tiles=None, momentum=0.1, eps=1e-5,
                     tol=None):
    """Forward and backward through the launchers against float64: output (and its layout),
    saved and running statistics, every grad."""
    dtype = x.dtype
    tol = tol or TOL[dtype]
    y, mean, invstd, new_rm, new_rv = K.bn_relu_forward(x, weight, bias, res, *running, momentum,
                                                        eps, tiles=tiles)
    ref_y, ref_mean, ref_invstd, ref_running, ref_grads = reference64(
        x, weight, bias, res, running, dy, momentum, eps)
    assert y.dtype == dtype and y.stride() == x.stride()
    close(y, ref_y, tol, "output")
    close(mean, ref_mean, STAT_TOL, "saved mean")
    close(invstd, ref_invstd, STAT_TOL, "saved invstd")
    close(new_rm, ref_running[0], STAT_TOL, "running mean")
    close(new_rv, ref_running[1], STAT_TOL, "running var")
    saved_y = y if res is not None else None  # the residual variant's mask comes from its output
    dx, dw, db, dres = K.bn_relu_backward(dy, x, weight, bias, mean, invstd, saved_y, tiles=tiles)
    assert dx.stride() == x.stride()
    close(dx, ref_grads[0], tol, "grad x")
    close(dw, ref_grads[1], PARAM_TOL, "grad weight")
    close(db, ref_grads[2], PARAM_TOL, "grad bias")
    if res is not None:
        close(dres, ref_grads[3], tol, "grad residual")
    else:
        assert dres is None
