"""The plain-PyTorch specification of the fused kernels; tests and benchmarks compare to it, and
the fused modules run it on the CPU.

``bn_relu`` is exactly what the eager modules in fastcifar.models.layers compute. ``batch_stats``
spells out the statistics the kernels save for backward (use float64 inputs for a reference).
"""

import torch
import torch.nn.functional as F


def bn_relu(x, weight, bias, running_mean=None, running_var=None, training=True, momentum=0.1,
            eps=1e-5, residual=None):
    """relu(batch_norm(x) [+ residual]); updates running stats in place like nn.BatchNorm2d."""
    y = F.batch_norm(x, running_mean, running_var, weight, bias, training, momentum, eps)
    return F.relu(y if residual is None else y + residual)


def batch_stats(x: torch.Tensor, eps: float = 1e-5):
    """Per-channel (mean, invstd, unbiased var) of a (N, C, H, W) batch, in x's dtype.

    invstd uses the biased variance (what training-mode BatchNorm normalises with); the running
    variance is updated with the unbiased one.
    """
    dims = (0, 2, 3)
    mean = x.mean(dims)
    var = x.var(dims, correction=0)
    return mean, torch.rsqrt(var + eps), x.var(dims, correction=1)
