"""Train a model: ``python -m fastcifar.train --model resnet_final`` (or ``--recipe NAME``).

Every run writes, under --out (default runs/<recipe>-<time>): config.json, metrics.jsonl (one
line per epoch), summary.json, best.pt, last.pt and figures. ``--resume DIR`` continues a run
from its last.pt and ends where an uninterrupted run would have.

This is the command line of ``fastcifar.fit`` (fastcifar/run.py): the recipe flags are made from
the Recipe's fields, the others from RunOptions; exit codes: 0 done or stopped, 2 a usage or
data error (a bad flag or value, missing or corrupt data, an unreadable checkpoint, an
unwritable run folder, one another run holds, or a full disk), 3 a NaN or infinite loss, 130
Ctrl-C, 143 SIGTERM, 129 SIGHUP (each stops the run at its next step with a checkpoint of it).
"""

import argparse
import dataclasses
import shlex
import signal
import sys

import torch

from .checkpoint import CheckpointError
from .data import DataError
from .data.__main__ import add_data_args
from .lifecycle import exit_code, run_cli, signal_name, watch_parent
from .models import list_models
from .recipes import DEFAULT_RECIPE, RECIPES, ConfigError, Recipe, RecipeError, get_recipe
from .run import SWITCH_CHOICES, fit, started_by_torchrun

IDENTITY = ("name", "model")  # a recipe's identity: chosen by --recipe / --model, not overridden


def _on_off(text: str) -> bool:
    words = {"on": True, "true": True, "1": True, "off": False, "false": False, "0": False}
    if text.lower() not in words:
        raise argparse.ArgumentTypeError(f"expected on or off, not {text!r}")
    return words[text.lower()]


def add_recipe_flags(group, recipe_cls: type = Recipe) -> None:
    """One --flag per Recipe field (but its name and model), typed by the field, its help from
    the field's metadata (recipes.knob); default None: "the recipe's own value"."""
    for f in dataclasses.fields(recipe_cls):
        if f.name in IDENTITY:
            continue
        kind = _on_off if f.type is bool else f.type
        group.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None,
                           choices=f.metadata.get("choices"),
                           metavar="on|off" if f.type is bool else None,
                           help=f"{f.metadata.get('help', f.name)} (recipe default: {f.default})")


def get_args_parser(recipe_cls: type = Recipe) -> argparse.ArgumentParser:
    recipes = "\n".join(f"  {r.name:24s} {r.model:15s} {r.description}" for r in RECIPES.values())
    parser = argparse.ArgumentParser(
        prog="python -m fastcifar.train", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"models: {', '.join(list_models())}\n\nrecipes:\n{recipes}")
    what = parser.add_argument_group("what to train (every recipe field can be overridden)")
    what.add_argument("--model", choices=list_models(), help="train this model's default recipe")
    what.add_argument("--recipe", choices=list(RECIPES), help="train this recipe")
    add_recipe_flags(what, recipe_cls)
    run = parser.add_argument_group("how to run")
    run.add_argument("--val-split", type=int, default=0, metavar="N",
                     help="hold out N training images (stratified) for model selection and the "
                          "plateau monitor; without it both use the test set, as the report did")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--device", choices=SWITCH_CHOICES["device"], default="auto")
    run.add_argument("--sync-bn", action="store_true",
                     help="under torchrun: BatchNorm statistics over the global batch (default: "
                          "each rank's own); works for every model")
    speed = parser.add_argument_group(
        "speed switches (auto: measured on this machine where there is a choice: each "
        "candidate is checked, then timed, and the fastest correct one beyond the noise wins; "
        "decisions are cached; fastcifar-doctor shows them)")
    speed.add_argument("--loader", choices=SWITCH_CHOICES["loader"], default="auto",
                       help="augmentation backend (auto: DALI against torch, measured on CUDA "
                            "where DALI is installed; torch elsewhere)")
    speed.add_argument("--amp", choices=SWITCH_CHOICES["amp"], default="auto",
                       help="autocast dtype; fp16 adds a GradScaler (auto: bf16 on GPUs with "
                            "native bf16, fp16 on other GPUs; on a CPU with native bf16 bf16 "
                            "against fp32, measured; off on other CPUs)")
    speed.add_argument("--channels-last", choices=SWITCH_CHOICES["channels_last"], default="auto",
                       help="model and batches in channels_last memory format (auto: on "
                            "against off, measured)")
    speed.add_argument("--compile", choices=SWITCH_CHOICES["compile"], default="auto",
                       help="torch.compile mode (auto: 'default' on CUDA); compile time is "
                            "measured and reported apart from training time")
    speed.add_argument("--bn-relu", choices=SWITCH_CHOICES["bn_relu"], default="auto",
                       help="BatchNorm+ReLU implementation (auto: on CUDA the Triton kernel, "
                            "checked against eager at the model's layer shapes, then timed "
                            "against eager under the run's compile mode; a model without "
                            "BN+ReLU, the speedrun, refuses triton)")
    speed.add_argument("--no-auto-cache", action="store_true",
                       help="measure the auto switches afresh and store nothing (also "
                            "FASTCIFAR_AUTO_CACHE=off); the cache is $XDG_CACHE_HOME/fastcifar, "
                            "else ~/.cache/fastcifar")
    speed.add_argument("--cpu-malloc", choices=SWITCH_CHOICES["cpu_malloc"], default="auto",
                       help="keep: glibc keeps freed memory in its heap, so a step's activations "
                            "are not page-faulted in afresh every step (auto: keep on the CPU)")
    run.add_argument("--train-subset", type=int, default=None, metavar="N",
                     help="train on the first N training images only (quick checks)")
    run.add_argument("--test-subset", type=int, default=None, metavar="N",
                     help="evaluate on the first N test images only (quick checks)")
    run.add_argument("--check-every", type=int, default=None, metavar="K",
                     help="read the loss back every K steps (default: 1 on CPU, 50 on CUDA)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", default=None, help="run folder (default runs/<recipe>-<time>)")
    out.add_argument("--resume", default=None, metavar="DIR", help="continue the run in DIR")
    out.add_argument("--stop-after", type=int, default=None, metavar="N",
                     help="stop after epoch N, as Ctrl-C would (the schedule still spans "
                          "--epochs); continue later with --resume")
    out.add_argument("--checkpoint-minutes", type=float, default=10.0, metavar="M",
                     help="write last.pt mid-epoch at least every M minutes of the run, so "
                          "that Ctrl-C loses at most that much (0: after every step); "
                          "--resume continues from the exact step")
    out.add_argument("--stop-after-steps", type=int, default=None, metavar="N",
                     help="stop after N steps, checkpointing first, as Ctrl-C after a "
                          "checkpoint would (a test hook); continue with --resume")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bars or epoch lines; only the one-line final result")
    out.add_argument("--no-figures", action="store_true")
    add_data_args(parser)
    return parser


