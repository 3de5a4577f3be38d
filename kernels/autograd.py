"""The fused kernels as PyTorch operators (autograd, torch.compile).

    torch.ops.fastcifar.bn_relu_train(x, weight, bias, residual, running_mean, running_var,
                                      momentum, eps) -> (y, mean, invstd, new_rmean, new_rvar)
    torch.ops.fastcifar.bn_relu_eval(x, weight, bias, residual, running_mean, running_var, eps)
    torch.ops.fastcifar.bn_relu_backward(dy, x, weight, bias, mean, invstd, y)

They are ``torch.library.triton_op``s, so torch.compile sees the Triton kernels inside (no graph
break) and autograd uses ``register_autograd``. The drop-in modules built on them live in
fastcifar.models.fused: kernels/ is a leaf and imports nothing else of fastcifar.
"""

import torch
from torch import Tensor
from torch.library import triton_op, wrap_triton

from . import bn_relu as K


# Functional (no mutated inputs; PyTorch refuses autograd formulas for mutating ops): it returns
# the updated running stats (empty when not tracked) and the module copies them into its buffers.
@triton_op("fastcifar::bn_relu_train", mutates_args={})
def bn_relu_train(x: Tensor, weight: Tensor, bias: Tensor, residual: Tensor | None,
                  running_mean: Tensor | None, running_var: Tensor | None, momentum: float,
                  eps: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    y, mean, invstd, new_rm, new_rv = K.bn_relu_forward(
        x, weight, bias, residual, running_mean, running_var, momentum, eps, launch=wrap_triton)
    if new_rm is None:
        new_rm, new_rv = mean.new_empty(0), mean.new_empty(0)
    return y, mean, invstd, new_rm, new_rv


@triton_op("fastcifar::bn_relu_backward", mutates_args={})
def bn_relu_backward(dy: Tensor, x: Tensor, weight: Tensor, bias: Tensor, mean: Tensor,
                     invstd: Tensor, y: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias, dresidual); dresidual is empty unless ``y`` (residual variant)."""
    dx, dw, db, dres = K.bn_relu_backward(dy, x, weight, bias, mean, invstd, y,
                                          launch=wrap_triton)
    return dx, dw, db, dres if dres is not None else dy.new_empty(0)


def _train_setup(ctx, inputs, output):
    x, weight, bias, residual = inputs[:4]
    y, mean, invstd, new_rm, new_rv = output
    ctx.has_residual = residual is not None
    ctx.mark_non_differentiable(mean, invstd, new_rm, new_rv)
    # the residual variant takes its ReLU mask from y (the next conv saves y anyway)
    ctx.save_for_backward(x, weight, bias, mean, invstd, y if ctx.has_residual else None)


def _train_backward(ctx, dy, *_stats_grads):
    x, weight, bias, mean, invstd, y = ctx.saved_tensors
    dx, dw, db, dres = torch.ops.fastcifar.bn_relu_backward(dy, x, weight, bias, mean, invstd, y)
    return dx, dw, db, dres if ctx.has_residual else None, None, None, None, None


bn_relu_train.register_autograd(_train_backward, setup_context=_train_setup)


@triton_op("fastcifar::bn_relu_eval", mutates_args={})
def bn_relu_eval(x: Tensor, weight: Tensor, bias: Tensor, residual: Tensor | None,
                 running_mean: Tensor, running_var: Tensor, eps: float) -> Tensor:
    return K.bn_relu_eval(x, weight, bias, running_mean, running_var, residual, eps,
                          launch=wrap_triton)


def _eval_setup(ctx, inputs, output):
    x, weight, _, residual, running_mean, running_var, eps = inputs
    ctx.has_residual, ctx.eps = residual is not None, eps
    ctx.save_for_backward(x, weight, running_mean, running_var, output)


def _eval_backward(ctx, dy):
    # rare (gradients through a frozen BatchNorm) and per-channel-affine: plain torch ops suffice
    x, weight, running_mean, running_var, y = ctx.saved_tensors
    per_channel = lambda t: t.float().view(1, -1, 1, 1)
    invstd = per_channel(torch.rsqrt(running_var.float() + ctx.eps))
    g = torch.where(y > 0, dy, 0).float()
    xhat = (x.float() - per_channel(running_mean)) * invstd
    dx = (g * per_channel(weight) * invstd).to(x.dtype)
    dw, db = (g * xhat).sum((0, 2, 3)), g.sum((0, 2, 3))
    dres = g.to(dy.dtype) if ctx.has_residual else None
    return dx, dw.to(weight.dtype), db.to(weight.dtype), dres, None, None, None


bn_relu_eval.register_autograd(_eval_backward, setup_context=_eval_setup)


def kernels_can_run(x: Tensor) -> bool:
    """CUDA tensors of a dtype the kernels take; or such CPU tensors when the kernels were imported
    under TRITON_INTERPRET=1, except under torch.compile, which cannot trace interpreted kernels.
    Anything else (fp64, other devices) is for the reference."""
    if x.dtype not in K.DTYPES:
        return False
    if x.is_cuda:
        return True
    return K.INTERPRETED and x.device.type == "cpu" and not torch.compiler.is_compiling()
