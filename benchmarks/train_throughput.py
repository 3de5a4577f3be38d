"""Training throughput of each model: images/s of whole SGD steps (forward, backward, update).

    python benchmarks/train_throughput.py [--device cpu] [--models cnn,resnet_final]
                                          [--batch-sizes 100,512] [--steps 3]

Inputs are random tensors already on the device, so this measures the model step alone (data
loading is benchmarked by loader_throughput.py). Prints a table and writes
benchmarks/results/train_throughput-<device>.json with the machine it ran on.
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from benchmarks._common import environment, print_table, save_result  # noqa: E402
from fastcifar.engine import synchronize  # noqa: E402
from fastcifar.models import create_model, list_models  # noqa: E402


def images_per_second(model_name: str, batch_size: int, steps: int, warmup: int,
                      device: torch.device) -> float:
    torch.manual_seed(0)
    model = create_model(model_name).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-6)
    x = torch.randn(batch_size, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize(device)
    return batch_size * steps / (time.perf_counter() - start)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default=",".join(list_models()))
    parser.add_argument("--batch-sizes", default="100,512")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    rows = []
    for name in args.models.split(","):
        for bs in (int(b) for b in args.batch_sizes.split(",")):
            rate = images_per_second(name, bs, args.steps, args.warmup, device)
            rows.append({"model": name, "batch_size": bs, "mode": "eager fp32",
                         "images_per_s": round(rate, 1)})
            print(f"  {name} bs {bs}: {rate:.1f} images/s", flush=True)
    env = environment()
    where = env["gpu"] or f"{env['cpu']} ({env['cpu_cores']} cores, {env['torch_threads']} threads)"
    print(f"training throughput (random inputs, SGD step) on {where}, torch {env['torch']}")
    print_table(rows, ["model", "batch_size", "mode", "images_per_s"])
    saved = save_result(f"train_throughput-{device.type}",
                        {"steps": args.steps, "warmup": args.warmup, "rows": rows}, args.out)
    print(f"saved {saved}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
