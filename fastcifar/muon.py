"""Muon for the conv filters, Nesterov SGD for everything else, in one optimizer.

Muon (Jordan et al., 2024; airbench94_muon trains CIFAR-10's 94 % in 8 epochs where airbench94's
SGD needs 9.9) replaces a filter's momentum-smoothed gradient by the nearest semi-orthogonal
matrix: every direction of the update gets the same size, so the directions that plain SGD
would barely move (small singular values) learn as fast as the dominant ones. The
orthogonalisation is a few Newton-Schulz iterations in bf16, cheap next to a training step.
Before each update the filter is rescaled to norm sqrt(out_channels): a conv followed by
BatchNorm does not care about its scale, and a fixed norm keeps the lr's meaning fixed instead
of decaying as the weights grow (so Muon groups take no weight decay).

One optimizer rather than two so that the engine's single optimizer (the GradScaler step, the
lr schedule, checkpoints) carries on unchanged: groups with ``muon=True`` take Muon steps, the
others exactly torch.optim.SGD's (coupled weight decay, momentum, optional Nesterov).
"""

import torch

# the quintic's coefficients, chosen (by Jordan) for the steepest slope at zero: 3 steps take
# every singular value of a unit-norm matrix into roughly [0.5, 1.5], which trains as well as
# exactly 1 and costs a few matmuls
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 3, eps: float = 1e-7) -> torch.Tensor:
    """An approximately semi-orthogonal matrix with ``matrix``'s singular vectors (2-D, any
    shape), by ``steps`` Newton-Schulz iterations in bf16; returned in ``matrix``'s dtype."""
    if matrix.ndim != 2:
        raise ValueError(f"orthogonalize takes a 2-D matrix, not shape {tuple(matrix.shape)}")
    a, b, c = NS_COEFFICIENTS
    x = matrix.to(torch.bfloat16)
    x = x / (x.norm() + eps)  # the largest singular value is then at most 1
    wide = x.size(0) <= x.size(1)
    if not wide:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return (x if wide else x.T).to(matrix.dtype)


class Muon(torch.optim.Optimizer):
    """Muon on the groups marked ``muon=True`` (parameters of 2 or more dims; each is treated
    as a (shape[0], rest) matrix), Nesterov/plain momentum SGD on the others.

    Per-group keys: ``lr``, ``momentum``, ``nesterov``, ``weight_decay`` (SGD groups only),
    ``muon``, ``ns_steps``.
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False,
                 weight_decay: float = 0.0, muon: bool = False, ns_steps: int = 3):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0 or ns_steps < 1:
            raise ValueError(f"bad Muon settings: lr {lr}, momentum {momentum}, "
                             f"weight_decay {weight_decay}, ns_steps {ns_steps}")
        if nesterov and momentum <= 0:
            raise ValueError("Nesterov momentum needs momentum > 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov,
                                      weight_decay=weight_decay, muon=muon, ns_steps=ns_steps))
        for group in self.param_groups:
            if group["muon"]:
                if group["weight_decay"]:
                    raise ValueError("Muon groups take no weight decay (their norm is fixed)")
                flat = [tuple(p.shape) for p in group["params"] if p.ndim < 2]
                if flat:
                    raise ValueError(f"Muon needs parameters of 2+ dims, not shapes {flat}")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, momentum = group["lr"], group["momentum"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if momentum:
                    state = self.state[p]
                    if "momentum_buffer" not in state:  # as SGD: the first buffer is the grad
                        state["momentum_buffer"] = grad.clone()
                    else:
                        state["momentum_buffer"].mul_(momentum).add_(grad)
                    buf = state["momentum_buffer"]
                    grad = grad.add(buf, alpha=momentum) if group["nesterov"] else buf
                if group["muon"]:
                    p.mul_(p.size(0) ** 0.5 / p.norm().clamp_min(1e-12))
                    update = orthogonalize(grad.reshape(len(grad), -1), group["ns_steps"])
                    p.add_(update.view_as(p), alpha=-lr)
                else:
                    p.add_(grad, alpha=-lr)
        return loss
