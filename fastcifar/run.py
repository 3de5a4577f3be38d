"""One training run, from Python or the CLI: ``fit(recipe, **overrides)``.

    import fastcifar
    result = fastcifar.fit("row1_cnn", epochs=2, out="runs/try", device="cpu")
    result.summary["final"]["test_acc"], result.history[-1], result.paths["last.pt"]

``fit`` loads the data, builds the TrainState (fastcifar.engine), trains epoch by epoch,
checkpointing each one (best.pt, last.pt) and, on rank 0, writing the run folder through
fastcifar.report. ``python -m fastcifar.train`` is a command line around it.
"""

import dataclasses
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ._version import __version__
from .augment import get_preset
from .autotune import decide
from .checkpoint import (
    best_payload,
    last_payload,
    load_resume,
    restore_rng,
    save_checkpoint,
)  # fmt: skip
from .data import load_cifar10
from .data.splits import make_splits
from .engine import EpochSoFar, Speed, TrainState, make_loaders, resolve_switches, run_epoch
from .env import environment, keep_freed_memory
from .guard import ENDS_EARLY, Plan, RunGuard
from .lifecycle import Stopper
from .models import create_model, parse_model_options
from .options import RunOptions
from .recipes import ConfigError, Recipe, RecipeError, get_recipe
from .report import Report, summarize
from .resume import check_request, resumed
from .runfolder import RunFolder, default_out


@dataclass
class FitResult:
    """What ``fit`` did: ``status`` is "finished", "stopped" (stop_after), "interrupted" (a
    stop signal, ``signum``; last.pt holds the step it landed in), "diverged" (a NaN or
    infinite loss; ``error`` says where) or "disk full" (a write failed for want of space;
    ``error`` names the file and what the run folder still holds)."""

    status: str
    out: Path
    epochs_done: int  # the epoch last.pt holds
    history: list[dict]  # metrics.jsonl, one record per epoch
    config: dict  # config.json
    summary: dict | None = None  # summary.json, when finished
    paths: dict[str, Path] = field(default_factory=dict)  # the run folder's files (rank 0)
    error: str | None = None
    steps_done: int = 0  # the steps of epoch epochs_done + 1 that last.pt holds (mid-epoch)
    signum: int | None = None  # the stop signal of an "interrupted" run

    def held(self) -> str:
        """What last.pt holds, in words."""
        if not (self.epochs_done or self.steps_done):
            return "no checkpoint was written yet"
        steps = f", and {self.steps_done} steps of epoch {self.epochs_done + 1}" \
            if self.steps_done else ""
        return f"{self.out / 'last.pt'} holds epoch {self.epochs_done}{steps}"


def fit(recipe: str | Recipe | None = None, **kwargs) -> FitResult:
    """Train ``recipe`` (a name in fastcifar.recipes.RECIPES, or a Recipe); ``kwargs`` are Recipe
    fields to override (``epochs=2``) and RunOptions (``out=``, ``device=``, ``resume=``...);
    one left at None is not given.

    Raises ConfigError (a bad value, before any data loads), DataError, CheckpointError, and
    lifecycle.Interrupted for a stop signal during start-up (the run folder is then removed)."""
    named = {k: v for k, v in kwargs.items() if v is not None}  # None: not given, as a flag
    recipe_fields = {f.name for f in dataclasses.fields(Recipe)}
    overrides = {k: v for k, v in named.items() if k in recipe_fields}
    options = RunOptions(**{k: v for k, v in named.items() if k not in recipe_fields})
    with Stopper() as stop:
        folder = None
        try:
            if options.resume:
                check_request(recipe, overrides, named)
                folder = _open_folder(Path(options.resume), resume=True)
                state = load_resume(Path(options.resume))
                recipe, config, options = resumed(state, overrides, options, named)
                out = Path(options.resume)
            else:
                state, (recipe, config) = None, _new_run(recipe, overrides, options)
                out = Path(options.out) if options.out else None
                folder = _open_folder(out, resume=False, name=recipe.name)
                out = folder.path if folder else out or Path(f"runs/{recipe.name}")
            return _start(recipe, config, out, options, state, stop)
        finally:
            if folder is not None:
                folder.close()


