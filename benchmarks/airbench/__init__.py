"""fastcifar against airbench94, the fastest public CIFAR-10 trainer.

    python -m benchmarks.airbench accuracy  # same GPU, same data: time to airbench's accuracy
    python -m benchmarks.airbench race      # on the CPU, seed by seed: our race recipe vs airbench
    python -m benchmarks.airbench ablation  # which of airbench's parts pay on our race recipe
    python -m benchmarks.airbench cpu       # airbench alone on the CPU: its accuracy on our data

airbench itself (its data format, its own timer, the shims that run it on the CPU) is in
``peer``; each comparison is a module of its own, named as its subcommand.
"""

import sys

SUBCOMMANDS = ("accuracy", "race", "ablation", "cpu")


def command(subcommand: str) -> str:
    """How a comparison is run, for its usage line."""
    return f"python -m {__name__} {subcommand}"


def rerun_argv(subcommand: str) -> list[str]:
    """The argv that runs ``subcommand`` again in a fresh process (airbench changes process-wide
    state when imported, so each of its runs gets a process of its own)."""
    return [sys.executable, "-m", __name__, subcommand]
