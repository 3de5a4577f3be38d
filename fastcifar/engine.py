"""The training and evaluation loops: no argparse, no files, no printing (a tqdm bar aside).

Loss and accuracy are summed on the device and read back only every ``check_every`` steps and at
the end of the epoch, so a CUDA step never waits for the host.
"""

import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .metrics import confusion_matrix


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` say where (both from 0)."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"the loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step = epoch, step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceTimer:
    """Seconds between ``start()`` and ``stop()`` on the device's own clock: CUDA events on a
    GPU (as airbench times its training), a wall clock elsewhere. Neither mark makes the host
    wait; ``stop()`` waits for the work before it to finish."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self.begin
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self.begin.elapsed_time(end) / 1e3


def train_epoch(
    model: nn.Module, loader: Iterable, optimizer: torch.optim.Optimizer, *, epoch: int,
    label_smoothing: float = 0.0, check_every: int = 1, progress: bool = False,
    amp_dtype: torch.dtype | None = None, scaler: torch.amp.GradScaler | None = None,
    lr_schedule=None, ema=None, ema_source: nn.Module | None = None,
) -> dict:
    """One pass over ``loader``. Returns loss, accuracy (%), images and training seconds.

    ``model`` may be a torch.compile'd module; ``amp_dtype`` turns on autocast (bf16 or fp16,
    the latter with a GradScaler in ``scaler``); ``lr_schedule`` is stepped after every step;
    ``ema`` (a ModelEMA) follows ``ema_source``, the uncompiled model.
    """
    device = next(model.parameters()).device
    scaler = scaler or torch.amp.GradScaler(device.type, enabled=False)
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step
    images = 0
    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}", unit="step", leave=False,
               disable=not progress)
    timer = DeviceTimer(device)
    timer.start()
    start = time.perf_counter()  # the progress bar's rate only
    for step, (x, y) in enumerate(loader):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # a disabled scaler is the identity
        scaler.step(optimizer)
        scaler.update()
        if lr_schedule is not None:
            lr_schedule.step()
        if ema is not None:
            ema.update(ema_source, step)

        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
        images += len(y)
        if (step + 1) % check_every == 0:  # the only host-device syncs inside the epoch
            _check_finite(first_bad, epoch)
            if progress:  # a second read-back, for the bar alone
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss_sum.item() / images:.3f}",
                                img_s=f"{images / elapsed:.0f}")
        bar.update(1)
    seconds = timer.stop()
    _check_finite(first_bad, epoch)
    bar.close()
    images_or_1 = max(images, 1)
    return {"loss": loss_sum.item() / images_or_1, "acc": 100.0 * correct.item() / images_or_1,
            "images": images, "seconds": seconds}


def _check_finite(first_bad: torch.Tensor, epoch: int) -> None:
    step = int(first_bad.item())
    if step >= 0:
        raise NonFiniteLoss(epoch, step)


TTA_MODES = ("none", "flip", "flip_translate")


def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Logits averaged over test-time views of ``x`` (airbench's weighting for translate):
    "flip" = mean of the image and its mirror; "flip_translate" = 0.5 * that + 0.5 * the same
    for the image shifted by one pixel up-left and down-right (reflect padding)."""
    def view(images):
        # cloned: a CUDA-graph model (--compile reduce-overhead) returns the same output buffer
        # from every call of a graph, so the next view's call would overwrite this one's logits
        return model(images).clone()

    def flip_mean(images):
        return 0.5 * (view(images) + view(images.flip(-1)))

    if mode == "none":
        return model(x)
    if mode == "flip":
        return flip_mean(x)
    if mode != "flip_translate":
        raise ValueError(f"unknown TTA mode {mode!r}; choose one of: {', '.join(TTA_MODES)}")
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    shifted = 0.5 * (flip_mean(padded[..., :h, :w]) + flip_mean(padded[..., 2:, 2:]))
    return 0.5 * flip_mean(x) + 0.5 * shifted


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, num_classes: int = 10, tta: str = "none",
             amp_dtype: torch.dtype | None = None) -> dict:
    """Loss, accuracy (%) and confusion matrix of ``model`` on ``loader`` (eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    preds, labels = [], []
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = tta_logits(model, x, tta)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        preds.append(logits.argmax(1))
        labels.append(y)
    preds, labels = torch.cat(preds), torch.cat(labels)
    n = len(labels)
    return {"loss": loss_sum.item() / n, "acc": 100.0 * (preds == labels).sum().item() / n,
            "confusion": confusion_matrix(preds, labels, num_classes)}
