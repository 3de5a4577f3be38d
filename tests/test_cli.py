"""The data check and analysis commands: outputs, and errors without tracebacks."""

import subprocess
import sys

import numpy as np
import pytest

from fastcifar import analyze
from fastcifar.data import load_cifar10


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, cwd=cwd)


def test_data_check_reports_counts(synthetic_root):
    result = run("fastcifar.data", "--data-dir", str(synthetic_root), "--no-download")
    assert result.returncode == 0, result.stderr
    assert "train: 500 images" in result.stdout and "test: 100 images" in result.stdout


@pytest.mark.parametrize("module", ["fastcifar.data", "fastcifar.analyze"])
def test_missing_data_is_a_clear_error(tmp_path, module):
    result = run(module, "--data-dir", str(tmp_path / "none"), "--no-download")
    assert result.returncode == 2
    assert result.stderr.startswith("error: no CIFAR-10 data found")
    assert "Traceback" not in result.stderr


def test_corrupt_data_is_a_clear_error(synthetic_root):
    (synthetic_root / "cifar-10-batches-py" / "test_batch").write_bytes(b"\x80\x02garbage")
    result = run("fastcifar.data", "--data-dir", str(synthetic_root))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "test_batch" in result.stderr and "corrupt" in result.stderr


def test_bad_flag_is_rejected():
    result = run("fastcifar.analyze", "--data-dri", "x")
    assert result.returncode == 2 and "unrecognized arguments" in result.stderr


def test_analyze_writes_both_figures(synthetic_root, tmp_path, capsys):
    out = tmp_path / "analysis"
    assert analyze.main(["--data-dir", str(synthetic_root), "--out", str(out)]) == 0
    for name in ("fig1_examples.png", "fig2_class_counts.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    printed = capsys.readouterr().out
    mean, _ = analyze.channel_stats(load_cifar10(synthetic_root).train_images)
    assert f"{mean[0]:.4f}" in printed


def test_channel_stats_match_numpy():
    images = np.random.default_rng(0).integers(0, 256, size=(50, 32, 32, 3), dtype=np.uint8)
    mean, std = analyze.channel_stats(images)
    pixels = images.reshape(-1, 3) / 255.0
    np.testing.assert_allclose(mean, pixels.mean(0), rtol=1e-12)
    np.testing.assert_allclose(std, pixels.std(0), rtol=1e-9)
