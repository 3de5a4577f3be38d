"""Many runs at once: ``python -m fastcifar.sweep --seeds 0 1 2 -- --model cnn --epochs 2``.

Every combination of the ``--grid`` overrides (``--grid lr=0.01,0.05 --grid batch_size=100,200``)
is run once per seed, each as its own ``python -m fastcifar.train`` subprocess with its own
``--out`` under the sweep's folder. At most ``--jobs`` run at a time: by default one per visible
GPU (each pinned to its GPU with CUDA_VISIBLE_DEVICES), or one on the CPU (one training process
already uses every core). Run again with the same ``--out``, a sweep reads its finished runs
(their summary.json), continues its unfinished ones (``--resume``) and starts the rest.

Ctrl-C, SIGTERM or SIGHUP reach every running child, which checkpoints its step and exits; the
sweep then reports what is done and how to continue. A child whose sweep died (kill -9) stops
itself the same way, so no run outlives its sweep.

The result, sweep.md and sweep.json in the sweep's folder: per combination, mean and standard
deviation over the seeds of the final test accuracy, of the epoch and training seconds at which
each accuracy threshold was first reached, and of the total training time.

A bounded pool of subprocesses is all the scheduling a handful of runs per machine needs; for
sweeps over many machines use a cluster scheduler (or Ray Tune) around ``fastcifar.train``.
"""

import argparse
import contextlib
import itertools
import json
import os
import queue
import shlex
import signal
import statistics
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from . import launch, lifecycle, train
from .cli import as_argv, given
from .lifecycle import run_cli
from .options import HONOURED, REMEMBERED, RunOptions, resume_rule
from .runfolder import default_out

# train flags the sweep sets itself, per run
OWN_FLAGS = ("--out", "--seed", "--resume")


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m fastcifar.sweep", description=__doc__.split("\n\n")[0],
        epilog="everything after -- goes to every run of python -m fastcifar.train")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="S")
    parser.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2",
                        help="a train flag and its values (KEY as the flag without --, - or _); "
                             "repeat for more keys: every combination runs")
    parser.add_argument("--jobs", type=int, default=None,
                        help="runs at a time (default: one per visible GPU, else 1)")
    parser.add_argument("--out", default=None, help="sweep folder (default runs/sweep-<time>); "
                        "give it again to continue an interrupted sweep")
    return parser


def check_unique(seeds: list[int], items: list[str], parser) -> None:
    """A repeated seed would count one run twice; a repeated --grid key would drop values."""
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        parser.error(f"--seeds repeats {', '.join(map(str, repeated))}; give each seed once")
    keys = [item.partition("=")[0].strip().lstrip("-").replace("_", "-") for item in items]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        parser.error(f"--grid {twice[0]} is given more than once; give all its values in one "
                     f"--grid {twice[0]}=V1,V2,...")


def parse_grid(items: list[str], parser) -> dict[str, list[str]]:
    """``["lr=0.01,0.05"]`` -> ``{"lr": ["0.01", "0.05"]}``; flags checked against train's."""
    known = {opt for action in train.get_args_parser()._actions for opt in action.option_strings}
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip().lstrip("-").replace("_", "-")
        if not sep or not key or not values:
            parser.error(f"--grid {item!r}: write KEY=V1,V2 (e.g. lr=0.01,0.05)")
        if f"--{key}" not in known or f"--{key}" in OWN_FLAGS:
            parser.error(f"--grid {item!r}: python -m fastcifar.train has no flag --{key} "
                         "that a sweep may vary")
        grid[key] = [v.strip() for v in values.split(",")]
        if len(set(grid[key])) < len(grid[key]) or "" in grid[key]:
            parser.error(f"--grid {item!r}: a value is empty or repeated; give each once")
    return grid


def plan_runs(grid: dict[str, list[str]], seeds: list[int], train_args: list[str]) -> list[dict]:
    """One entry per (combination, seed): its name, its group (the combination) and its argv."""
    runs = []
    for values in itertools.product(*grid.values()):
        overrides = dict(zip(grid, values))
        group = ",".join(f"{k}={v}" for k, v in overrides.items()) or "base"
        flags = [part for k, v in overrides.items() for part in (f"--{k}", v)]
        for seed in seeds:
            runs.append({"name": f"{group}_seed{seed}".replace("/", "_"), "group": group,
                         "seed": seed, "argv": [*train_args, *flags, "--seed", str(seed)]})
    return runs


def check_runs(runs: list[dict], parser) -> None:
    """Parse every run's flags with train's own parser before anything starts."""
    train_parser = train.get_args_parser()
    for run in runs:
        try:
            args = train_parser.parse_args([*run["argv"], "--out", "x"])
        except SystemExit:
            parser.error(f"run {run['name']}: python -m fastcifar.train rejects "
                         f"{' '.join(run['argv'])} (its message is above)")
        train.resolve_recipe(args, train_parser)


