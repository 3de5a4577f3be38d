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
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from . import __version__
from .augment import get_preset, make_loader
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .data import CLASSES, DataError, load_cifar10
from .data.__main__ import add_data_args
from .ema import ModelEMA
from .engine import TTA_MODES, NonFiniteLoss, evaluate, synchronize, train_epoch, tta_logits
from .env import environment
from .figures import plot_confusion, plot_curves, plot_per_class
from .metrics import per_class_accuracy, stratified_split, threshold_table
from .models import BN_RELU_CHOICES, create_model, list_models, parse_model_options
from .recipes import DEFAULT_RECIPE, RECIPES, Recipe, get_recipe

CHECKPOINT_FORMAT = 1
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")
FIT_SAMPLE = 5000  # training images a data-initialised layer is fitted to
# recipe fields that can be overridden from the command line, with their flags' types
OVERRIDES = {"epochs": int, "batch_size": int, "lr": float, "momentum": float,
             "weight_decay": float, "label_smoothing": float, "scheduler": str, "augment": str,
             "ema_decay": float, "tta": str, "model_options": str}


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
    run.add_argument("--sync-bn", action="store_true",
                     help="under torchrun: BatchNorm statistics over the global batch (default: "
                          "each rank's own)")
    run.add_argument("--loader", choices=["torch", "dali"], default="torch",
                     help="augmentation backend")
    speed = parser.add_argument_group("speed switches (auto: on with CUDA, off on the CPU)")
    speed.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default="auto",
                       help="autocast dtype; fp16 adds a GradScaler (auto: bf16 on GPUs with "
                            "native bf16, else fp16)")
    speed.add_argument("--channels-last", choices=["auto", "on", "off"], default="auto",
                       help="model and batches in channels_last memory format")
    speed.add_argument("--compile", choices=["auto", "off", *COMPILE_MODES], default="auto",
                       help="torch.compile mode (auto: 'default' on CUDA); compile time is "
                            "measured and reported apart from training time")
    speed.add_argument("--bn-relu", choices=BN_RELU_CHOICES, default="auto",
                       help="BatchNorm+ReLU implementation (auto: the Triton kernel on GPUs of "
                            "compute capability 8.0 and later)")
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
    if recipe.scheduler not in ("none", "plateau", "onecycle"):
        parser.error("--scheduler must be 'none', 'plateau' or 'onecycle', "
                     f"not {recipe.scheduler!r}")
    if recipe.tta not in TTA_MODES:
        parser.error(f"--tta must be one of {', '.join(TTA_MODES)}, not {recipe.tta!r}")
    if not 0.0 <= recipe.ema_decay < 1.0:
        parser.error(f"--ema-decay must be in [0, 1), not {recipe.ema_decay}")
    try:
        get_preset(recipe.augment)
    except ValueError as err:
        parser.error(f"--augment: {err}")
    for name in ("epochs", "batch_size"):
        if getattr(recipe, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not recipe.lr > 0:
        parser.error("--lr must be positive")
    try:  # built once on the meta device: a bad option fails here, before any data loads
        with torch.device("meta"):
            create_model(recipe.model, **parse_model_options(recipe.model_options))
    except ValueError as err:
        parser.error(f"--model-options: {err}")
    return recipe


def auto_amp(device: torch.device) -> str:
    """bf16 on GPUs with native bf16 (compute capability >= 8.0: Ampere, Hopper), fp16 with the
    GradScaler on older ones (T4, V100, where bf16 is emulated and slow), off on the CPU."""
    if device.type != "cuda":
        return "off"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch, whose answer never counted emulation
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp16"


def resolve_switches(switches: dict, device: torch.device) -> dict:
    """The speed switches with "auto" decided for ``device`` (on with CUDA, off on the CPU)."""
    cuda = device.type == "cuda"
    resolved = {
        "amp": switches["amp"] if switches["amp"] != "auto" else auto_amp(device),
        "channels_last": {"on": True, "off": False, "auto": cuda}[switches["channels_last"]],
        "compile": switches["compile"] if switches["compile"] != "auto" else (
            "default" if cuda else "off"),
        "bn_relu": switches["bn_relu"],
    }
    return resolved


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
                  "loader": args.loader,
                  "switches": {"amp": args.amp, "channels_last": args.channels_last,
                               "compile": args.compile, "bn_relu": args.bn_relu},
                  "train_subset": args.train_subset, "test_subset": args.test_subset}
        stamp = time.strftime("%Y%m%d-%H%M%S")
        out = Path(args.out or f"runs/{recipe.name}-{stamp}")
        if (out / "last.pt").exists():
            parser.error(f"{out} already holds a run; --resume {out} to continue it, or pick "
                         "another --out")
    world = None
    if "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ:  # started by torchrun
        from .distributed import init_world  # a plain run never loads it

        world = init_world(args.device, recipe.batch_size, parser, args.sync_bn)
        args.quiet = args.quiet or not world.is_main  # only rank 0 prints
    device = world.device if world else pick_device(args.device, args.quiet)
    try:
        if world:  # rank 0 downloads and caches the data first, so no two ranks race on files
            world.rank0_first(load_cifar10, args.data_dir, download=not args.no_download,
                              progress=not args.quiet)
        return run(recipe, config, out, device, args, state, world)
    except (DataError, ImportError) as err:  # ImportError: an optional backend (DALI, Triton)
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        if world:
            world.close()


