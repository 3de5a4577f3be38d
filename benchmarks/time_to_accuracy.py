"""Time and epochs to 86/88/90/92/94 % test accuracy, and final accuracy, over N seeds.

    python -m benchmarks.time_to_accuracy --recipe fast --runs 3 [-- --data-dir data ...]
    python -m benchmarks.time_to_accuracy --recipe fast --seeds 1 2 --work W  # more seeds into W

Each seed is one `python -m fastcifar.train --recipe R --seed S` (training time as airbench
counts it: the training steps only, compile and per-epoch evaluation excluded, see
fastcifar.engine); the runs go one after another on one device, so their times compare. Runs
left under --work from an earlier, interrupted call are reused, so a later call with other
seeds adds to the same table. Prints a markdown table (mean +- sample std over seeds) and writes
benchmarks/results/time_to_accuracy-<recipe>-<device>.json with the per-seed summaries, rewritten
after every seed (a run stopped at a time limit keeps the seeds that finished).
"""

import argparse
import sys
from pathlib import Path

import torch

from benchmarks.harness import command, invocation, save_result
from fastcifar.launch import read_run
from fastcifar.sweep import Children, execute, forwarding, markdown, plan_runs, summarize


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    own, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv \
        else (argv, [])
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--runs", type=int, default=3, help="seeds 0..runs-1")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="these seeds instead of 0..runs-1")
    parser.add_argument("--work", default=None, help="run folders (default runs/tta-<recipe>)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(own)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if "--device" in extra:
        device = extra[extra.index("--device") + 1]
    work = Path(args.work or f"runs/tta-{args.recipe}")
    seeds = args.seeds if args.seeds is not None else list(range(args.runs))
    # every finished seed under --work counts, also those of an earlier call with other seeds
    earlier = sorted(int(d.name.removeprefix("base_seed")) for d in work.glob("base_seed*")
                     if (d / "summary.json").is_file() and d.name[9:].isdigit())
    runs = plan_runs({}, sorted(set(seeds) | set(earlier)),
                     ["--recipe", args.recipe, "--no-figures", *extra])
    how = invocation(parser.prog, argv)
    children = Children()  # a stop signal reaches the run in progress, which checkpoints
    with forwarding(children):
        for run in runs:  # one at a time, saving after each: a time limit loses one seed at most
            execute([run], work, jobs=1, devices=None, children=children)
            finished = save(args, runs, extra, device, how)
    print(f"{args.recipe}: {finished} of {len(runs)} runs finished ({device})")
    print(markdown(summarize([r for r in runs if "rc" in r])))
    return 0 if finished == len(runs) else 1


def save(args, runs, extra, device, how: str) -> int:
    done = [r for r in runs if "rc" in r]
    rows = summarize(done)
    per_seed = [read_run(r["dir"]).summary for r in done if r["rc"] == 0]
    saved = save_result(f"time_to_accuracy-{args.recipe}-{device}",
                        {"recipe": args.recipe, "extra_flags": extra, "table": rows,
                         "markdown": markdown(rows), "runs": per_seed,
                         "pending_seeds": [r["seed"] for r in runs if "rc" not in r],
                         "timing": "training steps only (compile and per-epoch evaluation "
                                   "excluded); CUDA events on a GPU"}, args.out,
                        command=how, settings=vars(args))
    print(f"saved {saved}", flush=True)
    return len(per_seed)

if __name__ == "__main__":
    sys.exit(main())
