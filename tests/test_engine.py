"""fastcifar.engine: test-time augmentation under CUDA-graph output reuse, and (GPU) a training
epoch that never waits for the host between its first and last step."""

from contextlib import contextmanager

import pytest
import torch
import torch.nn.functional as F
from test_augment import HostTraffic
from torch import nn

from fastcifar.augment import get_preset, make_loader
from fastcifar.data.synthetic import make_arrays
from fastcifar.ema import ModelEMA
from fastcifar.engine import TTA_MODES, TrainState, train_epoch, tta_logits
from fastcifar.models import create_model
from fastcifar.recipes import get_recipe


class Linear(nn.Module):
    """Logits that change with a flip or a shift, so a mixed-up TTA view shows."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(10, 3 * 8 * 8))

    def forward(self, x):
        return F.linear(x.flatten(1), self.weight)


class ReusesOutput(Linear):
    """As a CUDA graph (--compile reduce-overhead) behaves: every call writes its logits into the
    one output buffer and returns that buffer, so the previous call's result is overwritten."""

    def forward(self, x):
        out = super().forward(x)
        if not hasattr(self, "buffer") or self.buffer.shape != out.shape:
            self.buffer = torch.empty_like(out)
        return self.buffer.copy_(out)


@pytest.mark.parametrize("mode", TTA_MODES)
def test_tta_survives_models_that_reuse_their_output(mode):
    fresh, reusing = Linear(), ReusesOutput()
    reusing.load_state_dict(fresh.state_dict())
    x = torch.randn(4, 3, 8, 8)
    want = tta_logits(fresh, x, mode)
    torch.testing.assert_close(tta_logits(reusing, x, mode), want)
    if mode != "none":  # the views differ, so averaging one of them twice would be caught
        assert not torch.allclose(want, fresh(x), atol=1e-3)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@needs_cuda
def test_tta_with_reduce_overhead_compile_matches_eager(monkeypatch):
    # fp32 convolutions: cuDNN's default TF32 could differ between the eager and compiled
    # algorithms by more than the tolerance (matmuls are fp32 by default)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(8 * 8 * 8, 10)).cuda().eval()
    graphed = torch.compile(model, mode="reduce-overhead")
    x = torch.randn(16, 3, 8, 8, device="cuda")
    with torch.no_grad():
        want = tta_logits(model, x, "flip_translate")
        for _ in range(3):  # cudagraph trees record on the second or third call
            got = tta_logits(graphed, x, "flip_translate")
            torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@contextmanager
def cuda_syncs_raise():
    """Every synchronising CUDA call raises inside (a blocking copy, .item(), synchronize)."""
    torch.cuda.set_sync_debug_mode("error")
    try:
        yield
    finally:
        torch.cuda.set_sync_debug_mode("default")


class Checked:
    """``loader`` with ``check`` (a context manager) entered at the epoch's first batch and left
    when the loader is exhausted: the steps in between run inside it; train_epoch's start and
    end, which synchronise on purpose, do not."""

    def __init__(self, loader, check):
        self.loader, self.check = loader, check

    def __len__(self):
        return len(self.loader)

    def __iter__(self):
        with self.check:
            yield from self.loader


def train_checked(device, check, bn_relu="eager"):
    """One epoch of four steps of the fast recipe's machinery (bf16 autocast, channels_last,
    alternating flip, Nesterov SGD with decay, a per-step schedule, EMA), under ``check``."""
    images, labels = make_arrays(64, seed=0)
    loader = make_loader(images, labels, get_preset("altflip_crop2"), 16, train=True,
                         device=device)
    model = create_model("cnn", bn_relu=bn_relu).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                                weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    ema = ModelEMA(model, 0.9, every=2)
    state = TrainState(get_recipe("fast"), model, model, ema.module, optimizer, None, schedule,
                       torch.amp.GradScaler(enabled=False), ema, torch.bfloat16,
                       (Checked(loader, check), None, None), check_every=10**6)
    stats = train_epoch(state, epoch=0)
    assert stats["images"] == 64 and stats["loss"] > 0


def test_training_steps_read_nothing_back():
    # check_every past the epoch's end: no step may copy host data in or read a value back
    traffic = HostTraffic()
    train_checked("cpu", traffic)
    assert traffic.seen == []


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("bn_relu", ["eager", "auto"])  # auto: the Triton kernels on a GPU
def test_cuda_training_steps_never_sync(bn_relu):
    try:
        train_checked("cuda", cuda_syncs_raise(), bn_relu)
    finally:  # a failed step leaves the loader suspended inside the check: leave it here
        torch.cuda.set_sync_debug_mode("default")