def resume_flags(argv: list[str]) -> list[str]:
    """Those of the run's flags that --resume honours (options.HONOURED and REMEMBERED, and
    --epochs); the rest is in the run's config.json."""
    args = train.get_args_parser().parse_args(argv)
    named = {k: v for k, v in given(args, RunOptions).items()
             if resume_rule(k) in (HONOURED, REMEMBERED)}
    epochs = ["--epochs", str(args.epochs)] if args.epochs is not None else []
    return epochs + as_argv(RunOptions, named)


class Children:
    """The running training processes; a stop signal to the sweep is passed on to each, and
    no new one starts after it."""

    def __init__(self):
        self.signum, self._procs, self._lock = None, set(), threading.Lock()

    def handle(self, signum, frame) -> None:
        self.signum = self.signum or signum
        with self._lock:
            for proc in self._procs:
                proc.send_signal(signum)

    def run(self, cmd: list[str], env: dict, log) -> int | None:
        """The child's exit code; None if the sweep was stopped before it started."""
        with self._lock:
            if self.signum is not None:
                return None
            # its own session: a terminal's Ctrl-C reaches it once, through handle()
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
            self._procs.add(proc)
        try:
            return proc.wait()
        finally:
            with self._lock:
                self._procs.discard(proc)


def status(run: dict) -> str:
    """finished, stopped (--stop-after: resumable), interrupted, failed or not started."""
    rc = run.get("rc")
    if (Path(run["dir"]) / "summary.json").is_file() and rc == 0:
        return "finished"
    if rc is None:
        return "not started"
    if rc == 0:
        return "stopped"
    return "interrupted" if rc >= 128 or rc < 0 else "failed"  # < 0: killed before its handler


def execute(runs: list[dict], out: Path, jobs: int, devices: list[str] | None,
            children: Children) -> None:
    """Run what has no summary.json yet, ``jobs`` at a time, continuing those with a last.pt;
    fills each run's "rc" and "dir". With ``devices`` (GPU ids) each run holds one of them."""
    free = queue.Queue()
    for slot in devices or [None] * jobs:
        free.put(slot)
    env = launch.child_env()
    if devices is None and jobs > 1:  # share the cores instead of oversubscribing them
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // jobs)))

    def one(run: dict) -> None:
        run_dir = out / run["name"]
        run["dir"] = str(run_dir)
        if (run_dir / "summary.json").is_file():
            run["rc"] = 0
            print(f"[sweep] {run['name']}: done before, reading it", flush=True)
            return
        slot = free.get()
        try:
            run_env = env if slot is None else env | {"CUDA_VISIBLE_DEVICES": slot}
            run_dir.mkdir(parents=True, exist_ok=True)
            flags = launch.start_or_continue(run_dir, run["argv"], resume_flags(run["argv"]))
            cmd = launch.train_command([*flags, "--quiet"])
            where = f" on GPU {slot}" if slot is not None else ""
            with open(run_dir / "train.log", "a") as log:
                if children.signum is None:
                    print(f"[sweep] {run['name']}{where}: {' '.join(cmd[1:])}", flush=True)
                run["rc"] = children.run(cmd, run_env, log)
            if run["rc"] is not None:
                print(f"[sweep] {run['name']}: {_said(run)}", flush=True)
        finally:
            free.put(slot)

    workers = len(devices) if devices else jobs
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, runs))


def _said(run: dict) -> str:
    what = status(run)
    if what == "finished":
        return "ok"
    if what == "failed":
        return f"FAILED (exit {run['rc']}), see {Path(run['dir']) / 'train.log'}"
    return f"{what} (exit {run['rc']}), resumable"


def visible_gpus() -> list[str]:
    """The GPU ids a child may be pinned to: this process's CUDA_VISIBLE_DEVICES entries if it
    is set (so a sweep confined to some GPUs stays on them), else 0..count-1."""
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")]
    return visible[:count] if visible != [""] else [str(i) for i in range(count)]


def _mean_std(values: list[float]) -> dict | None:
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "std": std, "n": len(values)}


def summarize(runs: list[dict]) -> list[dict]:
    """One row per combination, statistics over its seeds' summary.json files."""
    rows = []
    for group in dict.fromkeys(r["group"] for r in runs):
        members = [r for r in runs if r["group"] == group]
        done = [launch.read_run(r["dir"]).summary for r in members if status(r) == "finished"]
        thresholds = {}
        for threshold in sorted({t["threshold"] for s in done for t in s["thresholds"]}):
            reached = [t for s in done for t in s["thresholds"]
                       if t["threshold"] == threshold and t["epoch"]]
            thresholds[f"{threshold:g}"] = {
                "reached": len(reached), "of": len(done),
                "epoch": _mean_std([t["epoch"] for t in reached]),
                "train_seconds": _mean_std([t["train_seconds"] for t in reached])}
        rows.append({
            "group": group, "seeds": [r["seed"] for r in members],
            "failed": [r["name"] for r in members if status(r) == "failed"],
            "unfinished": [r["name"] for r in members
                           if status(r) not in ("finished", "failed")],
            "final_test_acc": _mean_std([s["final"]["test_acc"] for s in done]),
            "train_seconds_total": _mean_std([s["train_seconds_total"] for s in done]),
            "thresholds": thresholds})
    return rows


