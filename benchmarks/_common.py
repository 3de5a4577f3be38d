"""What every benchmark shares: the machine it ran on, and saving results as JSON."""

import json
import os
from pathlib import Path

from fastcifar.env import environment

RESULTS = Path(__file__).resolve().parent / "results"

__all__ = ["RESULTS", "environment", "print_table", "save_result"]


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
