"""Training throughput: images/s of whole training steps (loading, augmentation, forward, backward,
update), from the seed's way to the fast path, adding one switch at a time on the same device.

    python -m benchmarks.train_throughput [--device cuda] [--models resnet_final] [--steps 30]
    python -m benchmarks.train_throughput --device cpu --models cnn --steps 4 --images 2000

Rows, cumulative: "seed" (torchvision per-image transforms in a DataLoader, eager fp32, batch
100), then + the GPU-resident batched loader, + batch 512, + channels_last, + bf16 autocast,
+ the Triton fused BatchNorm+ReLU (CUDA only), + torch.compile (compile time excluded). The
augmentation is the fast recipe's (flip + pad-crop) throughout. Timed with the device
synchronised before and after the timed steps (on a GPU that is what CUDA events measure).
Prints a table and writes benchmarks/results/train_throughput-<device>.json with the machine it
ran on, rewritten after every row.
"""

import argparse
import sys
import time

import torch
import torch.nn.functional as F

from benchmarks._common import command, environment, print_table, save_result
from fastcifar.augment import get_preset, make_loader
from fastcifar.data import load_cifar10
from fastcifar.data.synthetic import make_arrays
from fastcifar.engine import synchronize
from fastcifar.models import create_model


def ladder(seed_batch: int = 100, fast_batch: int = 512) -> list[tuple[str, dict]]:
    """(label, settings) rows: each adds one switch to the row before."""
    return [
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

def seed_loader(images, labels, batch, workers):
    """The report's way: per-image torchvision transforms in DataLoader worker processes."""
    from benchmarks.loader_throughput import _PilDataset, torchvision_pipeline

    dataset = _PilDataset(images, labels, torchvision_pipeline(get_preset("flip_crop")))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=torch.cuda.is_available())


def measure(model_name, s, images, labels, device, steps, warmup, workers) -> dict:
    """images/s of ``steps`` training steps after ``warmup`` (and compile) steps."""
    torch.manual_seed(0)
    model = create_model(model_name, bn_relu=s["bn_relu"]).to(device)
    memory_format = torch.channels_last if s["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    step_model = torch.compile(model) if s["compile"] else model
    if s["loader"] == "torchvision":
        loader = seed_loader(images, labels, s["batch"], workers)
    else:
        loader = make_loader(images, labels, get_preset("flip_crop"), s["batch"], train=True,
                             device=device, channels_last=s["channels_last"])

    def batches():
        while True:
            for x, y in loader:
                yield (x.to(device, non_blocking=True).contiguous(memory_format=memory_format),
                       y.to(device, non_blocking=True))

    stream = batches()

    def step():
        x, y = next(stream)
        with torch.autocast(device.type, dtype=s["amp"], enabled=s["amp"] is not None):
            loss = F.cross_entropy(step_model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    for _ in range(warmup):  # the first steps compile (when on) and start the workers
        step()
    synchronize(device)
    warm_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return {"images_per_s": round(s["batch"] * steps / (time.perf_counter() - start), 1),
            "warmup_seconds": round(warm_seconds, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=command(__file__), description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="resnet_final")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per row")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps (compile included)")
    parser.add_argument("--images", type=int, default=50000, help="training images used")
    parser.add_argument("--data-dir", default=None, help="real CIFAR-10 (default: synthetic)")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers (seed row)")
    parser.add_argument("--batch-sizes", type=int, nargs=2, default=[100, 512],
                        metavar=("SEED", "FAST"), help="the seed's batch and the fast path's")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device; use --device cpu",
              file=sys.stderr)
        return 2
    if args.data_dir:
        data = load_cifar10(args.data_dir, download=False)
        images, labels = data.train_images[: args.images], data.train_labels[: args.images]
    else:
        images, labels = make_arrays(args.images, seed=0)
    rows = []
    env = environment()
    where = env["gpu"] or f"{env['cpu']} ({env['cpu_cores']} cores)"
    for model_name in args.models.split(","):
        settings = {}
        for label, change in ladder(*args.batch_sizes):
            settings |= change
            row = {"model": model_name, "setting": label}
            if settings["bn_relu"] == "triton" and device.type != "cuda":
                row["note"] = "skipped: the Triton kernel needs CUDA (the CPU runs the reference)"
                settings["bn_relu"] = "eager"
            else:
                row |= measure(model_name, settings, images, labels, device, args.steps,
                               args.warmup, args.workers)
            rows.append(row)
            print(f"  {model_name}: {label}: {row.get('images_per_s', row.get('note'))}",
                  flush=True)
            saved = save_result(f"train_throughput-{device.type}", {
                "steps": args.steps, "warmup": args.warmup, "batch_sizes": args.batch_sizes,
                "data": "real" if args.data_dir else "synthetic", "rows": rows,
                "timing": "timed steps only, device synchronised before and after; warm-up "
                          "(and compile) steps excluded"}, args.out)
    print(f"training throughput on {where}, torch {env['torch']}, "
          f"{'real' if args.data_dir else 'synthetic'} data")
    print_table(rows, ["model", "setting", "images_per_s", "warmup_seconds", "note"])
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
