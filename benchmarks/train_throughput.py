"""Training throughput: images/s of whole training steps (loading with flip + pad-crop, forward,
backward, SGD update), three ways.

    python -m benchmarks.train_throughput [ladder] [--device cuda] [--models resnet_final]
    python -m benchmarks.train_throughput ladder --device cpu --models cnn --steps 4 --images 2000
    python -m benchmarks.train_throughput switches [--models cnn,resnet_final] [--rounds 2]
    python -m benchmarks.train_throughput malloc [--models speedrun] [--batches 64,1024,2000]

ladder (the default): from the seed's way to the fast path, one switch added a row on the same
device: "seed" (torchvision per-image transforms in a DataLoader, eager fp32, batch 100), then
+ the GPU-resident batched loader, + batch 512, + channels_last, + bf16 autocast, + the Triton
fused BatchNorm+ReLU (CUDA only), + torch.compile (compile time excluded, in warmup_seconds).
Writes results/train_throughput-<device>.json.

switches: the CPU's auto switches, the old rule against the new: fp32 NCHW (what --amp auto
--channels-last auto meant on every CPU before) against what they resolve to on this CPU now
(bf16 autocast + channels_last where bf16 is native: fastcifar.env.cpu_native_bf16), per model.
Writes results/cpu_auto_switches.json.

malloc: the cpu_malloc switch against glibc's defaults, per batch size: training and evaluation
images/s and the page faults each costs (timed steps only), bf16 channels_last. Each (setting,
batch, round) runs in a fresh child process, since the allocator setting holds for a whole process
(fastcifar.env.keep_freed_memory). Writes results/cpu_malloc.json.

Timed by benchmarks.harness: warm-up (and compile) steps untimed, then the timed steps between
two device synchronisations. switches and malloc alternate their two settings, --rounds times
each, so a neighbour's load hits both alike, and report the median round.
"""

import argparse
import json
import resource
import subprocess
import sys

import torch

from benchmarks.harness import (
    CPU,
    Bench,
    Skip,
    command,
    refuse,
    rerun_command,
    subcommands,
    time_calls,
)
from benchmarks.workloads import training_images, training_step
from fastcifar.autotune import ALL_AUTO, rule_speed
from fastcifar.data import DataError
from fastcifar.env import cpu_native_bf16, keep_freed_memory
from fastcifar.models import create_model

EPILOG = ("subcommands: ladder (the default), switches, malloc; "
          f"{command(__file__)} SUBCOMMAND --help for each one's flags")


def parser_for(prog: str, description: str, **defaults) -> argparse.ArgumentParser:
    """The flags every subcommand has, with its own defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG)
    parser.add_argument("--models", "--model", default=defaults["models"],
                        help="comma-separated (default %(default)s)")
    parser.add_argument("--steps", type=int, default=defaults["steps"],
                        help="timed steps per row and round (default %(default)s)")
    parser.add_argument("--warmup", type=int, default=defaults["warmup"],
                        help="untimed steps before them, compile included (default %(default)s)")
    if "rounds" in defaults:
        parser.add_argument("--rounds", type=int, default=defaults["rounds"],
                            help="alternating rounds per setting (default %(default)s)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    return parser


def ladder_rows(models, device, seed_batch=100, fast_batch=512) -> list[dict]:
    """Each model's rows, each adding one switch to the row before."""
    steps = [
        (f"seed: torchvision DataLoader, eager fp32, bs {seed_batch}",
         dict(loader="torchvision", batch=seed_batch, channels_last=False, amp=None,
              bn_relu="eager", compile=False)),
        ("+ GPU-resident batched loader", dict(loader="torch")),
        (f"+ batch {fast_batch}", dict(batch=fast_batch)),
        ("+ channels_last", dict(channels_last=True)),
        ("+ bf16 autocast", dict(amp=torch.bfloat16)),
        ("+ fused BN+ReLU (Triton)", dict(bn_relu="triton")),
        ("+ torch.compile", dict(compile=True)),
    ]
    rows = []
    for model in models:
        settings = {}
        for label, change in steps:
            settings |= change
            row = {"model": model, "setting": label, "_s": dict(settings)}
            if settings["bn_relu"] == "triton" and device.type != "cuda":
                row["_skip"] = "the Triton kernel needs CUDA (the CPU runs the reference)"
                settings["bn_relu"] = "eager"
            rows.append(row)
    return rows


