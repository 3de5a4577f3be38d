"""Every module in benchmarks/ runs as ``python -m benchmarks.NAME`` and answers ``--help``."""

import subprocess
import sys

import pytest

from conftest import REPO

BENCHMARKS = sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")
                    if not p.stem.startswith("_"))


def test_the_package_holds_benchmarks():
    assert len(BENCHMARKS) >= 5 and (REPO / "benchmarks" / "__init__.py").exists()


@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_answers_help(name):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{name}", "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and f"benchmarks.{name}" in proc.stdout
