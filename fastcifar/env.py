"""The machine and software a result was measured on; stored with every run and benchmark."""

import ctypes
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")  # /proc/cpuinfo: bf16 matmul in hardware


def cpu_native_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (AMX or AVX512-BF16, as on Sapphire Rapids and
    later Xeons, Zen 4+): there bf16 autocast + channels_last trains ~3x faster than fp32 NCHW
    (resnet_final, 2 cores with AMX: 25.8 -> 75.6 img/s); elsewhere oneDNN emulates bf16, slower
    than fp32. ``cpuinfo`` is /proc/cpuinfo's text (read when None; no file: False)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split(":", 1)[-1].split() for flag in BF16_CPU_FLAGS)
    return False


SIMD_FLAG_PREFIXES = ("avx", "amx", "fma", "f16c", "sse4")


def cpu_flags(cpuinfo: str | None = None) -> list[str]:
    """The CPU's vector and matrix flags (AVX*, AMX*, FMA, F16C, SSE4), sorted: what decides how
    fast its convolutions run in each dtype and layout. Empty where /proc/cpuinfo is missing."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return []
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return sorted({f for f in line.split(":", 1)[-1].split()
                           if f.startswith(SIMD_FLAG_PREFIXES)})
    return []


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc serve every allocation from its heap and keep what is freed there.

    Why: a CPU training step allocates and frees activations of tens to hundreds of MB. By
    default each block that large is a fresh mmap whose pages the kernel zero-fills and faults
    in on first touch, every step, and is unmapped when freed; kept in the heap, the next step
    reuses pages already mapped. Measured on 2 cores with AMX, speedrun net, bf16 eval at batch
    2000 (1 thread): 8x fewer page faults and 1.7x the images/s. The cost: the process keeps
    its peak memory until it exits. Returns whether it applied (False where libc has no
    mallopt, e.g. musl or macOS)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def git_commit() -> str:
    """The source tree's commit; ``$FASTCIFAR_COMMIT`` where the tree has no .git (the GPU
    machine gets a copy of the working tree without it; scripts/maint/gpu_suite.sh --stage records
    the commit in .stage/COMMIT and the suite exports it)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=5)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return os.environ.get("FASTCIFAR_COMMIT") or "unknown"


def gpu_details() -> dict | None:
    """The CUDA device's name, compute capability, SM count, memory and library versions."""
    import torch

    if not torch.cuda.is_available():
        return None
    props = torch.cuda.get_device_properties(0)
    return {"name": props.name, "capability": f"{props.major}.{props.minor}",
            "sms": props.multi_processor_count, "memory_gib": round(props.total_memory / 2**30, 1),
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "bf16_supported": torch.cuda.is_bf16_supported(),
            # process state: importing airbench switches it on (benchmarks/airbench/accuracy.py)
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def triton_version() -> str | None:
    # read from the installed metadata: importing triton costs a second at every run's start
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> dict:
    """Hardware, versions, commit and time, as a JSON-ready dict."""
    import numpy
    import torch

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu_name(),
        "cpu_cores": cores,
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "gpu_details": gpu_details(),
        "triton": triton_version(),
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "numpy": numpy.__version__,
        "commit": git_commit(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


# how to install a torch build for an older driver (scripts/setup.sh reads FASTCIFAR_TORCH)
OTHER_BUILD = ('rm -rf .venv && FASTCIFAR_TORCH="torch==2.9.1 torchvision==0.24.1 --index-url '
               'https://download.pytorch.org/whl/cu126" FASTCIFAR_DALI_EXTRA=dali '
               "./scripts/setup.sh")


def unusable_gpu_hint(nvidia_smi: str, cuda_available: bool, torch_version: str,
                      torch_cuda: str | None) -> str | None:
    """What to do when ``nvidia-smi`` lists a GPU that torch cannot use, else None.

    ``nvidia-smi`` is the output of ``nvidia-smi --query-gpu=name,driver_version
    --format=csv,noheader`` ("" when it is missing or failed); the rest is torch's answer.
    """
    gpus = [line.strip() for line in nvidia_smi.splitlines() if line.strip()]
    if cuda_available or not gpus:
        return None
    name, _, driver = gpus[0].partition(",")
    seen = f"nvidia-smi lists {name.strip()} (driver {driver.strip() or 'unknown'})"
    if torch_cuda is None:
        why = f"torch {torch_version} is a CPU-only build"
    else:
        why = (f"torch {torch_version} (built for CUDA {torch_cuda}) cannot use it: the driver "
               f"is most likely older than CUDA {torch_cuda} needs")
    return (f"warning: {seen}, but {why}. Install a build for this driver (check the CUDA "
            f"version nvidia-smi reports), e.g. CUDA 12.6:\n  {OTHER_BUILD}\n"
            "(FASTCIFAR_DALI_EXTRA: dali for a CUDA 12 build, dali-cu13 for CUDA 13)")


def gpu_hint() -> str | None:
    """``unusable_gpu_hint`` for this machine."""
    import torch

    out = ""
    if shutil.which("nvidia-smi"):
        try:
            run = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version",
                                  "--format=csv,noheader"], capture_output=True, text=True,
                                 timeout=30)
            out = run.stdout if run.returncode == 0 else ""
        except (OSError, subprocess.SubprocessError):
            pass
    return unusable_gpu_hint(out, torch.cuda.is_available(), torch.__version__,
                             torch.version.cuda)
