"""What keeps a training run safe, in one object beside the loop: ``RunGuard``.

    guard = RunGuard(stopper, save_last, plan, say)
    for epoch in ...:
        run_epoch(state, epoch, history, hook=guard.after_step)  # the one per-step hook
        guard.checkpoint(epoch + 1)                              # last.pt
        guard.after_epoch(epoch + 1)                             # stop here?

After each step it prints the time estimate (once), writes last.pt mid-epoch when a stop signal
came, ``checkpoint_minutes`` passed or ``stop_after_steps`` is reached, and stops the run there.
``outcome`` turns whatever ended the loop early (a stop, a signal, a NaN loss, a full disk)
into the run's status.
"""

import errno
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .engine import NonFiniteLoss, synchronize
from .lifecycle import Stopper

ESTIMATE_STEPS = 3  # steps timed, after the first (warm-up), for the run's time estimate


class Stop(Exception):
    """--stop-after or --stop-after-steps reached, after a checkpoint; the message says so."""


ENDS_EARLY = (Stop, KeyboardInterrupt, NonFiniteLoss, OSError)  # what ``outcome`` understands


@dataclass(frozen=True)
class Plan:
    """The run's shape and its stopping rules (RunOptions' stop_after, stop_after_steps,
    checkpoint_minutes)."""

    out: Path
    device: torch.device
    epochs: int
    steps_per_epoch: int
    stop_after: int | None = None
    stop_after_steps: int | None = None
    checkpoint_minutes: float = 10.0


class RunGuard:
    """Tracks what last.pt holds (``saved_epoch`` epochs and ``saved_step`` steps of the next)
    and how many steps this process has trained; ``save_last(epoch, so_far)`` writes last.pt
    (``so_far`` an engine.EpochSoFar mid-epoch, else None)."""

    def __init__(self, stopper: Stopper, save_last, plan: Plan, say, start_epoch: int = 0,
                 start_step: int = 0):
        self.stopper, self.save_last, self.plan, self.say = stopper, save_last, plan, say
        self.saved_epoch, self.saved_step = start_epoch, start_step
        self.steps = 0  # trained by this process
        self.saved_at = time.monotonic()
        self.first_step_done = 0.0  # perf_counter after the first (warm-up) step

    def after_step(self, epoch: int, step: int, so_far) -> None:
        """The per-step hook (engine.train_epoch's ``hook``): ``step`` steps of ``epoch`` (from
        0) are done; ``so_far()`` gives the epoch's EpochSoFar."""
        self.steps += 1
        if self.steps in (1, 1 + ESTIMATE_STEPS):
            self._estimate(epoch, step)
        if step == self.plan.steps_per_epoch:  # an epoch's end is checkpointed anyway
            return
        limit = bool(self.plan.stop_after_steps) and self.steps >= self.plan.stop_after_steps
        due = time.monotonic() - self.saved_at >= self.plan.checkpoint_minutes * 60
        signalled = self.stopper.signum is not None
        if limit or due or signalled:
            self.checkpoint(epoch, so_far())
        self.stopper.check()  # a signal stops the run at the step just saved
        if limit:
            raise self._stop_steps()

    def checkpoint(self, epoch: int, so_far=None) -> None:
        """last.pt: ``epoch`` epochs done, and ``so_far`` of the next one when mid-epoch."""
        self.save_last(epoch, so_far)
        self.saved_epoch, self.saved_step = epoch, so_far.step if so_far else 0
        self.saved_at = time.monotonic()

    def after_epoch(self, epochs_done: int) -> None:
        """Stop after a checkpointed epoch: a stop signal came, or --stop-after(-steps) says so."""
        self.stopper.check()
        if epochs_done >= self.plan.epochs:
            return
        if self.plan.stop_after and self.plan.stop_after <= epochs_done:
            raise Stop(f"stopped after epoch {epochs_done} (--stop-after); resume with "
                       f"--resume {self.plan.out}")
        if self.plan.stop_after_steps and self.steps >= self.plan.stop_after_steps:
            raise self._stop_steps()

    def outcome(self, err: BaseException) -> tuple[str, dict]:
        """(FitResult status, its other fields) for what ended the run early; an OSError other
        than a full disk is raised again."""
        if isinstance(err, Stop):
            self.say(str(err))
            return "stopped", {}
        if isinstance(err, KeyboardInterrupt):
            return "interrupted", {"signum": getattr(err, "signum", signal.SIGINT)}
        if isinstance(err, NonFiniteLoss):
            return "diverged", {"error": str(err)}
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            return "disk full", {"error": self._disk_full(err)}
        raise err

    def _stop_steps(self) -> Stop:
        return Stop(f"stopped after {self.steps} steps (--stop-after-steps); resume with "
                    f"--resume {self.plan.out}")

    def _estimate(self, epoch: int, step: int) -> None:
        synchronize(self.plan.device)
        if self.steps == 1:
            self.first_step_done = time.perf_counter()
            return
        per_step = (time.perf_counter() - self.first_step_done) / ESTIMATE_STEPS
        spe = self.plan.steps_per_epoch
        self.say(estimate(per_step, spe, (self.plan.epochs - epoch) * spe - step))

    def _disk_full(self, err: OSError) -> str:
        out, epoch, step = self.plan.out, self.saved_epoch, self.saved_step
        if epoch or step:  # a mid-epoch last.pt resumes too, also in the first epoch
            held = (f"{out / 'last.pt'} still holds "
                    + (f"{step} steps of epoch {epoch + 1}" if step else f"epoch {epoch}")
                    + (" and best.pt the best epoch before it" if epoch else ""))
            fix = f"free some space, then --resume {out}"
        else:
            held, fix = "nothing had been saved yet", "free some space and start again"
        return (f"disk full: could not write {err.filename or out} (a half-written file is never "
                f"left; {held}); {fix}")


def estimate(step_seconds: float, steps_per_epoch: int, steps_left: int) -> str:
    """The opening time estimate, in words."""
    def span(seconds: float) -> str:
        return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"

    return (f"estimate: ~{span(step_seconds * steps_per_epoch)} an epoch, "
            f"~{span(step_seconds * steps_left)} in all ({steps_left} steps left at "
            f"{step_seconds:.2f} s a step; evaluation not included)")
