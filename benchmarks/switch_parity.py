"""Do the speed switches change what is learned? A short run of a recipe on a subset, once per
switch (each alone on top of the plain baseline), against the baseline over several seeds.

    python -m benchmarks.switch_parity --data-dir data [--recipe fast] [--seeds 3]
        [--train-subset 1024] [--test-subset 500] [--epochs 2] [--batch-size 128]

The baseline is fp32, contiguous, eager, the eager BatchNorm+ReLU and the torch loader; the spread
of its final test accuracy over seeds is the noise each switch is judged against (a switch also
changes float rounding, so a single run differs like another seed would). On the CPU the Triton
kernel is not a real switch (CPU tensors run the reference) and fp16 is far too slow there
(no fast fp16 CPU convolutions); both are left to the GPU. Prints a table and
writes benchmarks/results/switch_parity-<device>.json (switch_parity-<recipe>-<device>.json for
a recipe other than fast).
"""

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.harness import command, invocation, print_table, save_result
from fastcifar import train
from fastcifar.env import environment
from fastcifar.launch import read_run

BASELINE = ["--amp", "off", "--channels-last", "off", "--compile", "off", "--bn-relu", "eager",
            "--loader", "torch"]
SWITCHES = {  # name: the flags that replace the baseline's
    "bf16 autocast": ["--amp", "bf16"],
    "fp16 autocast + GradScaler": ["--amp", "fp16"],
    "channels_last": ["--channels-last", "on"],
    "torch.compile": ["--compile", "default"],
    "DALI loader": ["--loader", "dali"],
    "Triton BN+ReLU": ["--bn-relu", "triton"],
}


def run(flags: list[str], common: list[str], out: Path) -> dict:
    code = train.main([*common, *flags, "--out", str(out)])
    if code != 0:
        return {"error": f"exit {code}"}
    record = read_run(out)
    return {"test_acc": round(record.summary["final"]["test_acc"], 2),
            "train_seconds": round(record.summary["train_seconds_total"], 1),
            "compile_seconds": round(record.config["compile_seconds"], 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--seeds", type=int, default=3, help="baseline runs (the noise)")
    parser.add_argument("--train-subset", type=int, default=1024)
    parser.add_argument("--test-subset", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    common = ["--recipe", args.recipe, "--data-dir", args.data_dir, "--device", args.device,
              "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
              "--train-subset", str(args.train_subset), "--test-subset", str(args.test_subset),
              "--tta", "none", "--quiet", "--no-figures", "--no-download"]
    # on the CPU: the Triton kernel runs its reference there, and fp16 convolutions have no fast
    # CPU kernels (one such run took over 10 minutes where bf16 took 49 s): both are GPU checks
    skip = {"Triton BN+ReLU", "fp16 autocast + GradScaler"} if args.device == "cpu" else set()
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        skip.add("DALI loader")
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            result = run([*BASELINE, "--seed", str(seed)], common, Path(scratch) / f"base{seed}")
            rows.append({"run": "baseline", "seed": seed, **result})
            print(rows[-1], flush=True)
        for name, flags in SWITCHES.items():
            if name in skip:
                rows.append({"run": name, "note": "skipped here"})
                continue
            result = run([*BASELINE, *flags, "--seed", "0"], common, Path(scratch) / name[:8])
            rows.append({"run": name, "seed": 0, **result})
            print(rows[-1], flush=True)
    base = [r["test_acc"] for r in rows if r["run"] == "baseline" and "test_acc" in r]
    mean, spread = statistics.mean(base), statistics.stdev(base) if len(base) > 1 else 0.0
    for row in rows:
        if row["run"] != "baseline" and "test_acc" in row:
            row["delta_vs_baseline_mean"] = round(row["test_acc"] - mean, 2)
            row["within_2_std"] = abs(row["test_acc"] - mean) <= 2 * spread
    env = environment()
    print(f"{args.recipe} on {args.train_subset} training images, {args.epochs} epochs, "
          f"{env['gpu'] or env['cpu']}: baseline {mean:.2f} +- {spread:.2f} % (n={len(base)})")
    print_table(rows, ["run", "seed", "test_acc", "delta_vs_baseline_mean", "within_2_std",
                       "train_seconds", "compile_seconds", "note"])
    payload = {"baseline_mean": mean, "baseline_std": spread, "rows": rows}
    name = f"switch_parity-{args.device}" if args.recipe == "fast" else \
        f"switch_parity-{args.recipe}-{args.device}"
    saved = save_result(name, payload, args.out, command=invocation(parser.prog, argv),
                        settings=vars(args))
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
