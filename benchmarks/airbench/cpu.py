"""airbench94, unmodified, on the CPU and on our data: the peer's own accuracy on the same copy.

    python -m benchmarks.airbench cpu --data-dir data [--runs 1] [--trainer 94]

Why: our speedrun recipe is rebuilt from airbench94's published ideas; when it falls short of 94 %
on the CIFAR-10 (JPEG q75 copy), this tells how much of the gap is the data and how much our
implementation. airbench runs behind the CPU shims of ``peer`` (``--amp auto``: bf16 autocast
where the CPU computes it natively, else fp32, as our trainer decides).
Install it beside the project without touching torch:
`pip install --no-deps -t /tmp/abenv airbench==0.1.8 torchvision` and run with
PYTHONPATH=/tmp/abenv. Prints a table and writes benchmarks/results/airbench<N>-cpu.json.
"""

import argparse
import platform
import sys

import torch

from benchmarks.airbench import command
from benchmarks.airbench.peer import airbench_data_folder, run_airbench_cpu
from benchmarks.harness import invocation, print_table, save_result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command("cpu"), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--trainer", default="94", choices=["93", "94", "95"])
    parser.add_argument("--runs", type=int, default=1, help="runs (seeds 0..n-1)")
    parser.add_argument("--data-name", default="CIFAR-10 (JPEG q75 copy)",
                        help="what the data is, for the result file")
    parser.add_argument("--epochs", type=float, default=None,
                        help="override airbench's epoch count (a smoke test; default: its own)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "fp32"],
                        help="bf16 autocast or fp32 (auto: bf16 only where the CPU has it "
                             "natively)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    try:
        import airbench  # noqa: F401
    except ImportError:
        print("error: airbench is not importable; install it beside the project with\n"
              "  pip install --no-deps -t /tmp/abenv airbench==0.1.8 torchvision\n"
              "and run with PYTHONPATH=/tmp/abenv", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    with airbench_data_folder(args.data_dir) as scratch:
        for run in range(args.runs):
            result = run_airbench_cpu(args.trainer, scratch, seed=run, epochs=args.epochs,
                                      amp=args.amp)
            print(result["printed"], end="")
            rows.append({"trainer": f"airbench{args.trainer} (CPU shims, {result['amp']})",
                         "run": run, "test_acc": round(result["test_acc"], 2),
                         "airbench_seconds": round(result["airbench_seconds"], 1),
                         "wall_seconds": round(result["wall_seconds"], 1),
                         "printed": result["printed"]})
    hardware = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"airbench{args.trainer} on the CPU ({hardware}, torch {torch.__version__}), "
          f"data {args.data_dir}")
    print_table(rows, ["trainer", "run", "test_acc", "airbench_seconds", "wall_seconds"])
    path = save_result(f"airbench{args.trainer}-cpu",
                       {"data": str(args.data_dir), "data_name": args.data_name,
                        "hardware": hardware,
                        "epochs": args.epochs or "airbench default", "rows": rows}, args.out,
                       command=invocation(parser.prog, argv), settings=vars(args))
    print(f"saved {path}")
    return 0
