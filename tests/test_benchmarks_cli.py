"""Every benchmark runs as ``python -m benchmarks.NAME`` and answers ``--help``; a benchmark that
is a package of comparisons answers it for each of its subcommands too."""

import importlib
import pkgutil
import subprocess
import sys

import pytest

from conftest import REPO


def _commands() -> list[list[str]]:
    commands = []
    for found in pkgutil.iter_modules([str(REPO / "benchmarks")]):
        if found.name.startswith("_"):
            continue
        commands.append([f"benchmarks.{found.name}"])
        if found.ispkg:
            package = importlib.import_module(f"benchmarks.{found.name}")
            commands += [[f"benchmarks.{found.name}", sub] for sub in package.SUBCOMMANDS]
    return commands


COMMANDS = _commands()


def test_the_package_holds_benchmarks():
    assert len(COMMANDS) >= 5 and (REPO / "benchmarks" / "__init__.py").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_benchmark_answers_help(command):
    proc = subprocess.run([sys.executable, "-m", *command, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and " ".join(command) in proc.stdout


def test_a_package_of_comparisons_refuses_an_unknown_one():
    proc = subprocess.run([sys.executable, "-m", "benchmarks.airbench", "speed"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown comparison 'speed'")
