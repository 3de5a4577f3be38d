"""Augmenting loader throughput: images/s per backend x preset x batch size, against the seed's
way (torchvision transforms per PIL image in a DataLoader with worker processes).

    python -m benchmarks.loader_throughput --device cuda [--images 200000] [--data-dir data]
    python -m benchmarks.loader_throughput --device cpu --images 3000 --batch-sizes 100 512 1024

Times full passes of ``make_loader`` (gather, augment, normalise, dtype/layout) after one warm-up
batch, synchronising CUDA before reading the clock. Prints a table and writes
benchmarks/results/loader_throughput_<device>.json (with the machine it ran on).
"""

import argparse
import sys
import time

import torch

from benchmarks._common import command, environment, print_table, save_result
from fastcifar.augment import PRESETS, AugmentSpec, make_loader
from fastcifar.data.synthetic import make_arrays
from fastcifar.engine import synchronize


def time_loader(images, labels, spec, batch_size, backend, device, n_images, dtype):
    """images/s of make_loader over about ``n_images`` training images (whole batches)."""
    loader = make_loader(images, labels, spec, batch_size, train=True, backend=backend,
                         device=device, dtype=dtype)
    next(iter(loader))  # warm-up: allocations, first kernels, pipeline start
    synchronize(torch.device(device))
    done, start = 0, time.perf_counter()
    while done < n_images:
        for x, _ in loader:
            done += len(x)
            if done >= n_images:
                break
    synchronize(torch.device(device))
    return done / (time.perf_counter() - start)


def torchvision_pipeline(spec: AugmentSpec):
    """The report's torchvision transforms for ``spec`` (flip, affine, crop, jitter, normalise)."""
    from torchvision.transforms import v2

    steps = []
    if spec.flip_p:
        steps.append(v2.RandomHorizontalFlip(spec.flip_p))
    if spec.degrees or any(spec.translate):
        steps.append(v2.RandomAffine(spec.degrees, translate=spec.translate))
    if spec.crop_padding:
        steps.append(v2.RandomCrop(32, padding=spec.crop_padding))
    if spec.resized_crop_scale is not None:
        steps.append(v2.RandomResizedCrop(32, scale=spec.resized_crop_scale,
                                          ratio=spec.resized_crop_ratio))
    if spec.jitter:
        steps.append(v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
              v2.Normalize(spec.mean, spec.std)]
    return v2.Compose(steps)


class _PilDataset(torch.utils.data.Dataset):
    """uint8 arrays served as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def time_torchvision(images, labels, spec, batch_size, workers, device, n_images):
    """images/s of the seed's DataLoader, batches moved to ``device`` (channels_last)."""
    dataset = _PilDataset(images, labels, torchvision_pipeline(spec))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True,
                                         num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0,
                                         pin_memory=torch.device(device).type == "cuda")
    it = iter(loader)
    next(it)  # warm-up: worker start
    done, start = 0, time.perf_counter()
    while done < n_images:
        for x, _ in it:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            done += len(x)
            if done >= n_images:
                break
        it = iter(loader)
    synchronize(torch.device(device))
    return done / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
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

    if args.data_dir:
        from fastcifar.data import load_cifar10

        data = load_cifar10(args.data_dir, download=False)
        images, labels, source = data.train_images, data.train_labels, str(data.folder)
    else:
        images, labels = make_arrays(args.dataset_size, seed=0)
        source = f"synthetic ({args.dataset_size} images)"
    backends = list(args.backends)
    dali_version = None
    if "dali" in backends:
        from fastcifar.augment.dali import require_dali

        try:
            dali_version = require_dali().__version__
        except ImportError as err:
            # asked for and missing is an error: a table without its DALI rows must not pass
            # for a finished measurement (pass --backends torch to measure without it)
            print(f"error: --backends dali: {err}", file=sys.stderr)
            return 2
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    env = environment()
    where = env["gpu"] if torch.device(args.device).type == "cuda" else \
        f"{env['cpu']} ({env['cpu_cores']} cores)"
    name = f"loader_throughput_{torch.device(args.device).type}"
    payload = {"device": args.device, "where": where, "data": source,
               "images_per_setting": args.images, "torchvision_workers": args.workers,
               "dtype": str(dtype), "dali": dali_version,
               "timing": "whole passes after one warm-up batch, device synchronised"}
    rows = []
    for backend in backends:
        for preset in args.presets:
            for bs in args.batch_sizes:
                if backend == "torchvision":
                    rate = time_torchvision(images, labels, PRESETS[preset], bs, args.workers,
                                            args.device, args.images)
                else:
                    rate = time_loader(images, labels, PRESETS[preset], bs, backend,
                                       args.device, args.images, dtype)
                rows.append({"backend": backend, "preset": preset, "batch_size": bs,
                             "images_per_s": round(rate)})
                print_row = rows[-1]
                print(f"  {backend:11s} {preset:26s} bs {bs:5d}: {print_row['images_per_s']:>9,} "
                      "images/s", flush=True)
                saved = save_result(name, payload | {"rows": rows}, args.out)
    print(f"\nloader throughput on {args.device}: {where}; data {source}")
    print_table(rows, ["backend", "preset", "batch_size", "images_per_s"])
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