def _load_resume(run_dir: Path) -> dict:
    try:
        state = load_checkpoint(run_dir / "last.pt")
    except CheckpointError as err:
        raise SystemExit(f"error: cannot resume: {err}") from None
    if state.get("format") != CHECKPOINT_FORMAT:
        raise SystemExit(f"error: {run_dir / 'last.pt'} has checkpoint format "
                         f"{state.get('format')}, this fastcifar reads {CHECKPOINT_FORMAT}")
    return state


def build_data(config: dict, args, device: torch.device, batch_size: int, shard=(0, 1), *,
               channels_last: bool):
    """(train loader, validation loader or None, test loader) for ``config``; with ``shard``
    (rank, world) each yields this rank's part of every global batch; batches are in
    channels_last memory format iff ``channels_last`` (the resolved speed switch)."""
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
    common = dict(backend=config["loader"], device=device, seed=config["seed"], shard=shard,
                  channels_last=channels_last)
    train = make_loader(train_x, train_y, spec, batch_size, train=True, **common)
    eval_bs = max(batch_size, 500)
    evaluate_on = lambda x, y: make_loader(x, y, spec, eval_bs, train=False, **common)
    # for models that initialise from data (the speedrun's whitening): the first training
    # images, normalised and not augmented, the same on every rank; built only when asked for
    sample = lambda: make_loader(train_x[:FIT_SAMPLE], train_y[:FIT_SAMPLE], spec, eval_bs,
                                 train=False, **(common | {"shard": (0, 1)}))
    return (train, (evaluate_on(*val) if val else None), evaluate_on(test_x, test_y)), sample