def _new_run(recipe, overrides: dict, options: RunOptions) -> tuple[Recipe, dict]:
    """The recipe and config.json of a new run, its values checked before any folder is made."""
    if recipe is None:
        raise ConfigError("say what to train: a recipe name or a Recipe")
    recipe = (get_recipe(recipe) if isinstance(recipe, str) else recipe).replace(**overrides)
    config = {"recipe": dataclasses.asdict(recipe), "val_split": options.val_split,
              "seed": options.seed, "loader": options.loader, "switches": options.switches(),
              "train_subset": options.train_subset, "test_subset": options.test_subset,
              "figures": options.figures}
    if options.train_subset and recipe.batch_size > options.train_subset:
        raise _batch_too_large(recipe.batch_size, options.train_subset)
    _check_model(recipe, config["switches"]["bn_relu"], options.sync_bn)
    return recipe, config


def _open_folder(out: Path | None, resume: bool, name: str = "") -> RunFolder | None:
    """The run folder, held by this process (rank 0 of a torchrun world: the others never
    write it); a new run without --out gets a fresh runs/<recipe>-<time>."""
    if started_by_torchrun() and int(os.environ.get("RANK", "0")) != 0:
        return None
    if out is None:
        return RunFolder.open(default_out(name), made=True)
    return RunFolder.open(out, resume=resume)


def _start(recipe: Recipe, config: dict, out: Path, options: RunOptions, state: dict | None,
           stop: Stopper) -> FitResult:
    """The last checks, the torchrun world if any, then the training."""
    world = None
    if options.resume:
        _check_model(recipe, config["switches"]["bn_relu"], options.sync_bn)
    if config["loader"] == "dali" and get_preset(recipe.augment).crop_fill != "zeros":
        raise RecipeError("loader", f"dali pads crops with zeros only; --augment "
                          f"{recipe.augment} needs --loader torch")
    if config["loader"] == "dali":  # asked for by name: missing, it fails before any work
        from .augment.dali import require_dali

        require_dali()
    if started_by_torchrun():
        from .distributed import init_world  # a plain run never loads it

        world = init_world(options.device, recipe.batch_size, options.sync_bn)
    try:
        if world:  # rank 0 downloads and caches the data first, so no two ranks race on files
            world.rank0_first(load_cifar10, options.data_dir, download=options.download,
                              progress=not options.quiet)
        result = _train(recipe, config, out, options, state, world, stop)
    except BaseException:
        if world:  # the other ranks may be inside a collective: leave without waiting for them
            world.close(together=False)
        raise
    if world:
        world.close()
    return result


def started_by_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def _batch_too_large(batch_size: int, images: int) -> ConfigError:
    return RecipeError("batch_size", f"{batch_size} is larger than the {images} training images "
                       "(an epoch would have no full batch); give --batch-size "
                       f"{images} or less, or train on more images")


def _check_model(recipe: Recipe, bn_relu: str, sync_bn: bool) -> None:
    """Build the model on the meta device (no memory, no time): a model that refuses
    ``bn_relu``, or holds a BatchNorm --sync-bn cannot convert, fails before any work."""
    try:
        with torch.device("meta"):
            model = create_model(recipe.model, bn_relu=bn_relu,
                                 **parse_model_options(recipe.model_options))
    except ValueError as err:
        raise ConfigError(f"--bn-relu {bn_relu}: {err}") from None
    if sync_bn:
        from .distributed import check_sync_bn

        check_sync_bn(model)


def _decide_speed(config: dict, recipe: Recipe, device: torch.device, splits, options: RunOptions,
                  world) -> tuple[Speed, dict | None, str]:
    """(the switches this run trains with, their evidence for config.json, the opening line).

    A resumed run keeps the decisions recorded in its folder, so that it stays bitwise exact
    whatever the cache or the machine's timings say now. Under torchrun rank 0 decides and the
    other ranks take its decision: every rank must train alike."""
    if "speed" in config:
        speed = Speed(**{"loader": config["loader"]} | config["speed"])
        return speed, config.get("auto"), "auto: the decisions recorded in the run folder"
    switches = config["switches"] | {"loader": config["loader"]}
    choice = None
    if world is None or world.is_main:
        choice = decide(switches, recipe, device, train_images=splits.train[0],
                        train_labels=splits.train[1],
                        cache="use" if options.auto_cache else "off")
    if world is not None:
        choice = world.agree(choice)
    return choice.speed, choice.record, choice.line


