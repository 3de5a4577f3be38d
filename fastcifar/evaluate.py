"""Re-evaluate a checkpoint on the test set: ``python -m fastcifar.evaluate runs/X``.

Prints accuracy, per-class accuracy and the confusion matrix of best.pt (or --checkpoint FILE),
on the data folder the run recorded (or --data-dir).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from .augment import get_preset, make_loader
from .checkpoint import CheckpointError, load_checkpoint
from .cli import add_data_flags, data_options
from .data import CLASSES, DataError, load_cifar10
from .engine import evaluate
from .fields import ConfigError
from .lifecycle import run_cli
from .metrics import per_class_accuracy
from .models import create_model, list_models, parse_model_options
from .options import FIELDS, RunOptions


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.evaluate", description=__doc__)
    parser.add_argument("run", nargs="?", help="a run folder (its best.pt is evaluated)")
    parser.add_argument("--checkpoint", help="a checkpoint file (best.pt or last.pt)")
    parser.add_argument("--device", choices=FIELDS["device"].metadata["choices"], default="auto")
    parser.add_argument("--batch-size", type=int, default=500)
    add_data_flags(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if bool(args.run) == bool(args.checkpoint):
        parser.error("give a run folder or --checkpoint FILE (one of them)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, not {args.batch_size}")
    path = Path(args.checkpoint) if args.checkpoint else Path(args.run) / "best.pt"
    try:
        device = RunOptions(device=args.device).torch_device()
    except ConfigError as err:
        parser.error(str(err))
    try:
        state = load_checkpoint(path)
        config, model = _rebuild(state, path, device)
        # the run's own data folder, as --resume reads it, unless --data-dir names another
        data_dir = args.data_dir or _recorded_data(config)
        data = load_cifar10(**data_options(args) | {"data_dir": data_dir})
    except (CheckpointError, DataError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
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


def _rebuild(state: dict, path: Path, device: torch.device):
    """(config, the model with the checkpoint's weights); CheckpointError if they do not fit."""
    try:
        config = state["config"]
        recipe = config["recipe"]
        name, augment, epoch = recipe["model"], recipe["augment"], state["epoch"]
        weights = state["model"]
        get_preset(augment)
    except (KeyError, TypeError, ValueError):
        raise CheckpointError(f"{path} is no fastcifar checkpoint (no run config and model "
                              "weights in it); give a best.pt or last.pt of a run") from None
    if name not in list_models():
        raise CheckpointError(f"{path} holds a model {name!r} this fastcifar does not know "
                              f"(epoch {epoch}); evaluate it with the fastcifar that made it")
    try:
        model = create_model(name, **parse_model_options(recipe.get("model_options", "")))
        model.load_state_dict(weights)  # eager and fused BN+ReLU share state-dict keys
    except (RuntimeError, ValueError, TypeError) as err:
        first = str(err).splitlines()[0][:200]
        raise CheckpointError(f"the weights in {path} do not fit its recorded model {name} "
                              f"({first}); was the file edited or its config.json replaced? "
                              "Evaluate a checkpoint as its run wrote it") from None
    return config, model.to(device)


def _recorded_data(config: dict) -> str | None:
    folder = config.get("data_dir")
    return folder if folder and Path(folder).is_dir() else None


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
