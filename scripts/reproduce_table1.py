#!/usr/bin/env python3
"""The report's Table 1 beside ours: train the rows, keep each run's record, write the table.

    .venv/bin/python scripts/reproduce_table1.py                 # the table from the results
    .venv/bin/python scripts/reproduce_table1.py --run --rows row1_cnn --data-dir data
    .venv/bin/python scripts/reproduce_table1.py --export runs/table1/row1_cnn

``--run`` trains each row in OUT/<recipe> (continuing one that stopped), then exports it. Export
turns a run folder into ``benchmarks/results/table1-<recipe>-<device>.json``: the per-epoch
history, the 86/88/90/92 % table (epoch and training seconds), the final and best-by-test epochs,
hardware, versions and the command; never the checkpoints. The table (``table1.md``) and the
overlay of the test-accuracy curves (``table1_test_acc.png``, the report's best epochs marked)
are always rebuilt from the exported files, so they show only what was measured; a row without a
result says "needs a GPU" (rows 3-6) or "not run". Flags this script does not know (e.g.
``--data-dir``, ``--seed``) go to every ``fastcifar.train`` run.
"""

import argparse
import json
import sys
from pathlib import Path

from fastcifar import train
from fastcifar.figures import plot_overlay
from fastcifar.launch import read_run, start_or_continue
from fastcifar.metrics import threshold_table
from fastcifar.recipes import RECIPES, TABLE1, get_recipe

ROOT = Path(__file__).resolve().parent.parent
DATA_NAME = "CIFAR-10 (JPEG q75 copy)"
RESULTS = ROOT / "benchmarks" / "results"
THRESHOLDS = (86.0, 88.0, 90.0, 92.0)
# the report's Table 1 (docs/report.md): parameters, best test accuracy and its epoch,
# one run each on the original CIFAR-10
REPORTED = {
    "row1_cnn": (1_838_346, 82.11, 81),
    "row2_cnn_aug_plateau": (1_838_346, 87.5, 69),
    "row3_resnet_hybrid": (8_886_538, 88.86, 60),
    "row4_resnet_avgpool": (4_954_378, 89.65, 74),
    "row5_resnet_maxpool": (5_159_146, 91.74, 99),
    "row6_resnet_final": (5_159_146, 92.64, 81),
}
SWITCH_FLAGS = {"amp": "--amp", "channels_last": "--channels-last", "compile": "--compile",
                "bn_relu": "--bn-relu"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="store_true", help="train the rows first (resumes)")
    parser.add_argument("--export", nargs="+", metavar="RUN_DIR", default=[],
                        help="export these run folders to the results, then write the table")
    parser.add_argument("--rows", default=",".join(TABLE1), help="comma-separated recipes")
    parser.add_argument("--out", default="runs/table1", help="--run: where the runs go")
    parser.add_argument("--epochs", type=int, default=None, help="--run: shorten every run")
    parser.add_argument("--results", default=str(RESULTS),
                        help="where exported rows are kept and the table is written")
    parser.add_argument("--note", default="", help="a line saved with each export (e.g. how "
                        "the cores were shared)")
    args, passthrough = parser.parse_known_args(argv)
    results = Path(args.results)
    rows = args.rows.split(",")
    unknown = [r for r in rows if r not in TABLE1]
    if unknown:
        print(f"error: --rows: unknown {', '.join(unknown)}; choose from {', '.join(TABLE1)}")
        return 2
    if passthrough and not args.run:
        print(f"error: unrecognized arguments: {' '.join(passthrough)} (training flags need "
              "--run)")
        return 2
    run_dirs = [Path(d) for d in args.export]
    for run_dir in run_dirs:
        if not (run_dir / "metrics.jsonl").exists():
            print(f"error: --export {run_dir}: no metrics.jsonl there; give a run folder of "
                  "fastcifar.train")
            return 2
    if args.run:
        for name in rows:
            code = run_row(name, Path(args.out) / name, args.epochs, passthrough)
            if code != 0:
                return code
            run_dirs.append(Path(args.out) / name)
    for run_dir in run_dirs:
        path = export_run(run_dir, results, args.note)
        print(f"exported {run_dir} -> {path}")
    text = write_table(results)
    print(text)
    return 0


def run_row(name: str, run_dir: Path, epochs: int | None, passthrough: list[str]) -> int:
    more = ["--epochs", str(epochs)] if epochs else []
    # stopped or finished earlier: continued; in this process, so Ctrl-C stops the table here
    flags = start_or_continue(run_dir, ["--recipe", name, *more, *passthrough],
                              [*more, *passthrough])
    print(f"== {name}: python -m fastcifar.train {' '.join(flags)}", flush=True)
    code = train.main(flags)
    if code != 0:
        print(f"error: {name} stopped with exit {code}; its outputs are in {run_dir}")
    return code


def command_of(config: dict) -> str:
    """The command line that trains this run's configuration from scratch."""
    recipe = config["recipe"]
    flags = ["--recipe", recipe["name"]]
    base = RECIPES.get(recipe["name"])
    if base is not None:
        for key, value in recipe.items():
            default = getattr(base, key)
            if key != "name" and value != default:
                if isinstance(value, bool):
                    value = "on" if value else "off"
                flags += [f"--{key.replace('_', '-')}", str(value)]
    for key, flag in SWITCH_FLAGS.items():
        if config["switches"][key] != "auto":
            flags += [flag, str(config["switches"][key])]
    for key in ("seed", "val_split"):
        if config.get(key):
            flags += [f"--{key.replace('_', '-')}", str(config[key])]
    threads = config["environment"].get("torch_threads")
    prefix = f"OMP_NUM_THREADS={threads} " if threads else ""
    return prefix + "python -m fastcifar.train " + " ".join(flags)


