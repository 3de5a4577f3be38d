"""airbench itself: its data format, its own timer, and the shims that run it, unmodified, on
the CPU.

airbench is CUDA-only code, so on the CPU it runs behind device shims, each chosen not to change
what it computes: `.cuda()` is a no-op, `torch.cuda.Event`/`synchronize` become wall-clock
timers, its loaders are pointed at the CPU, and its fp16 weights stay fp32 under bf16 autocast
(the CPU has fast bf16 but slow fp16 convolutions; fp32 master weights are, if anything, more
precise than airbench's fp16 ones), or in fp32 without autocast on a CPU without native bf16
(``auto``, as our trainer decides: AVX2-only CPUs emulate bf16, slower than fp32). Its
optimizer, schedule, Lookahead, loaders, augmentation, whitening and TTA run as published.
"""

import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import torch

from fastcifar.data import CLASSES, load_cifar10


class _WallClockEvent:
    """Stands in for torch.cuda.Event(enable_timing=True) on the CPU."""

    def __init__(self, **_):
        self.at = None

    def record(self):
        self.at = time.perf_counter()

    def elapsed_time(self, end):
        return 1e3 * (end.at - self.at)


def _shim_cuda_for_cpu(airbench_utils, amp: str = "bf16") -> None:
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.nn.Module.half = lambda self: self  # weights stay fp32; bf16 autocast does the arithmetic
    torch.cuda.Event = _WallClockEvent
    torch.cuda.synchronize = lambda *a, **k: None
    loader = airbench_utils.CifarLoader
    init = getattr(loader, "_fastcifar_init", loader.__init__)  # unwrapped, on a second call
    init.__defaults__ = init.__defaults__[:-1] + ("cpu",)  # gpu=0 -> the CPU
    loader._fastcifar_init = init

    def init_fp32_images(self, *args, **kwargs):
        init(self, *args, **kwargs)
        # its fp16 images (x / 255 rounded to fp16, as on the GPU) as fp32, for fp32 weights
        self.images = self.images.float()

    # under bf16 autocast its fp16 images meet fp32 weights in bf16; without it they must be fp32
    loader.__init__ = init if amp == "bf16" else init_fp32_images
    # its whitening statistics are fp32 on the GPU (fp16 has no autocast there); under CPU
    # autocast the covariance matmul would drop to bf16 and its eigenvalues to NaN
    whiten = airbench_utils.init_whitening_conv

    def init_whitening_conv_fp32(*args, **kwargs):
        with torch.autocast("cpu", enabled=False):
            return whiten(*args, **kwargs)

    airbench_utils.init_whitening_conv = init_whitening_conv_fp32


def airbench_amp(amp: str = "auto") -> str:
    """The arithmetic airbench runs in on this CPU: ``auto`` is what our trainer's ``--amp auto``
    picks here (bf16 where the CPU computes it natively, else fp32: emulated bf16 is slower than
    fp32), so that a race never pits emulated bf16 against fp32."""
    if amp not in ("auto", "bf16", "fp32"):
        raise ValueError(f"amp must be auto, bf16 or fp32, not {amp!r}")
    if amp == "auto":  # the trainer's own rule, so the two can never decide differently
        from fastcifar.engine import auto_amp

        return "fp32" if auto_amp(torch.device("cpu")) == "off" else "bf16"
    return amp


def run_airbench_cpu(trainer: str, folder: Path, seed: int, epochs: float | None,
                     keep_freed_memory: bool = False, amp: str = "auto") -> dict:
    """airbench<trainer> once; ``keep_freed_memory`` first gives this process the allocator
    setting our trainer uses on the CPU (fastcifar.env.keep_freed_memory, the cpu_malloc
    switch): a control that leaves airbench's code as it is. ``amp``: airbench_amp."""
    amp = airbench_amp(amp)
    import airbench
    import airbench.utils

    _shim_cuda_for_cpu(airbench.utils, amp)
    if keep_freed_memory:
        from fastcifar.env import keep_freed_memory as keep

        if not keep():
            raise RuntimeError("keep_freed_memory: this libc has no mallopt")
    train_fn = getattr(airbench, f"train{trainer}")
    here = os.getcwd()
    os.chdir(folder)  # airbench reads ./cifar10
    try:
        torch.manual_seed(seed)
        printed = io.StringIO()
        # one autocast region spans the whole of train94(), so its cache of bf16 weight copies
        # must be off, or every step would reuse the first step's weights
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False,
                                  enabled=amp == "bf16")
        with contextlib.redirect_stdout(printed), autocast:
            start = time.perf_counter()
            model = train_fn() if epochs is None else train_fn(epochs=epochs)
            wall = time.perf_counter() - start
            loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
            accuracy = 100.0 * airbench.evaluate(model, loader, tta_level=2)
    finally:
        os.chdir(here)
    table = printed.getvalue()
    epochs = [line for line in table.splitlines() if line.startswith("|") and "run" not in line]
    # airbench's own timer: training epochs, whitening init and the final TTA pass (per-epoch
    # evaluation excluded), the last column of its final row
    own_seconds = float(epochs[-1].strip("| ").split("|")[-1]) if epochs else None
    return {"test_acc": accuracy, "airbench_seconds": own_seconds, "wall_seconds": wall,
            "cpu_malloc": "keep" if keep_freed_memory else "default", "amp": amp,
            "printed": table}


def write_airbench_data(data, folder: Path) -> None:
    """Our arrays in airbench's format: ./cifar10/train.pt and test.pt."""
    (folder / "cifar10").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        torch.save({"images": torch.from_numpy(getattr(data, f"{split}_images")),
                    "labels": torch.from_numpy(getattr(data, f"{split}_labels")),
                    "classes": list(CLASSES)}, folder / "cifar10" / f"{split}.pt")


@contextlib.contextmanager
def airbench_data_folder(data_dir: str):
    """A scratch folder holding our data set (from ``data_dir``) in airbench's format."""
    data = load_cifar10(data_dir, download=False)
    with tempfile.TemporaryDirectory() as scratch:
        write_airbench_data(data, Path(scratch))
        yield Path(scratch)


def airbench_own_seconds(printed: str) -> float | None:
    """The last `total_time_seconds` in airbench's printed table (its CUDA-event timer)."""
    seconds = None
    for line in printed.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7:
            with contextlib.suppress(ValueError):
                seconds = float(cells[-1])
    return seconds
