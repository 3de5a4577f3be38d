"""CPU auto switches, the old rule against the new: images/s of whole training steps (batched
loader with flip + pad-crop, forward, backward, SGD) per model, fp32 NCHW (what --amp auto
--channels-last auto meant on every CPU before) against what they resolve to on this CPU now
(bf16 autocast + channels_last where bf16 is native: fastcifar.env.cpu_native_bf16).

    python -m benchmarks.cpu_auto_switches [--models cnn,resnet_final] [--steps 6] [--rounds 2]

The two settings alternate, ``--rounds`` times each, on the same process and data, so a
neighbour's load hits both alike; the best round of each is reported (the least disturbed).
Writes benchmarks/results/cpu_auto_switches.json with the machine it ran on.
"""

import argparse
import sys

import torch

from benchmarks._common import command, environment, print_table, save_result
from benchmarks.train_throughput import measure
from fastcifar.data.synthetic import make_arrays
from fastcifar.engine import resolve_switches
from fastcifar.env import cpu_native_bf16

AUTO = {"amp": "auto", "channels_last": "auto", "compile": "auto", "bn_relu": "auto"}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,resnet_final")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    device = torch.device("cpu")
    auto = resolve_switches(AUTO, device)
    settings = {
        "before: fp32 NCHW": dict(amp=None, channels_last=False),
        f"after: auto = {auto['amp']}, channels_last={auto['channels_last']}": dict(
            amp=torch.bfloat16 if auto["amp"] == "bf16" else None,
            channels_last=auto["channels_last"]),
    }
    images, labels = make_arrays(args.batch * (args.steps + args.warmup), seed=0)
    rows = []
    for model in args.models.split(","):
        best = {}
        for _ in range(args.rounds):
            for label, s in settings.items():
                s = s | dict(loader="torch", batch=args.batch, bn_relu="eager", compile=False)
                r = measure(model, s, images, labels, device, args.steps, args.warmup, 0)
                best[label] = max(best.get(label, 0.0), r["images_per_s"])
                print(f"  {model}: {label}: {r['images_per_s']} img/s", flush=True)
        before, after = best.values()
        rows += [{"model": model, "setting": k, "images_per_s": v} for k, v in best.items()]
        rows[-1]["speedup"] = round(after / before, 2)
        saved = save_result("cpu_auto_switches", {
            "cpu_native_bf16": cpu_native_bf16(), "batch": args.batch, "steps": args.steps,
            "warmup": args.warmup, "rounds": args.rounds, "data": "synthetic", "rows": rows,
            "timing": "best of the rounds, each timed after its warm-up steps; the settings "
                      "alternate"}, args.out)
    env = environment()
    print(f"CPU training throughput on {env['cpu']} ({env['cpu_cores']} cores, "
          f"{env['torch_threads']} threads), torch {env['torch']}, batch {args.batch}")
    print_table(rows, ["model", "setting", "images_per_s", "speedup"])
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
