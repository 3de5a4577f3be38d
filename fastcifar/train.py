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
from .cli import add_flags, given, usage_message
from .data import DataError
from .lifecycle import exit_code, run_cli, signal_name, watch_parent
from .models import list_models
from .options import RunOptions
from .recipes import DEFAULT_RECIPE, RECIPES, ConfigError, Recipe, RecipeError, get_recipe
from .run import fit, started_by_torchrun

IDENTITY = ("name", "model")  # a recipe's identity: chosen by --recipe / --model, not overridden


def get_args_parser(recipe_cls: type = Recipe) -> argparse.ArgumentParser:
    """Every flag: --model, --recipe, one per Recipe field (its default: "the recipe's own
    value") and one per RunOptions field (fastcifar.cli.add_flags)."""
    recipes = "\n".join(f"  {r.name:24s} {r.model:15s} {r.description}" for r in RECIPES.values())
    parser = argparse.ArgumentParser(
        prog="python -m fastcifar.train", description=__doc__.split("\n\n")[0],
        usage="%(prog)s (--model NAME | --recipe NAME | --resume DIR) [flags; see --help]",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"models: {', '.join(list_models())}\n\nrecipes:\n{recipes}")
    what = parser.add_argument_group("what to train (every recipe field can be overridden)")
    what.add_argument("--model", choices=list_models(), help="train this model's default recipe")
    what.add_argument("--recipe", choices=list(RECIPES), help="train this recipe")
    add_flags(what, recipe_cls, skip=IDENTITY, show_default=True)
    add_flags(parser, RunOptions)
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
        return base.replace(**given(args, recipe_cls, skip=IDENTITY))
    except RecipeError as err:  # "--epochs must be at least 1, not 0"
        parser.error(usage_message(err))


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    watch_parent()
    options = given(args, RunOptions)  # only what is named: RunOptions (or the run) has the rest
    if args.resume:  # fastcifar.resume refuses what a resumed run cannot take
        recipe = args.recipe or args.model
        overrides = given(args, Recipe, skip=IDENTITY)
    else:
        recipe, overrides = resolve_recipe(args, parser), {}
    if options.get("device", "auto") == "auto" and not torch.cuda.is_available() \
            and not args.quiet and not started_by_torchrun():
        print("note: no CUDA device found, training on the CPU (slow for the big models)")
    try:
        result = fit(recipe, **overrides, **options)
    except ConfigError as err:
        parser.error(usage_message(err))
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