def ladder(argv, prog) -> int:
    parser = parser_for(prog, "Training images/s from the seed's way to the fast path, one "
                        "switch added a row.", models="resnet_final", steps=30, warmup=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--images", type=int, default=50000, help="training images used")
    parser.add_argument("--data-dir", default=None, help="real CIFAR-10 (default: synthetic)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (seed row)")
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[100, 512],
                        metavar=("SEED", "FAST"), help="the seed's batch and the fast path's")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return refuse("--device cuda, but torch sees no CUDA device; use --device cpu")
    try:
        images, labels, _ = training_images(args.data_dir, args.images)
    except DataError as err:
        return refuse(str(err))

    def setup(row):
        if "_skip" in row:
            raise Skip(row["_skip"])
        step = training_step(row["model"], row["_s"], images, labels, device, args.workers)
        return step, row["_s"]["batch"]

    data = "real" if args.data_dir else "synthetic"
    bench = Bench(f"train_throughput-{device.type}", prog, argv, vars(args),
                  ["model", "setting", "images_per_s", "warmup_seconds"], device=device,
                  out=args.out, meta={
                      "steps": args.steps, "warmup": args.warmup,
                      "batch_sizes": args.batch_sizes, "data": data,
                      "timing": "timed steps only, device synchronised before and after; "
                                "warm-up (and compile) steps excluded"})
    bench.run(ladder_rows(args.models.split(","), device, *args.batch_sizes), setup,
              steps=args.steps, warmup=args.warmup)
    env = bench.environment
    where = env["gpu"] or f"{env['cpu']} ({env['cpu_cores']} cores)"
    return bench.report(f"training throughput on {where}, torch {env['torch']}, {data} data")


def add_speedup(bench: Bench, rows: list[dict], key: str, name: str) -> None:
    """The second row's ``key`` over the first's, beside the second (where both were measured)."""
    if all(key in r for r in rows):
        rows[1][name] = round(rows[1][key] / rows[0][key], 2)
        bench.save()


def switches(argv, prog) -> int:
    parser = parser_for(prog, "The CPU's auto switches, the old rule against the new: training "
                        "images/s per model.", models="cnn,resnet_final", steps=6, warmup=2,
                        rounds=2)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args(argv)
    auto = rule_speed(ALL_AUTO, CPU)  # what every "auto" means on this CPU, unmeasured
    settings = {
        "before: fp32 NCHW": dict(amp=None, channels_last=False),
        f"after: auto = {auto['amp']}, channels_last={auto['channels_last']}": dict(
            amp=torch.bfloat16 if auto["amp"] == "bf16" else None,
            channels_last=auto["channels_last"]),
    }
    images, labels, _ = training_images(None, args.batch * (args.steps + args.warmup))
    common = dict(loader="torch", batch=args.batch, bn_relu="eager", compile=False)
    bench = Bench("cpu_auto_switches", prog, argv, vars(args),
                  ["model", "setting", "images_per_s", "speedup"], out=args.out, meta={
                      "cpu_native_bf16": cpu_native_bf16(), "batch": args.batch,
                      "steps": args.steps, "warmup": args.warmup, "rounds": args.rounds,
                      "data": "synthetic",
                      "timing": "median of the rounds, each timed after its warm-up steps; the "
                                "settings alternate"})
    setup = lambda row: (training_step(row["model"], row["_s"], images, labels, CPU),
                         args.batch)
    for model in args.models.split(","):
        rows = bench.run([{"model": model, "setting": label, "_s": s | common}
                          for label, s in settings.items()], setup,
                         steps=args.steps, warmup=args.warmup, rounds=args.rounds)
        add_speedup(bench, rows, "images_per_s", "speedup")
    env = bench.environment
    return bench.report(f"CPU training throughput on {env['cpu']} ({env['cpu_cores']} cores, "
                        f"{env['torch_threads']} threads), torch {env['torch']}, "
                        f"batch {args.batch}")


