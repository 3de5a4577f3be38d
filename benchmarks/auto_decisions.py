"""What the measured "auto" picks on this machine, per model, beside what the old rule picked:
each candidate's time per training step (fastcifar.autotune, exactly as a run measures it, the
cache bypassed).

    python -m benchmarks.auto_decisions [--models cnn,resnet_final,speedrun] [--timing-batch 32]

Each model's default recipe; on the CPU the timing batch stands in for the recipe's. Writes
benchmarks/results/auto_decisions-<cpu|cuda>.json after every model, with the machine it ran on.
"""

import argparse
import sys

import torch

from benchmarks.harness import Bench, command
from fastcifar import autotune
from fastcifar.autotune import ALL_AUTO as AUTO
from fastcifar.autotune import decide, rule_speed, switch_word
from fastcifar.recipes import DEFAULT_RECIPE, get_recipe

SWITCHES = ("amp", "channels_last", "bn_relu", "loader")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet_final,speedrun")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--timing-batch", type=int, default=autotune.timing.CPU_TIMING_BATCH,
                        help="the CPU's stand-in batch (default %(default)s)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    autotune.timing.CPU_TIMING_BATCH = args.timing_batch
    decisions = {}
    meta = {"timing_batch": None, "decisions": decisions,
            "timing": "median of 3 alternating rounds per candidate, after 2 warm-up steps; "
                      "spread = (slowest - fastest) / fastest round"}
    bench = Bench(f"auto_decisions-{device.type}", parser.prog, argv, vars(args),
                  ["model", "timed", "candidate", "ms_per_step", "images_per_s", "spread"],
                  meta=meta, out=args.out, device=device)
    for model in args.models.split(","):
        recipe = get_recipe(DEFAULT_RECIPE[model])
        rule = rule_speed(AUTO, device)
        choice = decide(AUTO, recipe, device, cache="off")
        speed = choice.speed.as_dict()
        decisions[model] = {"picked": speed, "rule": rule, "record": choice.record}
        meta["timing_batch"] = autotune.timing_batch(recipe.batch_size, device)
        picked = ", ".join(f"{s}={switch_word(s, speed[s])}" for s in SWITCHES)
        old = ", ".join(f"{s}={switch_word(s, rule[s])}" for s in SWITCHES)
        for name, table in choice.record.get("timings", {}).items():
            for cand, t in sorted(table["candidates"].items(),
                                  key=lambda kv: kv[1].get("ms", float("inf"))):
                bench.add({"model": model, "timed": name, "candidate": cand,
                           "ms_per_step": t.get("ms", "failed"),
                           "images_per_s": round(table["batch"] / t["ms"] * 1e3, 1)
                           if "ms" in t else "", "spread": t.get("spread", "")})
        bench.add({"model": model, "timed": "auto picked", "candidate": picked})
        bench.add({"model": model, "timed": "old rule", "candidate": old})
        print(choice.line, flush=True)
    env = bench.environment
    return bench.report(f"auto decisions on {env['cpu']} ({env['cpu_cores']} cores) / "
                        f"{env['gpu'] or 'no GPU'}, torch {env['torch']}")

if __name__ == "__main__":
    sys.exit(main())
