"""Time and epochs to 86/88/90/92/94 % test accuracy, and final accuracy, over N seeds.

    python benchmarks/time_to_accuracy.py --recipe fast --runs 3 [-- --data-dir data ...]

Each seed is one `python -m fastcifar.train --recipe R --seed S` (evaluation and compile time
excluded from its training time, see fastcifar.train); the runs go one after another on one
device (a sweep with one job), so their times compare. Runs left under --work from an earlier,
interrupted call are reused. Prints a markdown table (mean +- sample std over seeds) and writes
benchmarks/results/time_to_accuracy-<recipe>-<device>.json with the per-seed summaries.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

import torch  # noqa: E402

from benchmarks._common import save_result  # noqa: E402
from fastcifar.sweep import execute, markdown, plan_runs, summarize  # noqa: E402


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--runs", type=int, default=3, help="seeds 0..runs-1")
    parser.add_argument("--work", default=None, help="run folders (default runs/tta-<recipe>)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(own)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if "--device" in extra:
        device = extra[extra.index("--device") + 1]
    work = Path(args.work or f"runs/tta-{args.recipe}")
    runs = plan_runs({}, list(range(args.runs)), ["--recipe", args.recipe, "--no-figures", *extra])
    execute(runs, work, jobs=1, devices=None)
    rows = summarize(runs)
    table = markdown(rows)
    per_seed = [json.loads((Path(r["dir"]) / "summary.json").read_text())
                for r in runs if r.get("rc") == 0]
    print(f"{args.recipe}: {len(per_seed)} of {args.runs} runs finished ({device})")
    print(table)
    saved = save_result(f"time_to_accuracy-{args.recipe}-{device}",
                        {"recipe": args.recipe, "extra_flags": extra, "table": rows,
                         "markdown": table, "runs": per_seed}, args.out)
    print(f"saved {saved}")
    return 0 if len(per_seed) == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