def malloc_child(model_name: str, batch: int, setting: str, steps: int, warmup: int) -> dict:
    """In this process: ``setting``, then the train and eval images/s at ``batch`` and the page
    faults of the timed steps."""
    if setting == "keep" and not keep_freed_memory():
        raise SystemExit("error: this libc has no mallopt; nothing to compare")
    faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    s = {"bn_relu": "auto", "channels_last": True, "compile": False, "batch": batch,
         "amp": torch.bfloat16, "loader": "torch"}
    images, labels, _ = training_images(None, batch * 2)

    def evaluation():
        model = create_model(model_name).to(memory_format=torch.channels_last).eval()
        x = torch.randn(batch, 3, 32, 32).to(memory_format=torch.channels_last)

        def forward():
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(x)
        return forward

    out = {}
    for kind, build in (("train", lambda: training_step(model_name, s, images, labels, CPU)),
                        ("eval", evaluation)):
        work = build()
        time_calls(work, warmup)
        before = faults()
        seconds = time_calls(work, steps)
        out[f"{kind}_images_per_s"] = round(batch * steps / seconds, 1)
        out[f"{kind}_faults_per_{'step' if kind == 'train' else 'batch'}"] = round(
            (faults() - before) / steps)
    return out


def malloc(argv, prog) -> int:
    if argv[:1] == ["--child"]:
        model_name, batch, setting, steps, warmup = argv[1:6]
        print(json.dumps(malloc_child(model_name, int(batch), setting, int(steps), int(warmup))))
        return 0
    parser = parser_for(prog, "cpu_malloc against glibc's defaults: training and evaluation "
                        "images/s and page faults per batch size.", models="speedrun", steps=4,
                        warmup=1, rounds=2)
    parser.add_argument("--batches", default="64,1024,2000", help="comma-separated batch sizes")
    args = parser.parse_args(argv)
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        return refuse(f"--batches takes sizes like 64,1024, not {args.batches!r}")

    def in_a_child(row):
        out = subprocess.run([*rerun_command(__file__), "malloc", "--child", row["model"],
                              str(row["batch"]), row["cpu_malloc"], str(args.steps),
                              str(args.warmup)], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError((out.stderr.strip().splitlines() or [f"exit {out.returncode}"])[-1])
        return json.loads(out.stdout.strip().splitlines()[-1])

    bench = Bench("cpu_malloc", prog, argv, vars(args),
                  ["model", "batch", "cpu_malloc", "train_images_per_s", "train_faults_per_step",
                   "eval_images_per_s", "eval_faults_per_batch", "train_speedup",
                   "eval_speedup"], out=args.out, meta={
                      "rounds": args.rounds, "steps": args.steps,
                      "timing": "median of the rounds, each in a fresh process after its "
                                "warm-up steps; the settings alternate; faults of the timed "
                                "steps only"})
    for model in args.models.split(","):
        for batch in batches:
            rows = bench.run([{"model": model, "batch": batch, "cpu_malloc": setting}
                              for setting in ("default", "keep")], measure=in_a_child,
                             rounds=args.rounds)
            for kind in ("train", "eval"):
                add_speedup(bench, rows, f"{kind}_images_per_s", f"{kind}_speedup")
    return bench.report(f"the CPU ({torch.get_num_threads()} threads), bf16 channels_last, "
                        f"median of {args.rounds} rounds")


MAINS = {"ladder": ladder, "switches": switches, "malloc": malloc}
SUBCOMMANDS = tuple(MAINS)


def main(argv=None) -> int:
    return subcommands(command(__file__), MAINS, argv)


if __name__ == "__main__":
    sys.exit(main())
