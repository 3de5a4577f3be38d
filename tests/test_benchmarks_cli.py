"""Every benchmark runs as ``python -m benchmarks.NAME`` and answers ``--help``; a benchmark with
subcommands (a module or a package of comparisons) answers it for each of them too. A module
without ``main`` (the harness, the shared workloads) is no benchmark."""

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
        module = importlib.import_module(f"benchmarks.{found.name}")
        if not found.ispkg and not hasattr(module, "main"):
            continue
        commands.append([f"benchmarks.{found.name}"])
        commands += [[f"benchmarks.{found.name}", sub]
                     for sub in getattr(module, "SUBCOMMANDS", ())]
    return commands


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


COMMANDS = _commands()


def test_the_package_holds_benchmarks():
    assert len(COMMANDS) >= 5 and (REPO / "benchmarks" / "__init__.py").exists()


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_benchmark_answers_help(command):
    proc = subprocess.run([sys.executable, "-m", *command, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("usage:") and " ".join(command) in proc.stdout


@pytest.mark.parametrize("module, says", [("benchmarks.airbench", "unknown comparison"),
                                          ("benchmarks.train_throughput", "unknown subcommand"),
                                          ("benchmarks.loader_throughput", "unknown subcommand")])
def test_a_benchmark_with_subcommands_refuses_an_unknown_one(module, says):
    proc = subprocess.run([sys.executable, "-m", module, "speed"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith(f"error: {says} 'speed'")
    assert len(proc.stderr.splitlines()) == 1


def test_the_merged_benchmarks_are_subcommands():
    names = {" ".join(c).removeprefix("benchmarks.") for c in COMMANDS}
    assert {"train_throughput ladder", "train_throughput switches", "train_throughput malloc",
            "loader_throughput augment", "loader_throughput load"} <= names
    assert not names & {"cpu_malloc", "cpu_auto_switches", "data_load", "harness", "workloads"}


@pytest.mark.parametrize("argv", [
    ["train_throughput", "malloc", "--model", "cnn", "--batches", "64,x"],
    ["train_throughput", "--device", "cuda"] if not _cuda() else ["train_throughput", "--bad"],
    ["loader_throughput", "load", "--data-dir", "/nonexistent/cifar"],
    ["train_throughput", "switches", "--rounds", "two"],
])
def test_bad_input_is_one_error_line(argv):
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{argv[0]}", *argv[1:]], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert proc.returncode == 2 and len(errors) == 1 and "Traceback" not in proc.stderr
