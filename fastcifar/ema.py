"""An exponential moving average (EMA) of a model's weights: evaluated in place of the model, or
(``lookahead``) pulled back into it, as airbench's Lookahead does."""

import copy

import torch
from torch import nn


class ModelEMA:
    """Keeps ``module``, a copy of the model whose floating-point parameters and buffers (the
    BatchNorm running statistics included) follow the live model's as an EMA.

    Updated every ``every`` steps with decay ``min(decay, (1 + n) / (10 + n))`` after n updates,
    so that early on it follows the fast-changing weights instead of remembering the random init.
    The update is a fused ``lerp`` on the device: no host-device sync.

    ``lookahead`` (airbench's): each update also copies the average back into the live model,
    so training continues from the average; the decay ramps up as ``decay * progress**3`` over
    ``total_steps`` (none at the start, when the weights move fastest), and after the last step
    the live model ends on the average. Then the live model is the one to evaluate.
    """

    def __init__(self, model: nn.Module, decay: float, every: int = 5, lookahead: bool = False,
                 total_steps: int | None = None):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), not {decay}")
        if lookahead and not total_steps:
            raise ValueError("lookahead needs total_steps (its decay ramps over the run)")
        self.module = copy.deepcopy(model).eval().requires_grad_(False)
        self.decay, self.every, self.updates = decay, every, 0
        self.lookahead, self.total_steps = lookahead, total_steps

    def _pairs(self, model: nn.Module):
        ours, theirs = self.module.state_dict(), model.state_dict()
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        others = [k for k, v in ours.items() if not v.is_floating_point()]
        return ([ours[k] for k in floats], [theirs[k] for k in floats],
                [(ours[k], theirs[k]) for k in others])

    @torch.no_grad()
    def update(self, model: nn.Module, step: int, global_step: int | None = None) -> None:
        """After ``step`` (of the epoch; the cadence counts these) and, for lookahead,
        ``global_step`` (0-based, of the whole run; the ramp and the end count these)."""
        if self.lookahead and global_step is None:
            raise ValueError("a lookahead EMA needs the global step")
        done = None if global_step is None else global_step + 1
        if (step + 1) % self.every == 0:
            self.updates += 1
            if self.lookahead:
                decay = self.decay * min(1.0, done / self.total_steps) ** 3
            else:
                decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
            ema, live, counters = self._pairs(model)
            torch._foreach_lerp_(ema, [t.detach() for t in live], 1.0 - decay)
            for mine, theirs in counters:  # e.g. BatchNorm's num_batches_tracked
                mine.copy_(theirs)
            if self.lookahead:  # training goes on from the average
                torch._foreach_copy_(live, ema)
        if self.lookahead and done >= self.total_steps:  # the run ends on the average
            ema, live, _ = self._pairs(model)
            torch._foreach_copy_(live, ema)

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = state["updates"]