@dataclass
class Parts:
    """Everything one run trains with; built once by ``build_parts``."""

    recipe: Recipe
    model: nn.Module  # the module itself: its state_dict is what checkpoints hold
    step_model: nn.Module  # the same, torch.compile'd when compile is on
    eval_model: nn.Module  # the EMA copy when the recipe has one, else step_model
    optimizer: torch.optim.Optimizer
    scheduler: object  # ReduceLROnPlateau, stepped per epoch, or None
    lr_schedule: object  # a per-step LambdaLR (one-cycle), or None
    scaler: torch.amp.GradScaler
    ema: ModelEMA | None
    amp_dtype: torch.dtype | None
    loaders: tuple  # (train, validation or None, test)
    world: object = None  # fastcifar.distributed.World under torchrun, else None

    def state(self) -> dict:
        """What last.pt holds besides the run's bookkeeping."""
        stateful = {"scheduler": self.scheduler, "lr_schedule": self.lr_schedule,
                    "scaler": self.scaler, "ema": self.ema}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                **{k: v.state_dict() if v is not None else None for k, v in stateful.items()}}

    def eval_source(self) -> nn.Module:
        """The uncompiled module whose weights are evaluated (the EMA copy, if any)."""
        return self.ema.module if self.ema is not None else self.model

    def load_state(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name in ("scheduler", "lr_schedule", "scaler", "ema"):
            if getattr(self, name) is not None and state.get(name) is not None:
                getattr(self, name).load_state_dict(state[name])


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.SGD:
    """SGD; with ``no_decay_norm_bias``, BatchNorm parameters and biases (every parameter of
    fewer than 2 dimensions) get no weight decay."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones (e.g. whitening)
    groups = [{"params": params}]
    if recipe.no_decay_norm_bias:
        groups = [{"params": [p for p in params if p.ndim > 1]},
                  {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0,
                   "lr": recipe.lr * recipe.norm_bias_lr_scale}]
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum,
                           nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)


def make_schedules(optimizer, recipe: Recipe, steps_per_epoch: int):
    """(per-epoch plateau scheduler or None, per-step one-cycle schedule or None)."""
    if recipe.scheduler == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=recipe.plateau_factor,
            patience=recipe.plateau_patience, min_lr=recipe.plateau_min_lr), None
    if recipe.scheduler == "onecycle":
        total = recipe.epochs * steps_per_epoch
        warm = max(1, round(recipe.warmup_fraction * total))

        def one_cycle(step: int) -> float:  # lr/10 -> lr linearly, then linearly to 0
            if step < warm:
                return 0.1 + 0.9 * step / warm
            return max(0.0, (total - step) / max(1, total - warm))

        return None, torch.optim.lr_scheduler.LambdaLR(optimizer, one_cycle)
    return None, None


def warmup_batches(loaders, eval_too: bool, generator=None) -> list[tuple[torch.Tensor, bool]]:
    """(x, training) pairs covering every input shape the loaders will yield, laid out as
    theirs (device, dtype, memory format): the training batch, and with ``eval_too`` each
    evaluation loader's full and last partial batch."""
    train, *evals = loaders
    shapes = {(size, True): train for size in train.batch_sizes()}  # (size, training): loader
    if eval_too:
        for loader in filter(None, evals):  # validation (or None), test
            shapes |= {(size, False): loader for size in loader.batch_sizes()}
    return [(loader.example_batch(size, generator), training)
            for (size, training), loader in shapes.items()]


def compile_model(model: nn.Module, mode: str, loaders, amp_dtype, device, eval_too: bool,
                  tta: str = "none") -> tuple[nn.Module, float]:
    """(model compiled with ``mode``, seconds spent compiling), or (model, 0.0) when off.

    Compiling happens here, on random batches of every shape and layout the loaders yield
    (``warmup_batches``; evaluated through ``tta``'s views, which have layouts of their own), so
    that its time is measured apart from training and no input recompiles later. Shapes stay
    dynamic=None (torch's default): a partial eval batch turns the batch size dynamic for
    evaluation during this warm-up, not in training. The model's weights and BatchNorm
    statistics are restored afterwards, so the warm-up changes nothing.
    """
    if mode == "off":
        return model, 0.0
    compiled = torch.compile(model, mode=None if mode == "default" else mode)
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator(device).manual_seed(0)  # leaves the global RNG alone
    start = time.perf_counter()
    for x, training in warmup_batches(loaders, eval_too, gen):
        compiled.train(training)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None), \
                torch.set_grad_enabled(training):
            out = compiled(x) if training else tta_logits(compiled, x, tta)
        if training:
            out.float().square().mean().backward()
    synchronize(device)
    seconds = time.perf_counter() - start
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    return compiled, seconds


