"""Re-evaluate a checkpoint on the test set: ``python -m fastcifar.evaluate runs/X``.

Prints accuracy, per-class accuracy and the confusion matrix of best.pt (or --checkpoint FILE).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .augment import get_preset, make_loader
from .checkpoint import CheckpointError, load_checkpoint
from .data import CLASSES, DataError, load_cifar10
from .data.__main__ import add_data_args
from .engine import evaluate
from .metrics import per_class_accuracy
from .models import create_model, parse_model_options


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.evaluate", description=__doc__)
    parser.add_argument("run", nargs="?", help="a run folder (its best.pt is evaluated)")
    parser.add_argument("--checkpoint", help="a checkpoint file (best.pt or last.pt)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--batch-size", type=int, default=500)
    add_data_args(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.checkpoint):
        parser.error("give a run folder or --checkpoint FILE (one of them)")
    path = Path(args.checkpoint) if args.checkpoint else Path(args.run) / "best.pt"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda, but torch sees no CUDA device")
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    try:
        state = load_checkpoint(path)
        config = state["config"]
        data = load_cifar10(args.data_dir, download=not args.no_download)
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    options = parse_model_options(config["recipe"].get("model_options", ""))
    model = create_model(config["recipe"]["model"], **options).to(device)
    model.load_state_dict(state["model"])  # eager and fused BN+ReLU share state-dict keys
    spec = get_preset(config["recipe"]["augment"])
    loader = make_loader(data.test_images, data.test_labels, spec, args.batch_size, train=False,
                         device=device)
    # best.pt holds the weights the run evaluated (the EMA copy when the recipe keeps one)
    result = evaluate(model, loader, tta=config["recipe"].get("tta", "none"))
    print(f"{path}: {config['recipe']['name']} ({config['recipe']['model']}), epoch "
          f"{state['epoch']}, on {len(data.test_labels)} test images of {data.folder}")
    print(f"test accuracy {result['acc']:.2f}%  loss {result['loss']:.4f}")
    print(format_report(result["confusion"]))
    return 0


def format_report(confusion: np.ndarray) -> str:
    """Per-class accuracy and the confusion matrix (rows true, columns predicted) as text."""
    width = max(len(c) for c in CLASSES)
    lines = ["per-class accuracy:"]
    for name, acc in zip(CLASSES, per_class_accuracy(confusion)):
        lines.append(f"  {name:{width}s} {acc:6.2f}%")
    lines.append("confusion matrix (rows: true class, columns: predicted):")
    lines.append(" " * (width + 2) + " ".join(f"{c[:5]:>5s}" for c in CLASSES))
    for name, row in zip(CLASSES, confusion):
        lines.append(f"  {name:{width}s}" + " ".join(f"{v:5d}" for v in row))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
