"""airbench94, unmodified, on the CPU and on our data: the peer's own accuracy on the same copy.

    python -m benchmarks.airbench_cpu --data-dir data [--runs 1] [--trainer 94]

Why: our speedrun recipe is rebuilt from airbench94's published ideas; when it falls short of 94 %
on the CIFAR-10 (JPEG q75 copy), this tells how much of the gap is the data and how much our
implementation. airbench is CUDA-only code, so it runs here behind device shims, each chosen not
to change what it computes: `.cuda()` is a no-op, `torch.cuda.Event`/`synchronize` become
wall-clock timers, its loaders are pointed at the CPU, and its fp16 weights stay fp32 under bf16
autocast (the CPU has fast bf16 but slow fp16 convolutions; fp32 master weights are, if anything,
more precise than airbench's fp16 ones), or in fp32 without autocast on a CPU without native bf16
(`--amp auto`, as our trainer decides: AVX2-only CPUs emulate bf16, slower than fp32). Its
optimizer, schedule, Lookahead, loaders, augmentation, whitening and TTA run as published.
Install it beside the project without touching torch:
`pip install --no-deps -t /tmp/abenv airbench==0.1.8 torchvision` and run with
PYTHONPATH=/tmp/abenv. Prints a table and writes benchmarks/results/airbench<N>-cpu.json.
"""

import argparse
import contextlib
import io
import os
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks._common import command, print_table, save_result
from benchmarks.vs_airbench import airbench_data_folder


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--trainer", default="94", choices=["93", "94", "95"])
    parser.add_argument("--runs", type=int, default=1, help="runs (seeds 0..n-1)")
    parser.add_argument("--data-name", default="CIFAR-10 (JPEG q75 copy)",
                        help="what the data is, for the result file")
    parser.add_argument("--epochs", type=float, default=None,
                        help="override airbench's epoch count (a smoke test; default: its own)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp32"],
                        help="bf16 autocast or fp32 (auto: bf16 only where the CPU has it "
                             "natively)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    try:
        import airbench  # noqa: F401
    except ImportError:
        print("error: airbench is not importable; install it beside the project with\n"
              "  pip install --no-deps -t /tmp/abenv airbench==0.1.8 torchvision\n"
              "and run with PYTHONPATH=/tmp/abenv", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with airbench_data_folder(args.data_dir) as scratch:
        for run in range(args.runs):
            result = run_airbench_cpu(args.trainer, scratch, seed=run, epochs=args.epochs,
                                      amp=args.amp)
            print(result["printed"], end="")
            rows.append({"trainer": f"airbench{args.trainer} (CPU shims, {result['amp']})",
                         "run": run, "test_acc": round(result["test_acc"], 2),
                         "airbench_seconds": round(result["airbench_seconds"], 1),
                         "wall_seconds": round(result["wall_seconds"], 1),
                         "printed": result["printed"]})
    hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"airbench{args.trainer} on the CPU ({hardware}, torch {torch.__version__}), "
          f"data {args.data_dir}")
    print_table(rows, ["trainer", "run", "test_acc", "airbench_seconds", "wall_seconds"])
    path = save_result(f"airbench{args.trainer}-cpu",
                       {"data": str(args.data_dir), "data_name": args.data_name,
                        "hardware": hardware,
                        "epochs": args.epochs or "airbench default", "rows": rows}, args.out)
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