def _fmt(stat: dict | None, digits: int = 2, unit: str = "") -> str:
    if stat is None:
        return "-"
    return f"{stat['mean']:.{digits}f} ± {stat['std']:.{digits}f}{unit}"


def markdown(rows: list[dict]) -> str:
    """The table: one line per combination, mean ± std (sample std over seeds; 0 with one)."""
    thresholds = list(dict.fromkeys(t for row in rows for t in row["thresholds"]))
    head = ["run", "seeds", "final test acc %", "train s total",
            *[f"{float(t):g} %: epoch, train s (reached)" for t in thresholds]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        missing = [f"{len(row[k])} {k}" for k in ("failed", "unfinished") if row[k]]
        cells = [row["group"], str(len(row["seeds"]) - len(row["failed"]) - len(row["unfinished"]))
                 + (f" ({', '.join(missing)})" if missing else ""),
                 _fmt(row["final_test_acc"]), _fmt(row["train_seconds_total"], 1)]
        for t in thresholds:
            th = row["thresholds"].get(t)
            if th is None or not th["reached"]:
                cells.append(f"- (0/{th['of'] if th else 0})")
            else:
                cells.append(f"{_fmt(th['epoch'], 1)}, {_fmt(th['train_seconds'], 1, ' s')} "
                             f"({th['reached']}/{th['of']})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, sys.argv[1:] if argv is None else list(argv))


def _main(argv: list[str]) -> int:
    own, train_args = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = get_args_parser()
    args = parser.parse_args(own)
    clash = [a for a in train_args if a.split("=")[0] in OWN_FLAGS]
    if clash:
        parser.error(f"the sweep sets {', '.join(OWN_FLAGS)} per run; drop {clash} after --")
    check_unique(args.seeds, args.grid, parser)
    grid = parse_grid(args.grid, parser)
    runs = plan_runs(grid, args.seeds, train_args)
    check_runs(runs, parser)
    if args.jobs is not None and args.jobs < 1:
        parser.error("--jobs must be at least 1")
    devices = visible_gpus()[: args.jobs] or None
    jobs = len(devices) if devices else (args.jobs or 1)
    out = _folder(args.out, parser)
    where = f"{len(devices)} GPU(s)" if devices else f"{jobs} CPU process(es)"
    print(f"[sweep] {len(runs)} runs, {where} at a time -> {out}", flush=True)
    children = Children()
    with forwarding(children):
        execute(runs, out, jobs, devices, children)
    write_report(runs, out, train_args, grid, args.seeds)
    return _outcome(runs, children.signum, [sys.executable, "-m", "fastcifar.sweep", *argv], out)


def _folder(given: str | None, parser) -> Path:
    if given is None:
        return default_out("sweep")
    try:
        Path(given).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        parser.error(f"--out {given} cannot be written ({err.strerror}); pick a folder you can "
                     "write to with --out DIR")
    return Path(given)


@contextlib.contextmanager
def forwarding(children: Children):
    """The stop signals, passed on to every child while the runs last."""
    previous = {sig: signal.signal(sig, children.handle) for sig in lifecycle.STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def write_report(runs: list[dict], out: Path, train_args: list[str], grid: dict,
                 seeds: list[int]) -> None:
    """sweep.md and sweep.json over the finished runs (a partial sweep: those so far)."""
    for run in runs:
        run["status"] = status(run)
    rows = summarize(runs)
    table = markdown(rows)
    (out / "sweep.json").write_text(json.dumps(
        {"train_args": train_args, "grid": grid, "seeds": seeds, "rows": rows,
         "runs": [{k: r.get(k) for k in ("name", "group", "seed", "dir", "rc", "status")}
                  for r in runs],
         "note": "mean ± sample standard deviation over the seeds that finished; thresholds: "
                 "over the runs that reached them"}, indent=2) + "\n")
    (out / "sweep.md").write_text(table)
    print(table, end="")


def _outcome(runs: list[dict], signum: int | None, command: list[str], out: Path) -> int:
    """The closing lines, and the exit code: 128 + signal if stopped by one, 1 if a run
    failed, else 0 (runs that --stop-after paused included)."""
    counts = {s: [r["name"] for r in runs if r["status"] == s] for s in
              ("finished", "stopped", "interrupted", "failed", "not started")}
    if counts["failed"]:
        print(f"[sweep] {len(counts['failed'])} run(s) failed: {', '.join(counts['failed'])}",
              file=sys.stderr)
    left = len(runs) - len(counts["finished"]) - len(counts["failed"])
    if left:
        said = ", ".join(f"{len(v)} {k}" for k, v in counts.items() if v)
        stopped_by = f"stopped by {lifecycle.signal_name(signum)}: " if signum else ""
        print(f"[sweep] {stopped_by}{said}; continue with: {shlex.join(command)}"
              + ("" if any(a.startswith("--out") for a in command) else
                 f" --out {shlex.quote(str(out))}"), flush=True)
    if signum:
        return lifecycle.exit_code(signum)
    return 1 if counts["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
