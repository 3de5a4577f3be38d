"""The kernels compile for a real GPU (sm_90), checked on any machine with triton."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


def test_kernels_compile_for_gpu_targets():
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
        from triton.backends.nvidia.compiler import get_ptxas  # noqa: F401
    except ImportError:
        pytest.skip(f"triton {triton.__version__} has no NVIDIA backend here")
    # a subprocess: this one may have imported the kernels as interpreted functions
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run([sys.executable, str(REPO / "tests/kernels/aot_compile.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "compiled" in proc.stdout
