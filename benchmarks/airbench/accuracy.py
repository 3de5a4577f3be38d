"""airbench94 (the fastest public CIFAR-10 trainer) and ours side by side: same card, same data.

    python -m benchmarks.airbench accuracy --data-dir data [--recipe fast] [--runs 1]
        [-- TRAIN FLAGS]

Each trainer runs in its own child process, so neither inherits the other's state: importing
airbench turns on `torch.backends.cudnn.benchmark` for the whole process, and compile caches and
allocator pools would otherwise carry over. airbench gets our data as its ./cifar10/{train,test}.pt
(uint8 NHWC `images`, `labels`, `classes`) in a scratch folder; `airbench.warmup94()` (cuDNN
tuning, untimed) then `airbench.train94()`. Ours is `python -m fastcifar.train --recipe R`.

Timing, as airbench counts it: airbench's own `total_time_seconds` (CUDA events around its
whitening initialisation and its training steps; its evaluation excluded); ours is
`train_seconds_total` (CUDA events around the training steps; compile and per-epoch evaluation
excluded; our data-dependent initialisation, where a model has one, is not in it). The wall time
of the whole train94() call is kept too. Headline ratio: our training seconds to reach
airbench94's own final accuracy, over airbench's seconds (on the JPEG copy 94 % is out of
reach of both, so "time to 94 %" alone would say nothing). Writes
benchmarks/results/<--name>.json (default vs_airbench.json), rewritten after every trainer.

Without CUDA (the GPU suite's CPU rehearsal) airbench is not trained: the child checks that the
API this script calls exists (when airbench is installed) and says so in the JSON; our recipe runs
with whatever train flags follow `--`. Install airbench with `pip install '.[compare]'`, or on
an offline GPU machine staged by `bash scripts/maint/gpu_suite.sh --stage`.
"""

import argparse
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.airbench import command, rerun_argv
from benchmarks.airbench.peer import airbench_data_folder, airbench_own_seconds
from benchmarks.harness import invocation, print_table, save_result
from fastcifar.launch import UNATTENDED, read_run, train_command, train_in_child

AIRBENCH_API = ("warmup94", "train94", "CifarLoader", "evaluate")


