"""Loader throughput: the augmenting loaders' images/s, and how long loading CIFAR-10 takes.

    python -m benchmarks.loader_throughput [augment] --device cuda [--images 200000] [--data-dir D]
    python -m benchmarks.loader_throughput augment --device cpu --images 3000 --batch-sizes 100 512
    python -m benchmarks.loader_throughput load --data-dir data [--repeats 5]

augment (the default): images/s per backend x preset x batch size of ``make_loader`` (gather,
augment, normalise, dtype/layout), against the seed's way (torchvision transforms per PIL image in
a DataLoader with worker processes), after one warm-up batch, the device synchronised before and
after. Writes results/loader_throughput_<device>.json.

load: CIFAR-10 from disk, cold (decode the batch files; the cache dropped first) against cached
(the .npz), alternating, --repeats times each. Writes results/data_load.json.
"""

import argparse
import math
import statistics
import sys

import torch

from benchmarks.harness import Bench, command, refuse, subcommands
from benchmarks.workloads import batches, torchvision_loader, training_images
from fastcifar.augment import PRESETS, make_loader
from fastcifar.data import DataError, load_cifar10
from fastcifar.data.cache import CACHE_NAME

EPILOG = ("subcommands: augment (the default), load; "
          f"{command(__file__)} SUBCOMMAND --help for each one's flags")


def augment(argv, prog) -> int:
    parser = argparse.ArgumentParser(prog=prog, epilog=EPILOG, description="Augmenting loader "
                                     "images/s per backend x preset x batch size.")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backends", nargs="+", default=["torch", "dali", "torchvision"])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[100, 512, 1024])
    parser.add_argument("--images", type=int, default=3000, help="images timed per setting")
    parser.add_argument("--dataset-size", type=int, default=10000,
                        help="synthetic images in memory (ignored with --data-dir)")
    parser.add_argument("--data-dir", default=None, help="use the real CIFAR-10 training set")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers (torchvision)")
    parser.add_argument("--bf16", action="store_true", help="yield bfloat16 batches")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        return refuse("--device cuda, but torch sees no CUDA device; use --device cpu")
    try:  # the whole training set with --data-dir
        images, labels, source = training_images(args.data_dir, None if args.data_dir else
                                                 args.dataset_size)
    except DataError as err:
        return refuse(str(err))
    dali_version = None
    if "dali" in args.backends:
        from fastcifar.augment.dali import require_dali

        try:
            dali_version = require_dali().__version__
        except ImportError as err:
            # asked for and missing is an error: a table without its DALI rows must not pass
            # for a finished measurement (pass --backends torch to measure without it)
            return refuse(f"--backends dali: {err}")
    dtype = torch.bfloat16 if args.bf16 else torch.float32

    def setup(row):
        spec, bs = PRESETS[row["preset"]], row["batch_size"]
        if row["backend"] == "torchvision":
            loader = torchvision_loader(images, labels, spec, bs, args.workers, device)
        else:
            loader = make_loader(images, labels, spec, bs, train=True, backend=row["backend"],
                                 device=device, dtype=dtype)
        stream = batches(loader, device)
        return (lambda: next(stream)), bs

    bench = Bench(f"loader_throughput_{device.type}", prog, argv, vars(args),
                  ["backend", "preset", "batch_size", "images_per_s"], device=device,
                  out=args.out)
    env = bench.environment
    where = env["gpu"] if device.type == "cuda" else f"{env['cpu']} ({env['cpu_cores']} cores)"
    bench.meta = {"device": args.device, "where": where, "data": source,
                  "images_per_setting": args.images, "torchvision_workers": args.workers,
                  "dtype": str(dtype), "dali": dali_version,
                  "timing": "whole batches after one warm-up batch, device synchronised"}
    for backend in args.backends:
        for preset in args.presets:
            for bs in args.batch_sizes:
                bench.run([{"backend": backend, "preset": preset, "batch_size": bs}], setup,
                          steps=math.ceil(args.images / bs), warmup=1)
    return bench.report(f"loader throughput on {args.device}: {where}; data {source}")


def load(argv, prog) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="How long loading CIFAR-10 takes: "
                                     "cold (decode the batch files) vs cached (.npz).",
                                     epilog=EPILOG)
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of each (default 5)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    try:
        load_cifar10(args.data_dir, download=False)
    except DataError as err:
        return refuse(str(err))

    def setup(row):
        if row["load"] == "cold":  # drop the cache so the batch files are decoded again
            folder = load_cifar10(args.data_dir, download=False, cache=False).folder
            (folder / CACHE_NAME).unlink(missing_ok=True)

        def work():
            data = load_cifar10(args.data_dir, download=False)
            if data.from_cache != (row["load"] == "cached"):
                raise RuntimeError(f"a {row['load']} load, but from_cache={data.from_cache}")
        return work, 1

    def spread(rounds):
        times = [r["seconds"] for r in rounds]
        return {"median_s": round(statistics.median(times), 3), "min_s": round(min(times), 3),
                "max_s": round(max(times), 3), "repeats": len(times)}

    bench = Bench("data_load", prog, argv, vars(args),
                  ["load", "median_s", "min_s", "max_s", "repeats"], out=args.out, unit=None,
                  meta={"data_dir": args.data_dir})
    bench.run([{"load": "cold"}, {"load": "cached"}], setup, rounds=args.repeats, reduce=spread)
    env = bench.environment
    return bench.report(f"CIFAR-10 load times, {env['cpu']} ({env['cpu_cores']} cores), "
                        f"from {args.data_dir}")


MAINS = {"augment": augment, "load": load}
SUBCOMMANDS = tuple(MAINS)


def main(argv=None) -> int:
    return subcommands(command(__file__), MAINS, argv)


if __name__ == "__main__":
    sys.exit(main())