def _cpu_malloc(config: dict, device: torch.device) -> str:
    """cpu_malloc, set before the data loads: glibc's setting holds for what is allocated
    after it (a resumed run keeps what it recorded)."""
    malloc = config["speed"]["cpu_malloc"] if "speed" in config else \
        resolve_switches(config["switches"], device).cpu_malloc
    return "keep" if malloc == "keep" and keep_freed_memory() else "default"  # glibc only


def _train(recipe: Recipe, config: dict, out: Path, options: RunOptions, state: dict | None,
           world, stopper: Stopper) -> FitResult:
    """Build everything, then the spine: each epoch trained, checkpointed and reported."""
    run = _prepare(recipe, config, out, options, state, world)
    plan = Plan(out, run.device, recipe.epochs, len(run.train.loaders[0]), options.stop_after,
                options.stop_after_steps, options.checkpoint_minutes)
    guard = RunGuard(stopper, run.save_last, plan, run.say, run.start,
                     run.resume_from.step if run.resume_from else 0)
    with stopper.deferred(world is None):  # a torchrun world's ranks must stop at one step
        try:
            run.report_config()
            for epoch in range(run.start, recipe.epochs):
                record = run_epoch(run.train, epoch, run.history, hook=guard.after_step,
                                   resume_from=run.resume_from if epoch == run.start else None)
                run.keep(record)  # the metrics, and best.pt when it is the best so far
                guard.checkpoint(epoch + 1)  # last.pt
                run.report_epoch()
                guard.after_epoch(epoch + 1)  # a stop signal, --stop-after(-steps)
        except ENDS_EARLY as err:
            return run.result(guard, *guard.outcome(err))
    try:  # a stop signal now interrupts at once: last.pt is complete
        summary = run.finish()
    except (KeyboardInterrupt, OSError) as err:
        return run.result(guard, *guard.outcome(err))
    return run.result(guard, "finished", {"summary": summary})


@dataclass
class _Run:
    """What the loop trains and writes: the TrainState, the history and best epoch so far, and
    the run folder (rank 0 only: ``report`` is None on the other ranks)."""

    recipe: Recipe
    config: dict  # config.json
    out: Path
    device: torch.device
    train: TrainState
    report: Report | None
    figures: bool
    history: list = field(default_factory=list)
    best: dict = field(default_factory=dict)
    start: int = 0  # epochs done before this process
    resume_from: EpochSoFar | None = None  # the part of epoch start + 1 done before

    def restore(self, state: dict) -> None:
        """Where a last.pt left off: the TrainState, the RNGs, the history, the part-done epoch."""
        self.train.load_state_dict(state)
        restore_rng(state, self.device)
        self.history, self.best, self.start = state["history"], state["best"], state["epoch"]
        self.resume_from = EpochSoFar.from_checkpoint(state)
        step = self.resume_from.step if self.resume_from else 0
        self.say(f"resuming {self.out} after epoch {self.start}"
                 + (f" and {step} steps of epoch {self.start + 1}" if step else ""))

    def say(self, *parts) -> None:
        if self.report:
            self.report.say(*parts)

    @property
    def select(self) -> str:
        """The metric that picks the best epoch: validation accuracy when held out."""
        return "val_acc" if self.train.loaders[1] is not None else "test_acc"

    def report_config(self) -> None:
        if self.report:
            self.report.config(self.config)

    def keep(self, record: dict) -> None:
        self.history.append(record)
        if not self.best or record[self.select] > self.best[self.select]:
            self.best = dict(record)
            if self.report:
                save_checkpoint(best_payload(self.config, self.train.eval_source().state_dict(),
                                             record["epoch"], record), self.out / "best.pt")

    def save_last(self, epoch: int, so_far: EpochSoFar | None) -> None:
        if self.report:
            mid_epoch = {"step": so_far.step, "partial": so_far.sums()} if so_far else {}
            save_checkpoint(last_payload(self.config, self.train.state_dict(), epoch,
                                         self.history, self.best, self.device) | mid_epoch,
                            self.out / "last.pt")

    def report_epoch(self) -> None:
        if self.report:
            self.report.epoch(self.history, self.recipe.epochs)

    def finish(self) -> dict:
        """The final evaluation, summary.json and the figures; the summary."""
        final = self.train.evaluate(self.train.loaders[2])
        summary = summarize(self.recipe, self.config, self.history, self.best, self.select, final)
        if self.report:
            self.report.finish(summary, final, self.history, self.figures)
        return summary

    def result(self, guard: RunGuard, status: str, more: dict | None = None) -> FitResult:
        """The FitResult of ``status``; ``more``: its other fields (guard.outcome's)."""
        return FitResult(status, self.out, guard.saved_epoch, self.history, self.config,
                         paths=self.report.paths() if self.report else {},
                         steps_done=guard.saved_step, **(more or {}))


