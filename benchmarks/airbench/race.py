"""airbench94 against our race recipe on the CPU, back to back, same data, cores and seeds.

    python -m benchmarks.airbench race --data-dir data [--seeds 0,1] [--recipe race10]
        [--control] [--resume] [-- TRAIN FLAGS for ours, e.g. an ablation: --lookahead off]

One invocation trains, for each seed, airbench94 (PyPI airbench 0.1.8, unmodified, behind the
CPU shims of benchmarks/airbench/peer.py) and ``python -m fastcifar.train --recipe R``, each in
its own child process. The order alternates (seed 0: airbench first; seed 1: ours first; ...)
so a host that slows down over the run does not favour either side. ``--control`` adds a third
trainer, airbench94 in a process given the allocator setting our trainer makes on the CPU
(``--cpu-malloc keep``): the gap to it is what our recipe and code buy, not that setting.

Both are timed as airbench times itself: its data-dependent initialisation (the whitening fit),
its training steps and its final test-time-augmented evaluation; per-epoch evaluation and
compilation are not counted. airbench: the last `total_time_seconds` it prints. Ours:
``init_seconds`` + ``train_seconds_total`` + the last epoch's evaluation (the same TTA pass).
Writes benchmarks/results/<--name>.json after every run (``--resume`` keeps the runs already in
it and trains the rest) and prints the table: mean accuracy and time over the seeds, our time
over airbench's, and whether ours is at least as accurate in at most --target-ratio its time.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from benchmarks.airbench import command, rerun_argv
from benchmarks.airbench.accuracy import train_child
from benchmarks.airbench.peer import airbench_data_folder, run_airbench_cpu
from benchmarks.harness import RESULTS, invocation, print_table, save_result
from fastcifar.launch import read_run
from fastcifar.recipes import RACE_RECIPE

TIMING = ("both: data-dependent init (whitening fit) + training steps + the final TTA "
          "evaluation; per-epoch evaluation and compilation excluded. airbench: its own "
          "total_time_seconds; ours: init_seconds + train_seconds_total + the last epoch's "
          "eval_seconds. Wall clock on the CPU.")


def airbench_child(folder: str, result: str, seed: int, epochs: float | None,
                   keep_memory: bool) -> int:
    """In a fresh process: airbench94 once, on the CPU, written to ``result`` as JSON."""
    out = run_airbench_cpu("94", Path(folder), seed=seed, epochs=epochs,
                           keep_freed_memory=keep_memory)
    Path(result).write_text(json.dumps(out))
    return 0


def race_airbench(folder: Path, work: Path, seed: int, epochs: float | None,
                 keep_memory: bool = False) -> dict:
    result = work / f"airbench{'-keep' if keep_memory else ''}-seed{seed}.json"
    cmd = [*rerun_argv("race"), "--airbench-child", str(folder), str(result), str(seed),
           "" if epochs is None else str(epochs), "keep" if keep_memory else "default"]
    code = subprocess.run(cmd).returncode
    if code != 0 or not result.is_file():
        return {"error": f"airbench94 failed (exit {code})"}
    out = json.loads(result.read_text())
    return {"test_acc": round(out["test_acc"], 2), "seconds": out["airbench_seconds"],
            "wall_seconds": round(out["wall_seconds"], 1), "cpu_malloc": out["cpu_malloc"],
            "amp": out["amp"],
            "printed": out["printed"]}


def race_ours(recipe: str, data_dir: str, out: Path, seed: int, extra: list[str]) -> dict:
    error = train_child(recipe, data_dir, out, seed, extra)
    if error:
        return {"error": error}
    run = read_run(out)
    parts = {"init_seconds": run.config.get("init_seconds", 0.0),
             "train_seconds": run.last["train_seconds_total"],
             "final_tta_seconds": run.last["eval_seconds"]}
    amp = run.config["speed"]["amp"]
    return {"test_acc": run.last["test_acc"], "seconds": round(run.race_seconds(), 1),
            "amp": "fp32" if amp == "off" else amp,
            **{k: round(v, 2) for k, v in parts.items()},
            "compile_seconds": run.config["compile_seconds"], "speed": run.config["speed"],
            "recipe": run.config["recipe"], "history": run.history}


CONTROL = "airbench94+keep"  # airbench94 given our CPU allocator setting (--control)


def summarize(rows: list[dict], target_ratio: float) -> dict:
    """Per trainer: mean accuracy and time over its finished seeds; ours against airbench (and,
    with the control's rows, against airbench with our allocator setting)."""
    by = {}
    for trainer in ("airbench94", "ours", CONTROL):
        done = [r for r in rows if r["trainer"] == trainer and "error" not in r]
        if done:
            accs, secs = [r["test_acc"] for r in done], [r["seconds"] for r in done]
            by[trainer] = {"seeds": [r["seed"] for r in done],
                           "test_acc_mean": round(statistics.mean(accs), 2),
                           "test_acc_std": round(statistics.stdev(accs), 2) if len(accs) > 1
                           else None,
                           "seconds_mean": round(statistics.mean(secs), 1),
                           "amp": sorted({r.get("amp", "unrecorded") for r in done})}

    def against(rival: str) -> dict:
        ab, us = by[rival], by["ours"]
        ratio = us["seconds_mean"] / ab["seconds_mean"]
        gap = round(us["test_acc_mean"] - ab["test_acc_mean"], 2)
        # a race counts only in one arithmetic: emulated bf16 against fp32 measures the CPU
        same_amp = us["amp"] == ab["amp"] and len(us["amp"]) == 1
        out = {"ratio": round(ratio, 3), "acc_gap": gap, "same_amp": same_amp,
               "met": bool(gap >= 0 and ratio <= target_ratio and same_amp
                           and set(us["seeds"]) == set(ab["seeds"]))}
        common = sorted(set(us["seeds"]) & set(ab["seeds"]))
        if common != sorted(us["seeds"]):  # e.g. a control run for some seeds only
            def mean(trainer, key):
                return statistics.mean(r[key] for r in rows if r["trainer"] == trainer
                                       and r.get("seed") in common and "error" not in r)
            out["same_seeds"] = {
                "seeds": common, "ratio": round(mean("ours", "seconds")
                                                / mean(rival, "seconds"), 3) if common else None,
                "acc_gap": round(mean("ours", "test_acc") - mean(rival, "test_acc"), 2)
                if common else None}
        return out

    if "airbench94" in by and "ours" in by:
        by |= against("airbench94")
        by["target"] = f"ours >= airbench94's mean accuracy in <= {target_ratio}x its time"
    if CONTROL in by and "ours" in by:
        by["control"] = against(CONTROL)
    return by


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise ValueError(f"--seeds needs distinct integers >= 0 like 0,1, not {text!r}")
    return seeds


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--airbench-child"]:
        folder, result, seed, epochs, malloc = argv[1:6]
        return airbench_child(folder, result, int(seed), float(epochs) if epochs else None,
                              malloc == "keep")
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(prog=command("race"), description=__doc__.splitlines()[0],
                                     epilog="flags after -- go to every run of ours")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--data-name", default="CIFAR-10 (JPEG q75 copy)",
                        help="what the data is, for the table and the JSON")
    parser.add_argument("--recipe", default=RACE_RECIPE, help="ours (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--airbench-epochs", type=float, default=None,
                        help="shorten airbench (a smoke test; default: its own 9.9)")
    parser.add_argument("--target-ratio", type=float, default=0.7)
    parser.add_argument("--name", default="race_airbench_cpu", help="result file (no .json)")
    parser.add_argument("--work", default="runs/race", help="run folders and airbench's data")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    parser.add_argument("--control", action="store_true",
                        help=f"also race {CONTROL}: airbench94 in a process given our CPU "
                             "allocator setting (cpu_malloc keep), how much of the gap it is")
    parser.add_argument("--resume", action="store_true",
                        help="keep the finished runs of an earlier invocation's JSON")
    args = parser.parse_args(own)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    try:
        import airbench  # noqa: F401  (here only: the children import it for real)
    except ImportError:
        print("error: airbench is not importable; install it with pip install '.[compare]'",
              file=sys.stderr)
        return 2
    path = Path(args.out or RESULTS) / f"{args.name}.json"
    rows = []
    if args.resume and path.is_file():
        earlier = json.loads(path.read_text())
        if earlier.get("recipe") != args.recipe or earlier.get("train_flags") != extra:
            print(f"error: --resume: {path} raced {earlier.get('recipe')} with flags "
                  f"{earlier.get('train_flags')}; give the same, or another --name",
                  file=sys.stderr)
            return 2
        rows = [r for r in earlier["rows"] if "error" not in r]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    def save() -> Path:
        return save_result(args.name, {
            "data_name": args.data_name, "data_dir": args.data_dir, "recipe": args.recipe,
            "train_flags": extra, "seeds": seeds, "airbench_epochs": args.airbench_epochs,
            "timing": TIMING, "summary": summarize(rows, args.target_ratio), "rows": rows},
            args.out, command=invocation(parser.prog, argv), settings=vars(args))

    with airbench_data_folder(args.data_dir) as scratch:
        for i, seed in enumerate(seeds):
            order = ("airbench94", "ours", CONTROL)[: 3 if args.control else 2]
            for trainer in order if i % 2 == 0 else order[::-1]:
                if any(r["trainer"] == trainer and r["seed"] == seed for r in rows):
                    continue  # --resume: done earlier
                if trainer in ("airbench94", CONTROL):
                    result = race_airbench(scratch, work, seed, args.airbench_epochs,
                                          keep_memory=trainer == CONTROL)
                else:
                    run_dir = work / f"{args.recipe}-seed{seed}"
                    if run_dir.exists():  # a stale folder from a stopped race
                        shutil.rmtree(run_dir)
                    result = race_ours(args.recipe, args.data_dir, run_dir, seed, extra)
                rows.append({"trainer": trainer, "seed": seed, **result})
                shown = result.get("error") or (f"{result['test_acc']:.2f} % in "
                                                f"{result['seconds']} s")
                print(f"{trainer} seed {seed}: {shown}", flush=True)
                saved = save()
    saved = save()
    summary = summarize(rows, args.target_ratio)
    print(f"airbench94 vs fastcifar {args.recipe} {' '.join(extra)} on the CPU, {args.data_name}")
    print_table([{k: v for k, v in r.items() if k in ("trainer", "seed", "test_acc", "seconds",
                                                      "init_seconds", "train_seconds",
                                                      "final_tta_seconds", "amp", "error")}
                 for r in rows], ["trainer", "seed", "amp", "test_acc", "seconds",
                                  "init_seconds", "train_seconds", "final_tta_seconds", "error"])
    if "ratio" in summary:
        print(f"mean: airbench94 {summary['airbench94']['test_acc_mean']:.2f} % in "
              f"{summary['airbench94']['seconds_mean']:.0f} s; ours "
              f"{summary['ours']['test_acc_mean']:.2f} % in {summary['ours']['seconds_mean']:.0f}"
              f" s: {summary['acc_gap']:+.2f} points in {summary['ratio']:.2f}x the time "
              f"({'met' if summary['met'] else 'not met'}: {summary['target']})")
    if "control" in summary:
        control = summary["control"]
        print(f"control: {CONTROL} {summary[CONTROL]['test_acc_mean']:.2f} % in "
              f"{summary[CONTROL]['seconds_mean']:.0f} s; ours {control['acc_gap']:+.2f} points "
              f"in {control['ratio']:.2f}x its time")
    print(f"saved {saved}")
    return 1 if any("error" in r for r in rows) else 0
