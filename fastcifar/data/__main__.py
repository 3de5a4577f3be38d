"""Data check: ``python -m fastcifar.data [--data-dir DIR]`` finds (or downloads) CIFAR-10,
loads it, and prints what it found and how long loading took."""

import argparse
import sys

import numpy as np

from ..cli import add_data_flags, data_options
from ..lifecycle import run_cli
from . import DataError, load_cifar10


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.data", description=__doc__)
    add_data_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    # `python -m fastcifar.data | head`: the reader had enough, and that is fine
    return run_cli(lambda args: _check(get_args_parser().parse_args(args)), argv)


def _check(args) -> int:
    try:
        data = load_cifar10(**data_options(args))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    how = "from cache" if data.from_cache else f"from the {data.layout} layout"
    print(f"CIFAR-10 at {data.folder} ({how}, {data.load_seconds:.2f} s)")
    for split in ("train", "test"):
        images, labels = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        counts = np.bincount(labels, minlength=len(data.classes))
        per_class = ", ".join(f"{name} {n}" for name, n in zip(data.classes, counts))
        shape = f"{tuple(images.shape[1:])} {images.dtype}"
        print(f"  {split}: {len(labels)} images {shape}; {per_class}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