def _prepare(recipe: Recipe, config: dict, out: Path, options: RunOptions, state: dict | None,
             world) -> _Run:
    """The data, the speed decisions, the loaders and the TrainState (restored from ``state``
    when resuming), and config.json completed; the run's opening lines said."""
    main = world is None or world.is_main  # only rank 0 prints and writes
    quiet = options.quiet or not main
    device = world.device if world else options.torch_device()
    torch.manual_seed(config["seed"])
    malloc = _cpu_malloc(config, device)
    data = load_cifar10(options.data_dir, download=options.download, progress=not quiet)
    splits = make_splits(data, config["val_split"], config["seed"], config["train_subset"],
                         config["test_subset"])
    if recipe.batch_size > len(splits.train[1]):  # every epoch would be 0 steps
        raise _batch_too_large(recipe.batch_size, len(splits.train[1]))
    speed, auto, auto_line = _decide_speed(config, recipe, device, splits, options, world)
    speed = speed.replace(cpu_malloc=malloc)
    if speed.amp == "fp16" and device.type == "cpu" and main:
        print("warning: --amp fp16 is slow on the CPU (no native fp16 math: ~17x slower than "
              "fp32 measured on a 2-core Xeon); use --amp bf16 or off there", file=sys.stderr)
    report = Report(out, quiet) if main else None  # the run folder is made from here on
    say = report.say if report else (lambda *parts: None)
    if auto_line:
        say(auto_line)
    loaders, sample = make_loaders(splits, recipe, device, seed=config["seed"],
                                   backend=speed.loader, channels_last=speed.channels_last,
                                   shard=world.shard if world else (0, 1))
    if speed.bn_relu == "triton" and device.type != "cuda":
        say("note: the Triton BatchNorm+ReLU kernels need CUDA; on the CPU the fused modules "
            "run their PyTorch reference")
    train = TrainState.build(recipe, speed, loaders, device, world, sample, progress=not quiet,
                             check_every=options.check_every or (50 if device.type == "cuda"
                                                                 else 1))
    if train.compile_failed:
        speed = speed.replace(compile="off")
        auto = (auto or {}) | {"compile_failed": train.compile_failed}
        print(f"warning: torch.compile failed during its warm-up ({train.compile_failed}); "
              "training uncompiled (--compile off)", file=sys.stderr)
    run = _Run(recipe, config, out, device, train, report, options.figures)
    if state is not None:
        run.restore(state)
    n_params = sum(p.numel() for p in train.model.parameters())
    run.config = config | {"data_dir": str(Path(data.folder).resolve()),  # --resume reads it
                           "model_parameters": n_params, "device": str(device),
                           "speed": speed.as_dict(),
                           "auto": auto, "compile_seconds": train.compile_seconds,
                           "init_seconds": train.init_seconds, "fastcifar": __version__,
                           "environment": environment()}
    if world is not None:
        run.config |= {"distributed": world.describe()}
    switches = ", ".join(f"{k}={v}" for k, v in speed.as_dict().items())
    say(f"{recipe.name}: {recipe.model} ({n_params:,} parameters) on {device} ({switches}), "
        f"{len(loaders[0])} steps of {recipe.batch_size} per epoch -> {out}")
    if train.compile_seconds:
        say(f"compiled in {train.compile_seconds:.1f} s (not counted as training time)")
    return run