def build_parts(recipe: Recipe, speed: dict, loaders, device, world=None,
                sample=None) -> tuple["Parts", float]:
    model = create_model(recipe.model, bn_relu=speed["bn_relu"],
                         **parse_model_options(recipe.model_options)).to(device)
    if hasattr(model, "fit_to_data") and sample is not None:  # data-dependent init
        model.fit_to_data(torch.cat([x.float() for x, _ in sample()]))
    if speed["channels_last"]:
        model = model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, recipe)
    scheduler, lr_schedule = make_schedules(optimizer, recipe, len(loaders[0]))
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[speed["amp"]]
    ema = ModelEMA(model, recipe.ema_decay) if recipe.ema_decay else None
    net = world.wrap(model) if world is not None else model  # DDP: gradients averaged
    step_model, compile_seconds = compile_model(net, speed["compile"], loaders, amp_dtype,
                                                device, eval_too=ema is None, tta=recipe.tta)
    parts = Parts(recipe, model, step_model, ema.module if ema is not None else step_model,
                  optimizer, scheduler, lr_schedule,
                  torch.amp.GradScaler(device.type, enabled=speed["amp"] == "fp16"), ema,
                  amp_dtype, loaders, world)
    return parts, compile_seconds


def run(recipe: Recipe, config: dict, out: Path, device: torch.device, args, state,
        world=None) -> int:
    """The run: build everything, then train epoch by epoch, checkpointing each one."""
    say = (lambda *a: None) if args.quiet else print
    torch.manual_seed(config["seed"])
    speed = resolve_switches(config["switches"], device)
    loaders, sample = build_data(config, args, device, recipe.batch_size,
                                 shard=world.shard if world is not None else (0, 1),
                                 channels_last=speed["channels_last"])
    if speed["bn_relu"] == "triton" and device.type != "cuda":
        say("note: the Triton BatchNorm+ReLU kernels need CUDA; on the CPU the fused modules "
            "run their PyTorch reference")
    parts, compile_seconds = build_parts(recipe, speed, loaders, device, world, sample)
    history, best, start_epoch = [], {}, 0
    if state is not None:
        parts.load_state(state)
        torch.set_rng_state(state["rng_torch"])
        if device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])
        history, best, start_epoch = state["history"], state["best"], state["epoch"]
        say(f"resuming {out} after epoch {start_epoch}")
    saved = start_epoch  # the epoch last.pt holds
    # under torchrun only rank 0 writes; the other ranks run the same steps and skip the files
    writes = world is None or world.is_main
    save, write_json, write_jsonl = ((save_checkpoint, _write_json, _write_jsonl) if writes
                                     else (_skip_write,) * 3)
    if writes:
        out.mkdir(parents=True, exist_ok=True)
    n_params = sum(p.numel() for p in parts.model.parameters())
    config = config | {"model_parameters": n_params, "device": str(device), "speed": speed,
                       "compile_seconds": compile_seconds, "fastcifar": __version__,
                       "environment": environment()}
    if world is not None:
        config = config | {"distributed": world.describe()}
    write_json(out / "config.json", config)
    train_loader, val_loader, test_loader = loaders
    select = "val_acc" if val_loader is not None else "test_acc"
    check_every = args.check_every or (50 if device.type == "cuda" else 1)
    switches = ", ".join(f"{k}={v}" for k, v in speed.items())
    say(f"{recipe.name}: {recipe.model} ({n_params:,} parameters) on {device} ({switches}), "
        f"{len(train_loader)} steps of {recipe.batch_size} per epoch -> {out}")
    if compile_seconds:
        say(f"compiled in {compile_seconds:.1f} s (not counted as training time)")

    try:
        for epoch in range(start_epoch, recipe.epochs):
            record = train_and_evaluate(parts, epoch, history, check_every, args.quiet)
            history.append(record)
            if not best or record[select] > best[select]:
                best = dict(record)
                save({"format": CHECKPOINT_FORMAT, "config": config,
                                 "model": parts.eval_source().state_dict(),
                                 "epoch": epoch + 1, "metrics": record}, out / "best.pt")
            save({
                "format": CHECKPOINT_FORMAT, "epoch": epoch + 1, "config": config,
                **parts.state(), "history": history, "best": best,
                "rng_torch": torch.get_rng_state(),
                "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else [],
            }, out / "last.pt")
            saved = epoch + 1
            write_jsonl(out / "metrics.jsonl", history)
            say(epoch_line(record, recipe.epochs))
            if args.stop_after and saved >= args.stop_after and saved < recipe.epochs:
                say(f"stopped after epoch {saved} (--stop-after); resume with --resume {out}")
                return 0
    except KeyboardInterrupt:
        held = f"{out / 'last.pt'} holds epoch {saved}" if saved else "no epoch finished"
        print(f"\ninterrupted; {held} (resume with --resume {out})")
        return 130
    except NonFiniteLoss as err:
        held = f"{out / 'last.pt'} holds epoch {saved}" if saved else "no checkpoint"
        print(f"error: {err}; stopped ({held}). Try a lower --lr.", file=sys.stderr)
        return 3

    evaluate_ = evaluate if world is None else world.evaluate  # sharded, summed over ranks
    final = evaluate_(parts.eval_model, test_loader, tta=recipe.tta, amp_dtype=parts.amp_dtype)
    summary = summarize(recipe, config, history, best, select, final)
    if not writes:
        return 0
    _write_json(out / "summary.json", summary)
    if not args.no_figures:
        title = f"{recipe.name} ({recipe.model}), CIFAR-10"
        plot_curves(history, out / "curves.png", title)
        plot_confusion(final["confusion"], CLASSES, out / "confusion.png")
        plot_per_class(per_class_accuracy(final["confusion"]), CLASSES, out / "per_class.png")
    if not args.quiet:
        print_summary(summary, out)
    return 0


