"""benchmarks/kernel_bn_relu.py: its order of configurations, its budget, and a CPU rehearsal
end to end (tiny shapes, the kernels under the interpreter)."""

import importlib
import json
import os
import subprocess
import sys

import pytest

from conftest import REPO

MODULE = "benchmarks.kernel_bn_relu"


def _module():
    return importlib.import_module(MODULE)


def test_configurations_most_important_first():
    bench = _module()
    default = bench.configurations(["fp32", "bf16"], bench.VARIANTS, full=False, quick=False,
                                   batch=512)
    # bf16 channels_last at resnet_final's shapes first, then bf16 NCHW, then fp32
    keys = [(c["dtype"], c["layout"]) for c in default]
    assert keys[:10] == [("bf16", "channels_last")] * 10
    assert keys[10:14] == [("bf16", "nchw")] * 4
    assert {k for k in keys[14:]} == {("fp32", "channels_last"), ("fp32", "nchw")}
    assert default[0]["shape"] == (512, 32, 32, 32)
    assert len(bench.configurations(["bf16", "fp32"], bench.VARIANTS, True, False, 512)) == 40
    assert len(bench.configurations(["bf16"], bench.VARIANTS, False, False, 512)) == 14


def _run(tmp_path, *args):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # it sets it itself
    proc = subprocess.run([sys.executable, "-m", MODULE, "--device", "cpu", "--quick",
                           "--out", str(tmp_path), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads((tmp_path / "kernel_bn_relu.json").read_text())


def test_cpu_rehearsal_end_to_end(tmp_path):
    pytest.importorskip("triton")
    result = _run(tmp_path, "--variants", "bn_relu", "bn_add_relu")
    assert result["complete"] and not result["skipped"]
    assert [r["variant"] for r in result["rows"]][:2] == ["bn_relu", "bn_add_relu"]
    assert len(result["rows"]) == len(result["planned"]) == 8
    for row in result["rows"]:
        assert row["triton_ms"] > 0 and row["eager_ms"] > 0 and row["triton_GBs"] > 0
    assert result["traffic_tensors"] == {"bn_relu": 8, "bn_add_relu": 11}
    assert any("compile provider skipped" in note for note in result["notes"])


def test_budget_skips_and_records(tmp_path):
    pytest.importorskip("triton")
    result = _run(tmp_path, "--budget-s", "0")
    assert not result["complete"] and not result["rows"]
    assert [s["config"] for s in result["skipped"]] == result["planned"]


def test_without_cuda_exits_cleanly():
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    proc = subprocess.run([sys.executable, "-m", MODULE], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0 and "needs a CUDA device" in proc.stdout


@pytest.mark.parametrize("triton_version, numpy_version, breaks", [
    ("3.6.0", "2.4.6", True), ("3.6.0", "2.3.5", False), ("3.8.0", "2.4.6", False),
    ("3.7.1", "2.5.2", False), ("3.5.0+git1", "2.4.0", True)])
def test_knows_which_interpreter_and_numpy_fail_together(triton_version, numpy_version, breaks):
    # the GPU machine's triton 3.6 with numpy >= 2.4 breaks only the CPU rehearsal: say so
    assert _module().interpreter_breaks(triton_version, numpy_version) is breaks
