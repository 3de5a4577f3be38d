"""fastcifar.guard.RunGuard: what a full disk's message tells the user to do depends on what
last.pt holds, mid-epoch saves included."""

import errno
from pathlib import Path

import torch

from fastcifar.guard import Plan, RunGuard
from fastcifar.lifecycle import Stopper


def _disk_full_message(start_epoch: int, start_step: int) -> str:
    plan = Plan(out=Path("runs/x"), device=torch.device("cpu"), epochs=4, steps_per_epoch=10)
    guard = RunGuard(Stopper(), lambda epoch, so_far: None, plan, print, start_epoch, start_step)
    status, fields = guard.outcome(OSError(errno.ENOSPC, "No space left", "runs/x/last.pt"))
    assert status == "disk full"
    return fields["error"]


def test_a_full_disk_after_an_epoch_points_at_resume():
    said = _disk_full_message(2, 0)
    assert "still holds epoch 2 and best.pt" in said and said.endswith("--resume runs/x")


def test_a_full_disk_after_a_mid_epoch_save_in_the_first_epoch_still_points_at_resume():
    said = _disk_full_message(0, 5)
    assert "still holds 5 steps of epoch 1" in said and "best.pt" not in said
    assert said.endswith("--resume runs/x")


def test_a_full_disk_before_any_save_says_start_again():
    said = _disk_full_message(0, 0)
    assert "nothing had been saved yet" in said and said.endswith("start again")