def recipe_flags(recipe_cls: type = Recipe) -> list[str]:
    return [f.name for f in dataclasses.fields(recipe_cls) if f.name not in IDENTITY]


def resolve_recipe(args, parser, recipe_cls: type = Recipe) -> Recipe:
    """The recipe the flags ask for, overrides applied; a bad value ends in parser.error."""
    if args.recipe and args.model and get_recipe(args.recipe).model != args.model:
        parser.error(f"--model {args.model} conflicts with --recipe {args.recipe} "
                     f"(which trains {get_recipe(args.recipe).model}); give one of them")
    if not (args.recipe or args.model):
        parser.error("say what to train: --model NAME or --recipe NAME (see --help)")
    base = get_recipe(args.recipe or DEFAULT_RECIPE[args.model])
    try:
        if type(base) is not recipe_cls:  # a Recipe variant with fields of its own
            base = recipe_cls(**dataclasses.asdict(base))
        return base.replace(**{f: getattr(args, f) for f in recipe_flags(recipe_cls)})
    except RecipeError as err:  # "--epochs must be at least 1, not 0"
        parser.error(f"--{err.field.replace('_', '-')}{str(err)[len(err.field):]}")


def explicit(argv: list[str] | None) -> set[str]:
    """The options the command line names (not those left at their defaults)."""
    parser = get_args_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    watch_parent()
    if args.resume:
        given = [f for f in ("model", "recipe", "out", *recipe_flags())
                 if f != "epochs" and getattr(args, f) is not None]
        if given:
            parser.error("--resume continues a run with its own settings; drop "
                         f"{[f'--{f}'.replace('_', '-') for f in given]}")
        recipe, overrides = None, {"epochs": args.epochs}
    else:
        recipe, overrides = resolve_recipe(args, parser), {}
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device "
              f"(torch {torch.__version__}); use --device cpu or auto", file=sys.stderr)
        return 2
    if args.device == "auto" and not torch.cuda.is_available() and not args.quiet \
            and not started_by_torchrun():
        print("note: no CUDA device found, training on the CPU (slow for the big models)")
    options = {k: getattr(args, k) for k in (
        "out", "resume", "seed", "val_split", "train_subset", "test_subset", "loader", "amp",
        "channels_last", "compile", "bn_relu", "cpu_malloc", "device", "sync_bn", "check_every",
        "stop_after", "checkpoint_minutes", "stop_after_steps", "data_dir", "quiet")}
    figures = {"figures": not args.no_figures}
    if args.resume:  # only what is named: the rest comes from the run's config.json
        named = explicit(argv)
        options = {k: v for k, v in options.items() if k in named}
        figures = {"figures": False} if args.no_figures else {}
    try:
        result = fit(recipe, **overrides, **options, download=not args.no_download,
                     auto_cache=not args.no_auto_cache, **figures)
    except RecipeError as err:  # a run option: "--val-split must be >= 0, not -5"
        parser.error(f"--{err.field.replace('_', '-')}{str(err)[len(err.field):]}")
    except ConfigError as err:
        parser.error(str(err))
    except CheckpointError as err:
        print(f"error: cannot resume: {err}", file=sys.stderr)
        return 2
    except (DataError, ImportError) as err:  # ImportError: an optional backend (DALI, Triton)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:  # a stop signal before training began
        signum = getattr(err, "signum", signal.SIGINT)
        kept = f"{args.resume} is as it was" if args.resume else "no run folder is left"
        print(f"\ninterrupted by {signal_name(signum)} during start-up; {kept}")
        return exit_code(signum)
    if result.status == "disk full":
        print(f"error: {result.error}", file=sys.stderr)
        return 2
    if result.status == "interrupted":
        print(f"\n{interrupted(result)}")
        return exit_code(result.signum or signal.SIGINT)
    if result.status == "diverged":
        print(f"error: {result.error}; stopped ({result.held()}). Try a lower --lr.",
              file=sys.stderr)
        return 3
    return 0


def interrupted(result) -> str:
    """What a stop signal left, and the exact command to go on (only where there is one)."""
    what = f"interrupted by {signal_name(result.signum or signal.SIGINT)}; {result.held()}"
    if not (result.epochs_done or result.steps_done):
        return f"{what}; nothing to resume"
    return f"{what}; resume with: python -m fastcifar.train --resume {shlex.quote(str(result.out))}"


if __name__ == "__main__":
    sys.exit(main())
