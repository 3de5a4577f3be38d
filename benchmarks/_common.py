"""What every benchmark shares: the machine it ran on, and saving results as JSON."""

import json
import os
import sys
from pathlib import Path

from fastcifar.env import environment

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "command", "environment", "rerun_command", "print_table", "save_result"]


def command(module_file: str) -> str:
    """How a benchmark is run, for its usage line: ``python -m benchmarks.NAME``."""
    return f"python -m {__package__}.{Path(module_file).stem}"


def rerun_command(module_file: str) -> list[str]:
    """The argv that runs this benchmark again in a fresh process (which finds the package the
    way this one did: from the same working directory and PYTHONPATH)."""
    return [sys.executable, "-m", f"{__package__}.{Path(module_file).stem}"]


def save_result(name: str, payload: dict, out_dir: Path | None = None) -> Path:
    """Write ``payload`` plus the environment to ``<out_dir>/<name>.json`` (default results/).

    Atomic (temp file, then rename): benchmarks call it after every row, so a run stopped at its
    time limit leaves every row it measured in a readable file.
    """
    out_dir = Path(out_dir) if out_dir else RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"environment": environment(), **payload}, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned table on stdout."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths)))