def train_and_evaluate(parts: Parts, epoch: int, history: list, check_every: int,
                       quiet: bool) -> dict:
    """Train one epoch, evaluate, step the plateau scheduler; the epoch's metrics record."""
    recipe = parts.recipe
    train_loader, val_loader, test_loader = parts.loaders
    _set_epoch(train_loader, epoch)
    stats = train_epoch(parts.step_model, train_loader, parts.optimizer, epoch=epoch,
                        label_smoothing=recipe.label_smoothing, check_every=check_every,
                        progress=not quiet, amp_dtype=parts.amp_dtype, scaler=parts.scaler,
                        lr_schedule=parts.lr_schedule, ema=parts.ema, ema_source=parts.model)
    if parts.world is not None:  # each rank trained on its shard: sum over the ranks
        stats = parts.world.reduce_train_stats(stats)
    eval_start = time.perf_counter()
    record = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
              "lr": parts.optimizer.param_groups[0]["lr"], "train_seconds": stats["seconds"],
              "images_per_s": stats["images"] / stats["seconds"]}
    evaluate_on = partial(evaluate if parts.world is None else parts.world.evaluate,  # sharded
                          parts.eval_model, tta=recipe.tta, amp_dtype=parts.amp_dtype)
    results = {"test": evaluate_on(test_loader)}
    if val_loader is not None:
        results["val"] = evaluate_on(val_loader)
    for split, r in results.items():
        record[f"{split}_loss"], record[f"{split}_acc"] = r["loss"], r["acc"]
    record["train_seconds_total"] = (history[-1]["train_seconds_total"] if history else 0.0) \
        + stats["seconds"]
    record["eval_seconds"] = time.perf_counter() - eval_start
    monitored = record["val_loss" if val_loader is not None else "test_loss"]
    if not math.isfinite(monitored):  # the weights are broken even though no step saw it
        raise NonFiniteLoss(epoch, len(train_loader) - 1)
    if parts.scheduler is not None:
        parts.scheduler.step(monitored)
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


def _skip_write(*args) -> None:
    """What ranks other than 0 do instead of writing a file."""


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
