#!/usr/bin/env python3
"""Run the report's six Table-1 recipes and write a table like the report's, plus one figure.

    .venv/bin/python scripts/reproduce_table1.py --data-dir data [--epochs 1] [--out runs/table1]

Writes OUT/table1.md (experiment, parameters, best and final test accuracy, benchmark epochs and
training times) and OUT/table1_test_acc.png (the six test-accuracy curves). Every other flag
(e.g. --device, --val-split, --train-subset) is passed to each run of fastcifar.train.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

from fastcifar import train  # noqa: E402
from fastcifar.figures import plot_overlay  # noqa: E402
from fastcifar.recipes import TABLE1, get_recipe  # noqa: E402

REPORTED = {"row1_cnn": "82.11 % (81)", "row2_cnn_aug_plateau": "87.5 % (69)",
            "row3_resnet_hybrid": "88.86 % (60)", "row4_resnet_avgpool": "89.65 % (74)",
            "row5_resnet_maxpool": "91.74 % (99)", "row6_resnet_final": "92.64 % (81)"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/table1")
    parser.add_argument("--epochs", type=int, default=None, help="shorten every run")
    parser.add_argument("--rows", default=",".join(TABLE1), help="comma-separated recipe names")
    args, passthrough = parser.parse_known_args(argv)
    out = Path(args.out)
    histories, rows = {}, []
    for name in args.rows.split(","):
        run_dir = out / name
        flags = ["--recipe", name, "--out", str(run_dir), *passthrough]
        if args.epochs:
            flags += ["--epochs", str(args.epochs)]
        if (run_dir / "last.pt").exists():  # finished or interrupted earlier: continue it
            flags = ["--resume", str(run_dir), *passthrough]
            flags += ["--epochs", str(args.epochs)] if args.epochs else []
        print(f"== {name}: python -m fastcifar.train {' '.join(flags)}", flush=True)
        code = train.main(flags)
        if code != 0:
            print(f"error: {name} failed (exit {code}); its outputs are in {run_dir}")
            return code
        summary = json.loads((run_dir / "summary.json").read_text())
        histories[name] = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
        rows.append(table_row(name, summary))
    header = ("| # | experiment | parameters | epochs | best test acc (epoch) | final test acc "
              "| 86 % | 88 % | 90 % | 92 % | 94 % | report |")
    lines = [header, "|" + "---|" * 12] + rows
    note = ("Best = epoch chosen on the test set, as the report did; final = last epoch. "
            "Benchmarks: first epoch reaching the test accuracy, and training time to it "
            "(evaluation excluded).")
    text = "\n".join(lines) + "\n\n" + note + "\n"
    (out / "table1.md").write_text(text)
    plot_overlay(histories, out / "table1_test_acc.png", title="Table 1: test accuracy per epoch")
    print(text + f"wrote {out / 'table1.md'} and {out / 'table1_test_acc.png'}")
    return 0


def table_row(name: str, summary: dict) -> str:
    recipe = get_recipe(name)
    cells = [name[3], recipe.description.split(": ", 1)[-1].rsplit(" (", 1)[0],
             f"{summary['parameters']:,}", str(summary["epochs"]),
             f"{summary['best_by_test']['test_acc']:.2f} % ({summary['best_by_test']['epoch']})",
             f"{summary['final']['test_acc']:.2f} %"]
    for row in summary["thresholds"]:
        cells.append(f"ep {row['epoch']}, {row['train_seconds']:.0f} s" if row["epoch"] else "-")
    cells.append(REPORTED[name])
    return "| " + " | ".join(cells) + " |"


if __name__ == "__main__":
    sys.exit(main())
