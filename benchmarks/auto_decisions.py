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

from benchmarks._common import command, environment, print_table, save_result
from fastcifar import autotune
from fastcifar.autotune import ALL_AUTO as AUTO
from fastcifar.autotune import decide, rule_speed, switch_word
from fastcifar.recipes import DEFAULT_RECIPE, get_recipe

SWITCHES = ("amp", "channels_last", "bn_relu", "loader")


def main(argv=None) -> int:
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
    rows, decisions = [], {}
    for model in args.models.split(","):
        recipe = get_recipe(DEFAULT_RECIPE[model])
        rule = rule_speed(AUTO, device)
        choice = decide(AUTO, recipe, device, cache="off")
        speed = choice.speed.as_dict()
        decisions[model] = {"picked": speed, "rule": rule, "record": choice.record}
        picked = ", ".join(f"{s}={switch_word(s, speed[s])}" for s in SWITCHES)
        old = ", ".join(f"{s}={switch_word(s, rule[s])}" for s in SWITCHES)
        for name, table in choice.record.get("timings", {}).items():
            for cand, t in sorted(table["candidates"].items(),
                                  key=lambda kv: kv[1].get("ms", float("inf"))):
                rows.append({"model": model, "timed": name, "candidate": cand,
                             "ms_per_step": t.get("ms", "failed"),
                             "images_per_s": round(table["batch"] / t["ms"] * 1e3, 1)
                             if "ms" in t else "", "spread": t.get("spread", "")})
        rows.append({"model": model, "timed": "auto picked", "candidate": picked})
        rows.append({"model": model, "timed": "old rule", "candidate": old})
        print(choice.line, flush=True)
        saved = save_result(f"auto_decisions-{device.type}", {
            "timing_batch": autotune.timing_batch(recipe.batch_size, device),
            "rows": rows, "decisions": decisions,
            "timing": "median of 3 alternating rounds per candidate, after 2 warm-up steps; "
                      "spread = (slowest - fastest) / fastest round"}, args.out)
    env = environment()
    print(f"\nauto decisions on {env['cpu']} ({env['cpu_cores']} cores) / {env['gpu'] or 'no GPU'}"
          f", torch {env['torch']}")
    print_table(rows, ["model", "timed", "candidate", "ms_per_step", "images_per_s", "spread"])
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
