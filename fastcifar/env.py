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
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, cwd=Path(__file__).parent, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


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
        "python": sys.version.split()[0],
        "torch": str(torch.__version__),  # a str subclass that weights_only loading refuses
        "numpy": numpy.__version__,
        "commit": git_commit(),
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
