"""Side by side with airbench (the fastest public CIFAR-10 trainer), same card, same run.

    python benchmarks/vs_airbench.py --data-dir data [--recipe fast] [--runs 1]

CUDA only (airbench is). Writes our data as airbench's ./cifar10/{train,test}.pt (dicts of uint8
NHWC `images`, `labels`, `classes`) in a scratch folder, runs `airbench.warmup94()` (compile and
cuDNN tuning, untimed) then `airbench.train94()` timed, then our recipe through
fastcifar.train (compile measured apart, evaluation excluded from its training time). airbench's
timer is wall-clock around train94(), which also includes its loader setup and its final TTA
evaluation (a little in our favour); its own printed table is kept in the JSON, so the ratio can
be recomputed from airbench's own time. Prints a table and writes
benchmarks/results/vs_airbench.json. Install airbench with `pip install .[compare]` (or on an
offline GPU machine from ../shared/tools/device-stage airbench).
"""

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

import torch  # noqa: E402

from benchmarks._common import print_table, save_result  # noqa: E402
from fastcifar import train  # noqa: E402
from fastcifar.data import CLASSES, load_cifar10  # noqa: E402


def write_airbench_data(data, folder: Path) -> None:
    """Our arrays in airbench's format: ./cifar10/train.pt and test.pt."""
    (folder / "cifar10").mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        torch.save({"images": torch.from_numpy(getattr(data, f"{split}_images")),
                    "labels": torch.from_numpy(getattr(data, f"{split}_labels")),
                    "classes": list(CLASSES)}, folder / "cifar10" / f"{split}.pt")


@contextlib.contextmanager
def airbench_data_folder(data_dir: str):
    """A scratch folder holding our data set (from ``data_dir``) in airbench's format."""
    data = load_cifar10(data_dir, download=False)
    with tempfile.TemporaryDirectory() as scratch:
        write_airbench_data(data, Path(scratch))
        yield Path(scratch)


def run_airbench(folder: Path) -> dict:
    import airbench

    here = os.getcwd()
    os.chdir(folder)  # airbench reads ./cifar10 whatever loader it is given
    try:
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            airbench.warmup94()
            torch.cuda.synchronize()
            start = time.perf_counter()
            model = airbench.train94()
            torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        loader = airbench.CifarLoader("cifar10", train=False, batch_size=2000)
        accuracy = 100.0 * airbench.evaluate(model, loader, tta_level=2)
    finally:
        os.chdir(here)
    return {"seconds": seconds, "test_acc": accuracy, "printed": printed.getvalue()}


def run_ours(recipe: str, data_dir: str, out: Path, seed: int) -> dict:
    code = train.main(["--recipe", recipe, "--data-dir", data_dir, "--out", str(out),
                       "--seed", str(seed), "--quiet", "--no-figures", "--no-download"])
    if code != 0:
        raise SystemExit(f"our run failed (exit {code})")
    summary = json.loads((out / "summary.json").read_text())
    config = json.loads((out / "config.json").read_text())
    reach = {row["threshold"]: row["train_seconds"] for row in summary["thresholds"]}
    return {"seconds": summary["train_seconds_total"], "test_acc": summary["final"]["test_acc"],
            "seconds_to_94": reach[94.0], "seconds_to_92": reach[92.0],
            "compile_seconds": config["compile_seconds"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--recipe", default="fast")
    parser.add_argument("--runs", type=int, default=1, help="runs of each (seeds 0..n-1)")
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("vs_airbench needs a CUDA device (airbench runs on CUDA only); nothing measured")
        return 0
    try:
        import airbench  # noqa: F401
    except ImportError:
        print("error: airbench is not installed: pip install '.[compare]'", file=sys.stderr)
        return 2
    rows = []
    with airbench_data_folder(args.data_dir) as scratch:
        for run in range(args.runs):
            ab = run_airbench(scratch)
            rows.append({"trainer": "airbench94", "run": run, "seconds": round(ab["seconds"], 2),
                         "test_acc": round(ab["test_acc"], 2), "printed": ab["printed"]})
            ours = run_ours(args.recipe, args.data_dir, scratch / f"ours-{run}", seed=run)
            rows.append({"trainer": f"fastcifar {args.recipe}", "run": run,
                         **{k: round(v, 2) if isinstance(v, float) else v
                            for k, v in ours.items()}})
    for row in rows:
        if row["trainer"].startswith("fastcifar") and row["seconds_to_94"]:
            ab = next(r for r in rows if r["trainer"] == "airbench94" and r["run"] == row["run"])
            row["ratio_to_94_vs_airbench"] = round(row["seconds_to_94"] / ab["seconds"], 2)
    print(f"CIFAR-10 time to accuracy on {torch.cuda.get_device_name(0)}, data {args.data_dir}")
    print_table(rows, ["trainer", "run", "seconds", "test_acc", "seconds_to_92", "seconds_to_94",
                       "compile_seconds", "ratio_to_94_vs_airbench"])
    print(f"saved {save_result('vs_airbench', {'rows': rows}, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
