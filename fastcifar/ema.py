"""An exponential moving average (EMA) of a model's weights, evaluated in place of the model."""

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps ``module``, a copy of the model whose floating-point parameters and buffers (the
    BatchNorm running statistics included) follow the live model's as an EMA.

    Updated every ``every`` steps with decay ``min(decay, (1 + n) / (10 + n))`` after n updates,
    so that early on it follows the fast-changing weights instead of remembering the random init.
    The update is a fused ``lerp`` on the device: no host-device sync.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 5):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.updates = decay, every, 0

    def _pairs(self, model: nn.Module):
        ours, theirs = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        others = [k for k, v in ours.items() if not v.is_floating_point()]
        return ([ours[k] for k in floats], [theirs[k] for k in floats],
                [(ours[k], theirs[k]) for k in others])

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        if (step + 1) % self.every:
            return
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema, live, counters = self._pairs(model)
        torch._foreach_lerp_(ema, [t.detach() for t in live], 1.0 - decay)
        for mine, theirs in counters:  # e.g. BatchNorm's num_batches_tracked
            mine.copy_(theirs)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
