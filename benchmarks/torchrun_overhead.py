"""What torchrun's wrapper costs: `torchrun --nproc_per_node 1` (DDP, one rank) against the plain
single-process run, on the same short cnn run.

    python -m benchmarks.torchrun_overhead --data-dir data [--epochs 3] [--images 25000]

Runs plain, torchrun, plain again (compile off, so only the wrapper differs), and compares the
images/s of the epochs after the first (the first carries cuDNN and allocator warm-up). The two
plain runs bound the noise: a few dozen steps on a fast GPU take well under a second, so a single
pair of runs can differ by 10 % for no reason. The result is a measurement, not a pass/fail: the
script fails only when a run fails, and says "within noise" when torchrun's rate lies inside the
plain runs' spread widened by 5 %. Writes benchmarks/results/torchrun_overhead.json, rewritten
after every run.
"""

import argparse
import statistics
import sys
from pathlib import Path

from benchmarks.harness import command, invocation, save_result
from fastcifar.launch import UNATTENDED, read_history, train_in_child


def images_per_s(run_dir: Path) -> float:
    """Mean images/s of the run's epochs after the first (all of them if it has one)."""
    epochs = read_history(run_dir)
    later = epochs[1:] or epochs
    return statistics.fmean(e["images_per_s"] for e in later)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--images", type=int, default=25000, help="training images per epoch")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--work", default="runs/torchrun_overhead")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    train = ["--recipe", "row1_cnn", "--epochs", str(args.epochs),
             "--batch-size", str(args.batch_size), "--train-subset", str(args.images),
             "--test-subset", str(args.test_images), "--compile", "off", "--data-dir",
             args.data_dir, *UNATTENDED]
    torchrun = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    plan = [("plain", []), ("torchrun_1_rank", torchrun), ("plain_again", [])]
    rows = []
    for name, wrapper in plan:
        out = Path(args.work) / name
        code = train_in_child([*train, "--out", str(out)], wrapper)
        row = {"run": name, "rc": code}
        if code == 0:
            row["images_per_s"] = round(images_per_s(out), 1)
        rows.append(row)
        print(f"{name}: {row.get('images_per_s', f'FAILED (exit {code})')} images/s", flush=True)
        payload = {"rows": rows, "flags": train,
                   "measure": "mean images/s of the epochs after the first"}
        if len(rows) == len(plan) and all(r["rc"] == 0 for r in rows):
            plain = [rows[0]["images_per_s"], rows[2]["images_per_s"]]
            ratio = rows[1]["images_per_s"] / statistics.fmean(plain)
            within = 0.95 * min(plain) <= rows[1]["images_per_s"] <= 1.05 * max(plain)
            payload |= {"ratio_torchrun_vs_plain": round(ratio, 3),
                        "plain_spread": round(max(plain) / min(plain) - 1, 3),
                        "verdict": "within noise" if within else
                        ("torchrun slower" if ratio < 1 else "torchrun faster")}
            print(f"torchrun 1 rank / plain: {ratio:.3f} (plain runs differ by "
                  f"{payload['plain_spread']:.1%}): {payload['verdict']}")
        saved = save_result("torchrun_overhead", payload, args.out,
                            command=invocation(parser.prog, argv), settings=vars(args))
    print(f"saved {saved}")
    return 0 if all(r["rc"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
