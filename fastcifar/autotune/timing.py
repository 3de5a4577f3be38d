"""Timing candidates fairly: fresh models on random inputs, alternating rounds, the noise taken
from the rounds' own spread, and every RNG restored afterwards."""

import contextlib
import math
import random
import statistics
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from ..engine import DeviceTimer, Speed
from ..models import create_model, parse_model_options
from ..recipes import Recipe

NOISE_FLOOR = 0.03  # a replacement must be at least this much faster, whatever the spread says
CPU_TIMING_BATCH = 32  # on the CPU a small batch stands in for the run's (seconds, not minutes)
ROUND_SECONDS = 0.2  # steps per timing round: enough for this much time, at least one
ROUNDS = 3  # alternating rounds per candidate: their spread is the timing's noise


@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Every RNG a run draws from (Python, NumPy, torch CPU and CUDA) as it was on entry."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


@dataclass
class Timing:
    """Seconds per step (or batch) of each alternating round."""

    rounds: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> float:
        """(slowest - fastest) / fastest round: how far this timing can be trusted."""
        return (max(self.rounds) - min(self.rounds)) / min(self.rounds)


def pick_fastest(default: str, timings: dict[str, Timing]) -> tuple[str, str]:
    """(the winner, why): the fastest candidate, if it beats ``default`` by more than the noise
    (the larger spread of the two, at least NOISE_FLOOR); else ``default``."""
    if default not in timings:  # the default itself failed: the fastest that ran
        best = min(timings, key=lambda c: timings[c].seconds)
        return best, f"the fastest that ran ({default} failed)"
    best = min(timings, key=lambda c: timings[c].seconds)
    if best == default:
        others = [c for c in timings if c != default]
        if not others:
            return default, "the only candidate"
        runner = min(others, key=lambda c: timings[c].seconds)
        ratio = timings[runner].seconds / timings[default].seconds
        return default, f"fastest; the next, {runner}, took {ratio:.2f}x as long"
    d, b = timings[default], timings[best]
    noise = max(NOISE_FLOOR, d.spread, b.spread)
    gain = 1 - b.seconds / d.seconds
    if gain > noise:
        return best, f"{d.seconds / b.seconds:.2f}x faster than {default}, beyond the noise " \
                     f"({noise:.0%})"
    return default, f"{best} was {gain:.0%} faster, within the noise ({noise:.0%})"


def timing_batch(batch_size: int, device: torch.device) -> int:
    return batch_size if device.type == "cuda" else min(batch_size, CPU_TIMING_BATCH)


class StepBench:
    """One training step (forward, backward, SGD) of a fresh model under one configuration,
    on random inputs: what a switch changes in a step, and nothing of the run's state."""

    def __init__(self, recipe: Recipe, config: dict, batch: int, device: torch.device):
        self.device, self.config = device, config
        cl = torch.channels_last if config["channels_last"] else torch.contiguous_format
        model = create_model(recipe.model, bn_relu=config["bn_relu"],
                             **parse_model_options(recipe.model_options)).to(device)
        gen = torch.Generator(device).manual_seed(0)
        if hasattr(model, "fit_to_data"):  # a data-initialised layer: fitted to noise here
            model.fit_to_data(torch.randn(256, 3, 32, 32, device=device, generator=gen))
        self.model = model.to(memory_format=cl).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.x = torch.randn(batch, 3, 32, 32, device=device, generator=gen).contiguous(
            memory_format=cl)
        self.y = torch.randint(0, 10, (batch,), device=device, generator=gen)
        self.amp = Speed(**config).amp_dtype
        mode = config["compile"]
        self.step_model = self.model if mode == "off" else torch.compile(
            self.model, mode=None if mode == "default" else mode)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.step_model(self.x)
        loss = F.cross_entropy(logits.float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def time_alternating(runners: dict, warmup: int = 2, rounds: int = ROUNDS,
                     device: torch.device | None = None) -> tuple[dict, dict]:
    """({name: Timing}, {name: error}) for ``runners`` (name -> a function doing one unit of
    work): each is warmed up (compiles happen there), then timed in ``rounds`` rounds that
    alternate between candidates, so a drift of the machine's speed hits them all alike."""
    errors, per_round = {}, {}
    timer = DeviceTimer(device or torch.device("cpu"))
    for name, run in runners.items():
        try:
            for _ in range(warmup):
                run()
            timer.start()
            run()
            per_round[name] = max(1, min(50, math.ceil(ROUND_SECONDS / max(timer.stop(), 1e-6))))
        except Exception as err:  # noqa: BLE001 - a candidate that cannot run is dropped
            errors[name] = short_error(err)
    timings = {name: Timing() for name in per_round}
    for _ in range(rounds):
        for name in list(timings):
            try:
                timer.start()
                for _ in range(per_round[name]):
                    runners[name]()
                timings[name].rounds.append(timer.stop() / per_round[name])
            except Exception as err:  # noqa: BLE001
                errors[name] = short_error(err)
                del timings[name]
    return timings, errors


def short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]