def airbench_child(folder: Path, result: Path) -> int:
    """In a fresh process: train airbench94 once in ``folder`` and write ``result`` (JSON)."""
    import airbench

    missing = [name for name in AIRBENCH_API if not hasattr(airbench, name)]
    if missing:
        result.write_text(json.dumps({"error": f"airbench lacks {missing}"}))
        return 1
    if not torch.cuda.is_available():
        result.write_text(json.dumps({"skipped": "no CUDA: airbench not trained; its API "
                                                 f"({', '.join(AIRBENCH_API)}) is present"}))
        return 0
    os.chdir(folder)  # airbench reads ./cifar10 whatever loader it is given
    printed = Path("airbench_stdout.txt")
    with open(printed, "w") as sink, contextlib.redirect_stdout(sink):
        airbench.warmup94()
        torch.cuda.synchronize()
        start = time.perf_counter()
        model = airbench.train94()
        torch.cuda.synchronize()
        wall = time.perf_counter() - start
    loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
    accuracy = 100.0 * airbench.evaluate(model, loader, tta_level=2)
    text = printed.read_text()
    result.write_text(json.dumps({
        "seconds": airbench_own_seconds(text), "wall_seconds_train94": wall,
        "test_acc": accuracy, "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "printed": text}))
    return 0


def time_airbench(folder: Path, work: Path, run: int) -> dict:
    result = work / f"airbench-{run}.json"
    code = subprocess.run([*rerun_argv("accuracy"), "--airbench-child", str(folder),
                           str(result)]).returncode
    if code != 0 or not result.is_file():
        return {"error": f"airbench's run failed (exit {code})"}
    return json.loads(result.read_text())


def first_reaching(history: list[dict], accuracy: float) -> dict | None:
    """The first epoch whose test accuracy is at least ``accuracy`` (and its training time)."""
    return next(({"epoch": h["epoch"], "train_seconds": h["train_seconds_total"]}
                 for h in history if h["test_acc"] >= accuracy), None)


def train_child(recipe: str, data_dir: str, out: Path, seed: int, extra: list[str]) -> str | None:
    """One run of ours in its own process; None, or the error to report."""
    flags = ["--recipe", recipe, "--data-dir", data_dir, "--out", str(out), "--seed", str(seed),
             *UNATTENDED, *extra]
    code = train_in_child(flags)
    return None if code == 0 else \
        f"our run failed (exit {code}): {' '.join(train_command(flags)[1:])}"


def time_ours(recipe: str, data_dir: str, out: Path, seed: int, extra: list[str]) -> dict:
    error = train_child(recipe, data_dir, out, seed, extra)
    if error:
        return {"error": error}
    run = read_run(out)
    summary, config, history = run.summary, run.config, run.history
    reach = {row["threshold"]: row["train_seconds"] for row in summary["thresholds"]}
    return {"seconds": summary["train_seconds_total"], "test_acc": summary["final"]["test_acc"],
            **{f"seconds_to_{t:g}": reach.get(t) for t in (86.0, 88.0, 90.0, 92.0, 94.0)},
            "compile_seconds": config["compile_seconds"], "speed": config["speed"],
            "cudnn_benchmark": (config["environment"].get("gpu_details") or {}).get(
                "cudnn_benchmark"), "history": history}


def compare(rows: list[dict]) -> None:
    """Per run: our time to airbench's final accuracy, and its ratio to airbench's time."""
    for ours in (r for r in rows if r["trainer"].startswith("fastcifar") and "history" in r):
        ab = next((r for r in rows if r["trainer"] == "airbench94" and r["run"] == ours["run"]
                   and r.get("seconds")), None)
        if ab is None:
            continue
        reached = first_reaching(ours["history"], ab["test_acc"])
        ours["seconds_to_airbench_acc"] = reached and round(reached["train_seconds"], 2)
        ours["ratio_vs_airbench"] = reached and round(reached["train_seconds"] / ab["seconds"], 3)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--airbench-child"]:
        return airbench_child(Path(argv[1]), Path(argv[2]))
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(prog=command("accuracy"), description=__doc__.splitlines()[0],
                                     epilog="flags after -- go to every run of ours")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--runs", type=int, default=1, help="runs of each (seeds 0..n-1)")
    parser.add_argument("--name", default="vs_airbench", help="result file name (no .json)")
    parser.add_argument("--work", default=None, help="our run folders (default: scratch)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(own)
    # found, not imported: importing airbench would switch on cudnn.benchmark in this process
    have_airbench = importlib.util.find_spec("airbench") is not None
    if not have_airbench and torch.cuda.is_available():
        print("error: airbench is not installed: pip install '.[compare]' (offline: "
              "bash scripts/maint/gpu_suite.sh --stage, then .stage/restore.sh)", file=sys.stderr)
        return 2
    where = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU (rehearsal)"
    rows = []

    def save() -> Path:
        compare(rows)
        return save_result(args.name, {
            "recipe": args.recipe, "train_flags": extra, "data_dir": args.data_dir, "rows": rows,
            "timing": "airbench: its own total_time_seconds (CUDA events: whitening init + "
                      "training, evaluation excluded); ours: train_seconds_total (CUDA events "
                      "around training steps; compile and per-epoch evaluation excluded)"},
            args.out, command=invocation(parser.prog, argv), settings=vars(args))

    with airbench_data_folder(args.data_dir) as scratch:
        work = Path(args.work) if args.work else scratch
        work.mkdir(parents=True, exist_ok=True)
        for run in range(args.runs):
            ab = time_airbench(scratch, work, run) if have_airbench else {
                "skipped": "airbench is not installed (no CUDA here either)"}
            rows.append({"trainer": "airbench94", "run": run, **ab})
            print(f"airbench94 run {run}: {ab.get('test_acc', ab.get('skipped', ab.get('error')))}"
                  f" in {ab.get('seconds')} s", flush=True)
            save()
            # named as time_to_accuracy.py names its runs, so that it can count this seed
            ours = time_ours(args.recipe, args.data_dir, work / f"base_seed{run}", run, extra)
            rows.append({"trainer": f"fastcifar {args.recipe}", "run": run, **ours})
            print(f"fastcifar {args.recipe} run {run}: {ours.get('test_acc', ours.get('error'))}"
                  f" in {ours.get('seconds')} s", flush=True)
            saved = save()
    print(f"CIFAR-10 time to accuracy on {where}, data {args.data_dir}")
    table = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()
              if k not in ("history", "printed", "speed")} for r in rows]
    print_table(table, ["trainer", "run", "seconds", "test_acc", "seconds_to_92", "seconds_to_94",
                        "seconds_to_airbench_acc", "ratio_vs_airbench", "compile_seconds"])
    print(f"saved {saved}")
    return 1 if any("error" in r for r in rows) else 0
