"""Training in a child process, and reading back the run folder it leaves.

A sweep, the Table 1 script and the benchmarks that train all do the same two things: run
``python -m fastcifar.train`` in a process of its own (so each run starts from a clean
interpreter, and a crash or a stop signal ends that run only), then read its config.json,
metrics.jsonl and summary.json. Both are written once, here.
"""

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .lifecycle import PARENT_ENV

# for a child nobody watches: no progress lines, no figures, and a missing dataset is an error
# rather than a download
UNATTENDED = ("--quiet", "--no-figures", "--no-download")


def train_command(flags: Sequence[str], wrapper: Sequence[str] = ()) -> list[str]:
    """``python [wrapper] -m fastcifar.train flags``; ``wrapper`` e.g. ``-m torch.distributed.run
    --nproc_per_node 1``."""
    return [sys.executable, *wrapper, "-m", "fastcifar.train", *flags]


def start_or_continue(run_dir: Path, start: Sequence[str],
                      resume: Sequence[str] = ()) -> list[str]:
    """The flags that continue ``run_dir`` from its checkpoint (``--resume`` and ``resume``) if it
    has one, else start it afresh there (``start`` and ``--out run_dir``)."""
    if (Path(run_dir) / "last.pt").is_file():
        return ["--resume", str(run_dir), *resume]
    return [*start, "--out", str(run_dir)]


def child_env(base: dict | None = None, **extra: str) -> dict:
    """The environment of a training child: ``base`` (default this process's), ``extra``, and
    this process's id, so the child stops (with a checkpoint) if its launcher dies."""
    return {**(os.environ if base is None else base), **extra, PARENT_ENV: str(os.getpid())}


def train_in_child(flags: Sequence[str], wrapper: Sequence[str] = (), env: dict | None = None,
                   **popen) -> int:
    """Train in a child process and wait for it; its exit code."""
    env = child_env() if env is None else env
    return subprocess.run(train_command(flags, wrapper), env=env, **popen).returncode


@dataclass(frozen=True)
class RunRecord:
    """What a training run wrote down: its config, one row per epoch, and its summary (None
    until the run finished)."""

    config: dict
    history: list[dict]
    summary: dict | None

    @property
    def last(self) -> dict:
        return self.history[-1]

    def race_seconds(self) -> float:
        """The time a race counts, as airbench counts its own: the data-dependent init, the
        training steps and the final evaluation (per-epoch evaluation and compiles excluded)."""
        return (self.config.get("init_seconds", 0.0) + self.last["train_seconds_total"]
                + self.last["eval_seconds"])


def read_history(run_dir: Path) -> list[dict]:
    """metrics.jsonl: one dict per finished epoch."""
    with open(Path(run_dir) / "metrics.jsonl") as rows:
        return [json.loads(line) for line in rows if line.strip()]


def read_run(run_dir: Path) -> RunRecord:
    run_dir = Path(run_dir)
    summary = run_dir / "summary.json"
    return RunRecord(config=json.loads((run_dir / "config.json").read_text()),
                     history=read_history(run_dir),
                     summary=json.loads(summary.read_text()) if summary.is_file() else None)
