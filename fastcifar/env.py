"""The machine and software a result was measured on; stored with every run and benchmark."""

import os
import platform
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


def git_commit() -> str:
    """The source tree's commit; ``$FASTCIFAR_COMMIT`` where the tree has no .git (the GPU
    machine gets a copy of the working tree without it; scripts/gpu_suite.sh --stage records
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
            # process state: importing airbench switches it on (benchmarks/vs_airbench.py)
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


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
