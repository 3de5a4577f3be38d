"""Train a model: ``python -m fastcifar.train --model resnet_final`` (or ``--recipe NAME``).

Every run writes, under --out (default runs/<recipe>-<time>): config.json, metrics.jsonl (one
line per epoch), summary.json, best.pt, last.pt and figures. ``--resume DIR`` continues a run
from its last.pt and ends where an uninterrupted run would have.
"""

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .augment import get_preset, make_loader
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import CLASSES, DataError, load_cifar10
from .data.__main__ import add_data_args
from .engine import NonFiniteLoss, evaluate, train_epoch
from .env import environment
from .figures import plot_confusion, plot_curves, plot_per_class
from .metrics import per_class_accuracy, stratified_split, threshold_table
from .models import BN_RELU_CHOICES, create_model, list_models
from .recipes import DEFAULT_RECIPE, RECIPES, Recipe, get_recipe

CHECKPOINT_FORMAT = 1
# recipe fields that can be overridden from the command line, with their flags' types
OVERRIDES = {"epochs": int, "batch_size": int, "lr": float, "momentum": float,
             "weight_decay": float, "label_smoothing": float, "scheduler": str, "augment": str}


def get_args_parser() -> argparse.ArgumentParser:
    recipes = "\n".join(f"  {r.name:24s} {r.model:15s} {r.description}" for r in RECIPES.values())
    parser = argparse.ArgumentParser(
        prog="python -m fastcifar.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"models: {', '.join(list_models())}\n\nrecipes:\n{recipes}")
    what = parser.add_argument_group("what to train")
    what.add_argument("--model", choices=list_models(), help="train this model's default recipe")
    what.add_argument("--recipe", choices=list(RECIPES), help="train this recipe")
    for field, kind in OVERRIDES.items():
        what.add_argument(f"--{field.replace('_', '-')}", type=kind, default=None,
                          help=f"override the recipe's {field}")
    run = parser.add_argument_group("how to run")
    run.add_argument("--val-split", type=int, default=0, metavar="N",
                     help="hold out N training images (stratified) for model selection and the "
                          "plateau monitor; without it both use the test set, as the report did")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    run.add_argument("--loader", choices=["torch", "dali"], default="torch",
                     help="augmentation backend")
    run.add_argument("--bn-relu", choices=BN_RELU_CHOICES, default="eager",
                     help="BatchNorm+ReLU implementation")
    run.add_argument("--train-subset", type=int, default=None, metavar="N",
                     help="train on the first N training images only (quick checks)")
    run.add_argument("--test-subset", type=int, default=None, metavar="N",
                     help="evaluate on the first N test images only (quick checks)")
    run.add_argument("--check-every", type=int, default=None, metavar="K",
                     help="read the loss back every K steps (default: 1 on CPU, 50 on CUDA)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="run folder (default runs/<recipe>-<time>)")
    out.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    out.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    out.add_argument("--no-figures", action="store_true")
    add_data_args(parser)
    return parser


def resolve_recipe(args, parser) -> Recipe:
    """The recipe the flags ask for, overrides applied; bad combinations end in parser.error."""
    if args.recipe and args.model and get_recipe(args.recipe).model != args.model:
        parser.error(f"--model {args.model} conflicts with --recipe {args.recipe} "
                     f"(which trains {get_recipe(args.recipe).model}); give one of them")
    if not (args.recipe or args.model):
        parser.error("say what to train: --model NAME or --recipe NAME (see --help)")
    recipe = get_recipe(args.recipe or DEFAULT_RECIPE[args.model])
    recipe = recipe.replace(**{f: getattr(args, f) for f in OVERRIDES})
    if recipe.scheduler not in ("none", "plateau"):
        parser.error(f"--scheduler must be 'none' or 'plateau', not {recipe.scheduler!r}")
    try:
        get_preset(recipe.augment)
    except ValueError as err:
        parser.error(f"--augment: {err}")
    for name in ("epochs", "batch_size"):
        if getattr(recipe, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not recipe.lr > 0:
        parser.error("--lr must be positive")
    return recipe


def pick_device(name: str, quiet: bool) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but torch sees no CUDA device "
                         f"(torch {torch.__version__}); use --device cpu or auto")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
        if name == "cpu" and not quiet:
            print("note: no CUDA device found, training on the CPU (slow for the big models)")
    return torch.device(name)


def main(argv: list[str] | None = None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.resume:
        conflicts = [f"--{f.replace('_', '-')}" for f in ("model", "recipe", "out", *OVERRIDES)
                     if f != "epochs" and getattr(args, f) is not None]
        if conflicts:
            parser.error(f"--resume continues a run with its own settings; drop {conflicts}")
        state = _load_resume(Path(args.resume))
        config = state["config"]
        if args.epochs:
            config["recipe"]["epochs"] = args.epochs
        recipe = Recipe(**config["recipe"])
        out = Path(args.resume)
    else:
        recipe, state = resolve_recipe(args, parser), None
        config = {"recipe": recipe.__dict__ | {}, "val_split": args.val_split, "seed": args.seed,
                  "loader": args.loader, "bn_relu": args.bn_relu,
                  "train_subset": args.train_subset, "test_subset": args.test_subset}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"runs/{recipe.name}-{stamp}")
        if (out / "last.pt").exists():
            parser.error(f"{out} already holds a run; --resume {out} to continue it, or pick "
                         "another --out")
    device = pick_device(args.device, args.quiet)
    try:
        return run(recipe, config, out, device, args, state)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def _load_resume(run_dir: Path) -> dict:
    try:
        state = load_checkpoint(run_dir / "last.pt")
    except CheckpointError as err:
        raise SystemExit(f"error: cannot resume: {err}") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise SystemExit(f"error: {run_dir / 'last.pt'} has checkpoint format "
                         f"{state.get('format')}, this fastcifar reads {CHECKPOINT_FORMAT}")
    return state


def build_data(config: dict, args, device: torch.device, batch_size: int):
    """(train loader, validation loader or None, test loader) for ``config``."""
    data = load_cifar10(args.data_dir, download=not args.no_download, progress=not args.quiet)
    train_x, train_y = data.train_images, data.train_labels
    val = None
    if config["val_split"]:
        if config["val_split"] >= len(train_y):
            raise DataError(f"--val-split {config['val_split']} leaves no training images "
                            f"(the training set has {len(train_y)})")
        keep, held = stratified_split(train_y, config["val_split"], seed=config["seed"])
        val = (train_x[held], train_y[held])
        train_x, train_y = train_x[keep], train_y[keep]
    if config["train_subset"]:
        train_x, train_y = train_x[: config["train_subset"]], train_y[: config["train_subset"]]
    test_x, test_y = data.test_images, data.test_labels
    if config["test_subset"]:
        test_x, test_y = test_x[: config["test_subset"]], test_y[: config["test_subset"]]
    spec = get_preset(config["recipe"]["augment"])
    common = dict(backend=config["loader"], device=device, seed=config["seed"])
    train = make_loader(train_x, train_y, spec, batch_size, train=True, **common)
    eval_bs = max(batch_size, 500)
    evaluate_on = lambda x, y: make_loader(x, y, spec, eval_bs, train=False, **common)
    return train, (evaluate_on(*val) if val else None), evaluate_on(test_x, test_y)


def run(recipe: Recipe, config: dict, out: Path, device: torch.device, args, state) -> int:
    """The run: build everything, then train epoch by epoch, checkpointing each one."""
    say = (lambda *a: None) if args.quiet else print
    torch.manual_seed(config["seed"])
    loaders = build_data(config, args, device, recipe.batch_size)
    model = create_model(recipe.model, bn_relu=config["bn_relu"]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                                nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
    scheduler = None
    if recipe.scheduler == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=recipe.plateau_factor,
            patience=recipe.plateau_patience, min_lr=recipe.plateau_min_lr)
    history, best, start_epoch = [], {}, 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng_torch"])
        if device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        say(f"resuming {out} after epoch {start_epoch}")
    saved = start_epoch  # the epoch last.pt holds
    out.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    config = config | {"model_parameters": n_params, "device": str(device),
                       "fastcifar": __version__, "environment": environment()}
    _write_json(out / "config.json", config)
    train_loader, val_loader, test_loader = loaders
    select = "val_acc" if val_loader is not None else "test_acc"
    check_every = args.check_every or (50 if device.type == "cuda" else 1)
    say(f"{recipe.name}: {recipe.model} ({n_params:,} parameters) on {device}, "
        f"{len(train_loader)} steps of {recipe.batch_size} per epoch -> {out}")

    try:
        for epoch in range(start_epoch, recipe.epochs):
            record = train_and_evaluate(epoch, model, optimizer, scheduler, recipe, loaders,
                                        history, check_every, args.quiet)
            history.append(record)
            if not best or record[select] > best[select]:
                best = dict(record)
                save_checkpoint({"format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                                 "config": config, "epoch": epoch + 1, "metrics": record},
                                out / "best.pt")
            save_checkpoint({
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "config": config,
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "history": history, "best": best, "rng_torch": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            }, out / "last.pt")
            saved = epoch + 1
            _write_jsonl(out / "metrics.jsonl", history)
            say(epoch_line(record, recipe.epochs))
    except KeyboardInterrupt:
        held = f"{out / 'last.pt'} holds epoch {saved}" if saved else "no epoch finished"
        print(f"\ninterrupted; {held} (resume with --resume {out})")
        return 130
    except NonFiniteLoss as err:
        held = f"{out / 'last.pt'} holds epoch {saved}" if saved else "no checkpoint"
        print(f"error: {err}; stopped ({held}). Try a lower --lr.", file=sys.stderr)
        return 3

    final = evaluate(model, test_loader)
    summary = summarize(recipe, config, history, best, select, final)
    _write_json(out / "summary.json", summary)
    if not args.no_figures:
        title = f"{recipe.name} ({recipe.model}), CIFAR-10"
        plot_curves(history, out / "curves.png", title)
        plot_confusion(final["confusion"], CLASSES, out / "confusion.png")
        plot_per_class(per_class_accuracy(final["confusion"]), CLASSES, out / "per_class.png")
    if not args.quiet:
        print_summary(summary, out)
    return 0


def train_and_evaluate(epoch, model, optimizer, scheduler, recipe, loaders, history,
                       check_every, quiet) -> dict:
    """Train one epoch, evaluate, step the plateau scheduler; the epoch's metrics record."""
    train_loader, val_loader, test_loader = loaders
    _set_epoch(train_loader, epoch)
    stats = train_epoch(model, train_loader, optimizer, epoch=epoch,
                        label_smoothing=recipe.label_smoothing, check_every=check_every,
                        progress=not quiet)
    eval_start = time.perf_counter()
    record = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
              "lr": optimizer.param_groups[0]["lr"], "train_seconds": stats["seconds"],
              "images_per_s": stats["images"] / stats["seconds"]}
    results = {"test": evaluate(model, test_loader)}
    if val_loader is not None:
        results["val"] = evaluate(model, val_loader)
    for split, r in results.items():
        record[f"{split}_loss"], record[f"{split}_acc"] = r["loss"], r["acc"]
    record["train_seconds_total"] = (history[-1]["train_seconds_total"] if history else 0.0) \
        + stats["seconds"]
    record["eval_seconds"] = time.perf_counter() - eval_start
    monitored = record["val_loss" if val_loader is not None else "test_loss"]
    if not math.isfinite(monitored):  # the weights are broken even though no step saw it
        raise NonFiniteLoss(epoch, len(train_loader) - 1)
    if scheduler is not None:
        scheduler.step(monitored)
    return record


def epoch_line(record: dict, epochs: int) -> str:
    val = f" val {record['val_acc']:.2f}%" if "val_acc" in record else ""
    return (f"epoch {record['epoch']:3d}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_acc']:.2f}%{val}  test loss {record['test_loss']:.4f} "
            f"acc {record['test_acc']:.2f}%  lr {record['lr']:.2g}  "
            f"{record['train_seconds']:.1f}s ({record['images_per_s']:.0f} img/s)")


def _set_epoch(loader, epoch: int) -> None:
    if hasattr(loader, "set_epoch"):  # the epoch's order and augmentation depend on it alone
        loader.set_epoch(epoch)


def summarize(recipe, config, history, best, select, final) -> dict:
    last = history[-1]
    by_test = max(history, key=lambda h: h["test_acc"])
    summary = {
        "recipe": recipe.name, "model": recipe.model, "parameters": config["model_parameters"],
        "epochs": last["epoch"], "device": config["device"],
        "final": {"epoch": last["epoch"], "test_acc": last["test_acc"],
                  "val_acc": last.get("val_acc")},
        # the report's number: the best epoch by test accuracy (optimistic, chosen on the test set)
        "best_by_test": {"epoch": by_test["epoch"], "test_acc": by_test["test_acc"],
                         "note": "epoch chosen on the test set, as the report did"},
        "thresholds": threshold_table(history),
        "threshold_note": "first epoch whose test accuracy reached each threshold; seconds are "
                          "training time only (evaluation excluded)",
        "train_seconds_total": last["train_seconds_total"],
        "eval_seconds_total": sum(h["eval_seconds"] for h in history),
        "images_per_s_mean": float(np.mean([h["images_per_s"] for h in history])),
        "final_per_class_acc": dict(zip(CLASSES, per_class_accuracy(final["confusion"]).tolist())),
    }
    if select == "val_acc":
        summary["best_by_val"] = {"epoch": best["epoch"], "val_acc": best["val_acc"],
                                  "test_acc": best["test_acc"],
                                  "note": "epoch chosen on the validation split (honest)"}
    return summary


def print_summary(summary: dict, out: Path) -> None:
    f = summary["final"]
    print(f"\nfinal test accuracy {f['test_acc']:.2f}% (epoch {f['epoch']})"
          + (f", validation {f['val_acc']:.2f}%" if f.get("val_acc") is not None else ""))
    if "best_by_val" in summary:
        b = summary["best_by_val"]
        print(f"best epoch by validation: {b['epoch']} (val {b['val_acc']:.2f}%, "
              f"test {b['test_acc']:.2f}%)")
    b = summary["best_by_test"]
    print(f"best epoch by test accuracy (chosen on the test set, as the report did): "
          f"{b['epoch']} ({b['test_acc']:.2f}%)")
    print("benchmarks (training time only, evaluation excluded):")
    for row in summary["thresholds"]:
        reached = (f"epoch {row['epoch']:3d}, {row['train_seconds']:8.1f} s" if row["epoch"]
                   else "not reached")
        print(f"  {row['threshold']:.0f} %: {reached}")
    print(f"outputs in {out}")


def _write_json(path: Path, payload) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    os.replace(tmp, path)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    # rewritten whole from the checkpointed history, so it never runs ahead of last.pt
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, default=_jsonable) + "\n" for r in rows))
    os.replace(tmp, path)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


if __name__ == "__main__":
    sys.exit(main())
