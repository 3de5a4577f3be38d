"""How long loading CIFAR-10 takes: cold (decode the batch files) vs cached (.npz), n repeats.

    python -m benchmarks.data_load --data-dir data [--repeats 5]

Prints a table and writes benchmarks/results/data_load.json (with the machine it ran on).
"""

import argparse
import statistics
import sys
import time

from benchmarks._common import command, environment, print_table, save_result
from fastcifar.data import load_cifar10
from fastcifar.data.cache import CACHE_NAME


def time_load(data_dir: str, cold: bool) -> float:
    if cold:  # drop the cache so the batch files are decoded again
        data = load_cifar10(data_dir, download=False, cache=False)
        (data.folder / CACHE_NAME).unlink(missing_ok=True)
    start = time.perf_counter()
    data = load_cifar10(data_dir, download=False)
    seconds = time.perf_counter() - start
    assert data.from_cache != cold
    return seconds


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    rows = []
    for mode in ("cold", "cached"):
        times = [time_load(args.data_dir, cold=mode == "cold") for _ in range(args.repeats)]
        rows.append({"load": mode, "median_s": round(statistics.median(times), 3),
                     "min_s": round(min(times), 3), "max_s": round(max(times), 3),
                     "repeats": len(times)})
    env = environment()
    print(f"CIFAR-10 load times, {env['cpu']} ({env['cpu_cores']} cores), from {args.data_dir}")
    print_table(rows, ["load", "median_s", "min_s", "max_s", "repeats"])
    print(f"saved {save_result('data_load', {'data_dir': args.data_dir, 'rows': rows}, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