def export_run(run_dir: Path, results: Path, note: str = "") -> Path:
    """Write the run's record as results/table1-<recipe>-<device>.json (atomically)."""
    run = read_run(run_dir)
    config, history = run.config, run.history
    name, epochs = config["recipe"]["name"], config["recipe"]["epochs"]
    last = history[-1]
    by_test = max(history, key=lambda h: h["test_acc"])
    params, acc, epoch = REPORTED.get(name, (None, None, None))
    record = {
        "recipe": name, "data": DATA_NAME,
        "status": "finished" if last["epoch"] >= epochs else f"{epochs}, unfinished",
        "command": command_of(config),
        "parameters": config["model_parameters"],
        "final": {"epoch": last["epoch"], "test_acc": last["test_acc"]},
        "best_by_test": {"epoch": by_test["epoch"], "test_acc": by_test["test_acc"],
                         "note": "epoch chosen on the test set, as the report did"},
        "thresholds": threshold_table(history, thresholds=THRESHOLDS),
        "threshold_note": "first epoch whose test accuracy reached each threshold, and the "
                          "training seconds to the end of it (evaluation excluded)",
        "train_seconds_total": last["train_seconds_total"],
        "eval_seconds_total": sum(h.get("eval_seconds", 0.0) for h in history),
        "report": {"parameters": params, "best_test_acc": acc, "best_epoch": epoch,
                   "note": "one run on the original CIFAR-10"},
        "device": config["device"], "speed": config.get("speed"),
        "environment": config["environment"], "note": note,
        "history": history,
    }
    results.mkdir(parents=True, exist_ok=True)
    path = results / f"table1-{name}-{config['device']}.json"
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return path


def load_results(results: Path) -> dict[str, list[dict]]:
    """Every exported record in ``results``, by recipe (a recipe may have a CPU and a GPU one)."""
    found: dict[str, list[dict]] = {}
    for path in sorted(results.glob("table1-row*-*.json")):
        record = json.loads(path.read_text())
        found.setdefault(record["recipe"], []).append(record)
    return found


def table_lines(found: dict[str, list[dict]]) -> list[str]:
    header = ["#", "recipe", "parameters", "report: best test acc (epoch)",
              "ours: best by test (epoch)", "ours: final epoch", "86 %", "88 %", "90 %", "92 %",
              "hardware"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name in TABLE1:
        params, acc, epoch = REPORTED[name]
        head = [name[3], f"`{name}`", f"{params:,}", f"{acc:.2f} % ({epoch})"]
        records = found.get(name) or [None]
        for record in records:
            if record is None:
                missing = "needs a GPU" if get_recipe(name).model != "cnn" else "not run"
                cells = [missing, "", "", "", "", "", ""]
            else:
                final = record["final"]
                epochs = record["history"][-1]["epoch"]
                of = "" if record["status"] == "finished" else f" of {record['status']}"
                cells = [f"{record['best_by_test']['test_acc']:.2f} % "
                         f"({record['best_by_test']['epoch']})",
                         f"{final['test_acc']:.2f} % (epoch {epochs}{of})"]
                for row in record["thresholds"]:
                    cells.append(f"ep {row['epoch']}, {row['train_seconds']:,.0f} s"
                                 if row["epoch"] else "not reached")
                cells.append(hardware(record))
            lines.append("| " + " | ".join(head + cells) + " |")
    return lines


def hardware(record: dict) -> str:
    env = record["environment"]
    if env.get("gpu"):
        return f"{env['gpu']}, torch {env['torch']}"
    threads = env.get("torch_threads")
    cpu = env["cpu"].replace("(R)", "").replace("(TM)", "")
    return (f"{env.get('cpu_cores')}-core {cpu}"
            + (f" ({threads} thread{'s' if threads != 1 else ''})" if threads else "")
            + f", {record['speed']['amp'] if record.get('speed') else ''}"
              f", torch {env['torch']}")


def notes_by_text(found: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Each distinct export note, with the recipes it was given for."""
    notes: dict[str, list[str]] = {}
    for records in found.values():
        for r in records:
            if r.get("note"):
                notes.setdefault(r["note"], []).append(r["recipe"])
    return notes


def write_table(results: Path) -> str:
    found = load_results(results)
    lines = table_lines(found)
    notes = [f"Data: {DATA_NAME} for ours; the report ran once on the original CIFAR-10.",
             "Best by test = the epoch chosen on the test set, as the report did (optimistic); "
             "final = the last epoch. 86-92 %: the first epoch whose test accuracy reached it, "
             "and the training seconds to the end of that epoch (evaluation excluded).",
             "How the runs were made: " + ("; ".join(
                 f"{', '.join(names)}: {note}" for note, names in notes_by_text(found).items())
                 or "no notes")]
    text = "\n".join(lines) + "\n\n" + "\n\n".join(notes) + "\n"
    results.mkdir(parents=True, exist_ok=True)
    (results / "table1.md").write_text(text)
    curves = {f"{r['recipe']} ({r['device']})": r["history"] for rs in found.values() for r in rs}
    marks = {f"report row {name[3]}": (epoch, acc)
             for name, (_, acc, epoch) in REPORTED.items()
             if any(name == r["recipe"] for rs in found.values() for r in rs)}
    if curves:
        plot_overlay(curves, results / "table1_test_acc.png", marks=marks,
                     title=f"Table 1 on {DATA_NAME}: test accuracy per epoch "
                           "(stars: the report's best epochs)")
    return text


if __name__ == "__main__":
    sys.exit(main())
