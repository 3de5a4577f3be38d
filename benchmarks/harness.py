"""One harness for the throughput benchmarks: a benchmark is its rows and a setup function.

A row is a dict of settings. ``setup(row)`` builds what the row measures and returns
``(work, items)``: a callable doing one unit of work (a training step, a loader batch, a kernel
call) and how many images or elements one call handles. ``Bench.run`` calls the work ``warmup``
times untimed, then times ``steps`` calls between two device synchronisations; with ``rounds``
above 1 it alternates the rows of one call round by round (so a neighbour's load hits each
alike, setup building afresh each round) and keeps the median round. Every finished row is
printed and the JSON rewritten at once (atomically: a run stopped at a time limit leaves every
row it measured); ``Bench.report`` prints the table.

    from benchmarks.harness import Bench

    def setup(row):
        model = create_model(row["model"])
        x = torch.randn(row["batch"], 3, 32, 32)
        return (lambda: model(x)), row["batch"]

    bench = Bench("forward-cpu", parser.prog, argv, vars(args), ["model", "batch", "images_per_s"])
    bench.run([{"model": "cnn", "batch": 64}, {"model": "cnn", "batch": 512}], setup,
              steps=10, warmup=2, rounds=3)
    return bench.report("forward throughput on the CPU")   # 0, or 1 if a row failed

writes benchmarks/results/forward-cpu.json: {"environment", "command", "settings", **meta, "rows"}.
Row keys that start with "_" reach setup only. A setup may raise ``Skip("why")``: the row is kept
with that note. Any other error is kept in the row's "error" and the next row runs: one
out-of-memory batch size must not lose the others (the exit code still says it failed).
"""

import json
import os
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

from fastcifar.engine import synchronize
from fastcifar.env import environment

RESULTS = Path(__file__).resolve().parent / "results"
CPU = torch.device("cpu")


class Skip(Exception):
    """Raised by a setup: the row is not measured here, for the reason given."""


def command(module_file: str) -> str:
    """How a benchmark is run, for its usage line: ``python -m benchmarks.NAME``."""
    return f"python -m {__package__}.{Path(module_file).stem}"


def rerun_command(module_file: str) -> list[str]:
    """The argv that runs this benchmark again in a fresh process (which finds the package the
    way this one did: from the same working directory and PYTHONPATH)."""
    return [sys.executable, "-m", f"{__package__}.{Path(module_file).stem}"]


def write_json(path: Path, payload: dict) -> Path:
    """Readers (and a killed run) see the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def invocation(prog: str, argv) -> str:
    """The command line that made a result (``argv`` None: this process's own arguments)."""
    return " ".join([prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])


def save_result(name: str, payload: dict, out_dir: Path | None = None, *, command: str,
                settings: dict) -> Path:
    """``payload`` with the machine and how it was made, to ``<out_dir>/<name>.json`` (default
    results/): a number is only worth what says where and how it was measured."""
    return write_json(Path(out_dir or RESULTS) / f"{name}.json",
                      {"environment": environment(), "command": command, "settings": settings,
                       **payload})


def print_table(rows: list[dict], columns: list[str]) -> None:
    """A plain aligned table on stdout."""
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(str(row.get(c, "")).ljust(w) for c, w in zip(columns, widths)))


def time_calls(work, calls: int, device: torch.device = CPU) -> float:
    """Seconds for ``calls`` calls of ``work``, the device synchronised before and after (the
    work is queued asynchronously on a GPU; that is what CUDA events would measure)."""
    synchronize(device)
    start = time.perf_counter()
    for _ in range(calls):
        work()
    synchronize(device)
    return time.perf_counter() - start


def median_of(rounds: list[dict]) -> dict:
    """Each measured value's median over the rounds, to 4 significant figures (whole numbers
    stay whole): tiny rehearsal rates and large GPU ones alike."""
    out = {}
    for key in rounds[0]:
        value = statistics.median(r[key] for r in rounds)
        out[key] = round(value) if isinstance(rounds[0][key], int) else float(f"{value:.4g}")
    return out


def refuse(message: str) -> int:
    """Bad input: one ``error:`` line on stderr, and 2 for the caller to return."""
    print(f"error: {message}", file=sys.stderr)
    return 2


def subcommands(prog: str, mains: dict, argv=None) -> int:
    """Run ``mains[argv[0]](rest, prog)``; without a subcommand the first one, on every flag."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and not argv[0].startswith("-"):
        if argv[0] not in mains:
            return refuse(f"unknown subcommand {argv[0]!r}; choose one of {', '.join(mains)}")
        return mains[argv[0]](argv[1:], f"{prog} {argv[0]}")
    return next(iter(mains.values()))(argv, prog)


class Bench:
    """The rows of one result file: measured, kept, printed and saved."""

    def __init__(self, name, prog, argv, settings, columns, *, meta=None, out=None,
                 device=CPU, unit="images_per_s"):
        self.path = Path(out or RESULTS) / f"{name}.json"
        self.command = invocation(prog, argv)
        self.settings, self.columns = settings, list(columns)
        self.meta = {} if meta is None else meta  # shared: a caller may update it between saves
        self.device, self.unit = torch.device(device), unit
        self.environment = environment()
        self.rows, self.failed = [], False

    def save(self) -> Path:
        return write_json(self.path, {"environment": self.environment, "command": self.command,
                                      "settings": self.settings, **self.meta, "rows": self.rows})

    def add(self, row: dict) -> dict:
        self.rows.append(row)
        self.save()
        return row

    def timed(self, setup, row: dict, steps: int, warmup: int) -> dict:
        """One round of a row: its unit's rate (or seconds a call) and the warm-up's seconds."""
        work, items = setup(row)
        warm = time_calls(work, warmup, self.device)
        seconds = time_calls(work, steps, self.device)
        out = {self.unit: round(items * steps / seconds, 1)} if self.unit else \
            {"seconds": seconds / steps}
        return out | ({"warmup_seconds": round(warm, 2)} if warmup else {})

    def run(self, rows, setup=None, *, steps=1, warmup=0, rounds=1, measure=None,
            reduce=median_of) -> list[dict]:
        """Measure ``rows`` (by ``measure(row) -> dict``, default the timed setup), keep them."""
        measure = measure or (lambda row: self.timed(setup, row, steps, warmup))
        results, ended, kept = [[] for _ in rows], [None] * len(rows), []
        for round_ in range(rounds):
            for i, row in enumerate(rows):
                public = {k: v for k, v in row.items() if not k.startswith("_")}
                label = " / ".join(map(str, public.values()))
                if ended[i] is None:
                    try:
                        results[i].append(measure(row))
                        said = ", ".join(f"{k} {v}" for k, v in results[i][-1].items())
                        print(f"  {label}: {said}", flush=True)
                    except Skip as why:
                        ended[i] = {"note": f"skipped: {why}"}
                    except Exception as err:  # the row's failure is its result; the next runs
                        ended[i] = {"error": f"{type(err).__name__}: {err}"}
                        self.failed = True
                        print(f"  {label}: {ended[i]['error']}", file=sys.stderr)
                if round_ == rounds - 1:
                    kept.append(self.add(public | (ended[i] or reduce(results[i]))))
        return kept

    def report(self, title: str | None = None) -> int:
        """The table and where it is saved; the exit code: 1 if any row failed."""
        if title:
            print(f"\n{title}")
        extra = [c for c in ("note", "error") if c not in self.columns
                 and any(c in r for r in self.rows)]
        if self.rows:
            print_table(self.rows, self.columns + extra)
        print(f"saved {self.save()}")
        return 1 if self.failed else 0
