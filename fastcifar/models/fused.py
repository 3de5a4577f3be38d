"""The fused Triton BatchNorm+ReLU modules: drop-ins for the eager pair in ``layers``.

They subclass the eager modules (and so nn.BatchNorm2d): same parameters, buffers and state-dict
keys, so checkpoints move between implementations. They run the custom operators of
``fastcifar.kernels.autograd`` where the kernels can (CUDA tensors, or CPU tensors when the kernels
were imported under TRITON_INTERPRET=1) and the PyTorch reference everywhere else: CPU tensors,
fp64 or other dtypes the kernels do not take, as nn.BatchNorm2d would compute them.

Imported on first use of bn_relu="triton" (it imports triton); the dependency runs models ->
kernels only.
"""

import torch
from torch import Tensor

from fastcifar.kernels import autograd as ops
from fastcifar.kernels import bn_relu as K
from fastcifar.kernels import reference

from . import layers


def bn_act(bn: torch.nn.BatchNorm2d, x: Tensor, residual: Tensor | None = None) -> Tensor:
    """relu(bn(x) [+ residual]) with ``bn``'s parameters and buffers, as nn.BatchNorm2d would."""
    bn._check_input_dim(x)
    # nn.BatchNorm2d's bookkeeping: momentum=None means a cumulative average (under
    # torch.compile that reads num_batches_tracked on the host: a graph break; default is 0.1)
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep = not bn.training or bn.track_running_stats
    running_mean, running_var = (bn.running_mean, bn.running_var) if keep else (None, None)
    # eager's `+` promotes a residual of another dtype; the kernels take one dtype for both
    dtype = x.dtype if residual is None else torch.promote_types(x.dtype, residual.dtype)
    if dtype not in K.DTYPES or not ops.kernels_can_run(x):
        return reference.bn_relu(x, bn.weight, bn.bias, running_mean, running_var, batch_stats,
                                 factor, bn.eps, residual)
    weight, bias = bn.weight, bn.bias
    if weight is None:  # affine=False
        weight, bias = x.new_ones(x.shape[1]), x.new_zeros(x.shape[1])
    if not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)):
        x = x.contiguous()
    if residual is not None and residual.dtype != x.dtype:
        x, residual = x.to(dtype), residual.to(dtype)
    if batch_stats:
        y, _, _, new_rm, new_rv = torch.ops.fastcifar.bn_relu_train(
            x, weight, bias, residual, running_mean, running_var, factor, bn.eps)
        if running_mean is not None:
            with torch.no_grad():
                running_mean.copy_(new_rm)
                running_var.copy_(new_rv)
        return y
    return torch.ops.fastcifar.bn_relu_eval(x, weight, bias, residual, running_mean, running_var,
                                            bn.eps)


class BatchNormReLU2d(layers.BatchNormReLU2d):
    """relu(batch_norm(x)) by the fused Triton kernels; a drop-in for the eager module."""

    def forward(self, x: Tensor) -> Tensor:
        return bn_act(self, x)


class BatchNormAddReLU2d(layers.BatchNormAddReLU2d):
    """relu(batch_norm(x) + residual) by the fused Triton kernels (the end of a ResBlock)."""

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        return bn_act(self, x, residual)


TRITON = layers.Norm(BatchNormReLU2d, BatchNormAddReLU2d)
