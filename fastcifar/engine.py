"""How a model is trained, top to bottom: no argparse, no files, no printing (a tqdm bar aside).

    speed = resolve_switches({"amp": "auto", ...}, device)      # a Speed: every switch decided
    loaders, sample = make_loaders(splits, recipe, device, ...)  # (train, val or None, test)
    state = TrainState.build(recipe, speed, loaders, device, sample=sample)
    for epoch in range(recipe.epochs):
        history.append(run_epoch(state, epoch, history))  # train, evaluate, step the plateau

fastcifar.run.fit does exactly this, with checkpoints and the run folder around it.

The path of one batch: the loader (fastcifar.augment) yields (x, y) already augmented on the
device -> ``train_epoch`` -> ``train_step``: forward under autocast, cross entropy, backward
through the GradScaler, optimizer step, the per-step one-cycle schedule, the EMA -> after the
epoch ``run_epoch``
evaluates and steps the per-epoch plateau schedule. Loss and accuracy are summed on the device
and read back only every ``check_every`` steps and at the end of the epoch, so a CUDA step never
waits for the host; a non-finite loss stops the run at the next read-back (NonFiniteLoss).
"""

import dataclasses
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from .augment import get_preset, make_loader
from .ema import ModelEMA
from .env import cpu_native_bf16
from .metrics import confusion_matrix
from .models import create_model, parse_model_options
from .muon import Muon
from .recipes import TTA_MODES, Recipe

AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}
FIT_SAMPLE = 5000  # training images a data-initialised layer is fitted to

__all__ = ["TTA_MODES", "DeviceTimer", "EpochSoFar", "NonFiniteLoss", "Speed", "TrainState",
           "compile_model", "evaluate", "make_loaders", "make_optimizer", "make_schedules",
           "resolve_switches", "run_epoch", "synchronize", "train_epoch", "train_step",
           "tta_logits"]


# ---- the device and its speed switches -------------------------------------------------------

class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; ``epoch`` and ``step`` say where (both from 0)."""

    def __init__(self, epoch: int, step: int):
        super().__init__(f"the loss became NaN or infinite at epoch {epoch + 1}, step {step + 1}")
        self.epoch, self.step = epoch, step


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceTimer:
    """Seconds between ``start()`` and ``stop()`` on the device's own clock: CUDA events on a
    GPU (as airbench times its training), a wall clock elsewhere. Neither mark makes the host
    wait; ``stop()`` waits for the work before it to finish."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def start(self) -> None:
        if self.cuda:
            self.begin = torch.cuda.Event(enable_timing=True)
            self.begin.record()
        else:
            self.begin = time.perf_counter()

    def stop(self) -> float:
        if not self.cuda:
            return time.perf_counter() - self.begin
        end = torch.cuda.Event(enable_timing=True)
        end.record()
        end.synchronize()
        return self.begin.elapsed_time(end) / 1e3


def auto_amp(device: torch.device) -> str:
    """bf16 on GPUs with native bf16 (compute capability >= 8.0: Ampere, Hopper), fp16 with the
    GradScaler on older ones (T4, V100, where bf16 is emulated and slow); on the CPU bf16 where
    it is native (AMX, AVX512-BF16: fastcifar.env.cpu_native_bf16), else off (fp16 there is
    emulated and ~17x slower)."""
    if device.type != "cuda":
        return "bf16" if device.type == "cpu" and cpu_native_bf16() else "off"
    try:
        native = torch.cuda.is_bf16_supported(including_emulation=False)
    except TypeError:  # an older torch, whose answer never counted emulation
        native = torch.cuda.is_bf16_supported()
    return "bf16" if native else "fp16"


@dataclass(frozen=True)
class Speed:
    """The speed switches a run trains with, every "auto" decided (config.json's "speed")."""

    amp: str = "off"  # autocast dtype: bf16, fp16 (with a GradScaler) or off
    channels_last: bool = False  # model and batches in channels_last memory format
    compile: str = "off"  # off, or a torch.compile mode (COMPILE_MODES)
    bn_relu: str = "eager"  # eager, or triton: the fused kernels (fastcifar.kernels)
    cpu_malloc: str = "default"  # keep: glibc keeps freed memory (env.keep_freed_memory)
    loader: str = "torch"  # the augmentation backend: torch or dali

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.amp]

    def replace(self, **changes) -> "Speed":
        return dataclasses.replace(self, **changes)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_switches(switches: dict, device: torch.device) -> Speed:
    """The rule's pick for ``switches`` (RunOptions' speed switches, and ``loader``) on
    ``device``, every "auto" decided without measuring: with CUDA bf16 (or fp16, auto_amp),
    channels_last, compile and the Triton kernels; on the CPU bf16 and channels_last where bf16
    is native (oneDNN's fast bf16 convolutions want NHWC), else off, no compile (it gave no
    speed-up there: 262 vs 266 ms a bf16 step) and freed memory kept in the heap (cpu_malloc);
    the torch loader. fastcifar.autotune measures where there is a choice."""
    from .models.norms import auto_bn_relu

    cuda = device.type == "cuda"
    fast_cpu = device.type == "cpu" and cpu_native_bf16()
    asked = {"cpu_malloc": "auto", "loader": "auto"} | switches  # older runs' configs lack them
    auto = {"amp": auto_amp(device), "channels_last": cuda or fast_cpu,
            "compile": "default" if cuda else "off",
            "bn_relu": auto_bn_relu()[0] if cuda else "eager",
            "cpu_malloc": "keep" if device.type == "cpu" else "default", "loader": "torch"}
    picked = {name: auto[name] if asked[name] == "auto" else asked[name] for name in auto}
    if asked["channels_last"] != "auto":
        picked["channels_last"] = asked["channels_last"] == "on"
    return Speed(**picked)


# ---- what a run trains with ------------------------------------------------------------------

def make_loaders(splits, recipe: Recipe, device: torch.device, *, seed: int, backend: str,
                 channels_last: bool, shard=(0, 1)):
    """((train, validation or None, test) loaders, fit sample) for ``splits``
    (fastcifar.data.splits.Splits). With ``shard`` (rank, world) each loader yields this rank's
    part of every global batch; batches are channels_last iff ``channels_last``. The fit sample
    is a function giving the loader of what a data-initialised model (the speedrun's whitening)
    is fitted to: the first training images, normalised, not augmented, the same on every rank."""
    spec = get_preset(recipe.augment)
    common = dict(backend=backend, device=device, seed=seed, shard=shard,
                  channels_last=channels_last)
    eval_bs = max(recipe.batch_size, 500)
    train = make_loader(*splits.train, spec, recipe.batch_size, train=True, **common)
    evaluate_on = lambda x, y: make_loader(x, y, spec, eval_bs, train=False, **common)
    train_x, train_y = splits.train
    sample = lambda: make_loader(train_x[:FIT_SAMPLE], train_y[:FIT_SAMPLE], spec, eval_bs,
                                 train=False, **(common | {"shard": (0, 1)}))
    val = evaluate_on(*splits.val) if splits.val is not None else None
    return (train, val, evaluate_on(*splits.test)), sample


def make_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """SGD; with ``no_decay_norm_bias``, BatchNorm parameters and biases (every parameter of
    fewer than 2 dimensions, except those the model names in ``trained_like_weights``) get no
    weight decay and lr x ``norm_bias_lr_scale``. With ``muon_lr``, fastcifar.muon.Muon: the
    conv filters (4-D) in a Muon group at muon_lr, the other weights and the shifts as above,
    except that every parameter of < 2 dims is a shift (airbench94_muon trains the whitening
    bias at the BN shifts' lr)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]  # not frozen ones
    groups = [{"params": [p for _, p in named]}]
    if recipe.no_decay_norm_bias:
        like_weights = () if recipe.muon_lr else set(getattr(model, "trained_like_weights", ()))
        norm_bias = [p.ndim <= 1 and n not in like_weights for n, p in named]
        filters = [bool(recipe.muon_lr) and p.ndim == 4 for _, p in named]
        groups = [{"params": [p for (_, p), nb, f in zip(named, norm_bias, filters)
                              if not nb and not f]},
                  {"params": [p for (_, p), nb in zip(named, norm_bias) if nb],
                   # coupled decay scales with the lr: divided by the lr scale, it takes as
                   # much a step off them as off the weights
                   "weight_decay": recipe.weight_decay / recipe.norm_bias_lr_scale
                   if recipe.norm_bias_step_decay else 0.0,
                   "lr": recipe.lr * recipe.norm_bias_lr_scale}]
        if recipe.muon_lr:
            groups.append({"params": [p for (_, p), f in zip(named, filters) if f], "muon": True,
                           "lr": recipe.muon_lr, "momentum": recipe.muon_momentum,
                           "nesterov": recipe.muon_momentum > 0, "weight_decay": 0.0})
            return Muon(groups, lr=recipe.lr, momentum=recipe.momentum,
                        nesterov=recipe.nesterov, weight_decay=recipe.weight_decay)
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

        start, end = recipe.warmup_start, recipe.final_lr_fraction

        def one_cycle(step: int) -> float:  # start -> 1 linearly, then linearly to end
            if step < warm:
                return start + (1.0 - start) * step / warm
            return end + (1.0 - end) * max(0.0, (total - step) / max(1, total - warm))

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
                  tta: str = "none") -> tuple[nn.Module, float, str | None]:
    """(model compiled with ``mode``, seconds spent compiling, None), or (model, 0.0, None) when
    off. A compile that fails during the warm-up gives (model, 0.0, why): the run goes on
    uncompiled, which is slower but computes the same.

    Compiling happens here, on random batches of every shape and layout the loaders yield
    (``warmup_batches``; evaluated through ``tta``'s views, which have layouts of their own), so
    that its time is measured apart from training and no input recompiles later. Shapes stay
    dynamic=None (torch's default): a partial eval batch turns the batch size dynamic for
    evaluation during this warm-up, not in training. The model's weights and BatchNorm
    statistics are restored afterwards, so the warm-up changes nothing.
    """
    if mode == "off":
        return model, 0.0, None
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    gen = torch.Generator(device).manual_seed(0)  # leaves the global RNG alone
    start = time.perf_counter()
    failed = None
    try:
        compiled = torch.compile(model, mode=None if mode == "default" else mode)
        for x, training in warmup_batches(loaders, eval_too, gen):
            compiled.train(training)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None), \
                    torch.set_grad_enabled(training):
                out = compiled(x) if training else tta_logits(compiled, x, tta)
            if training:
                out.float().square().mean().backward()
        synchronize(device)
    except Exception as err:  # noqa: BLE001 - any compiler failure: the eager model still works
        lines = str(err).strip().splitlines()
        failed = f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]
    seconds = time.perf_counter() - start
    model.load_state_dict(saved)
    model.zero_grad(set_to_none=True)
    return (model, 0.0, failed) if failed else (compiled, seconds, None)


@dataclass
class TrainState:
    """Everything one run trains with, built from a Recipe by ``TrainState.build``."""

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
    compile_seconds: float = 0.0  # spent compiling before training (not training time)
    init_seconds: float = 0.0  # the data-dependent init (speedrun's whitening fit), timed apart
    compile_failed: str | None = None  # why torch.compile failed (the run trains uncompiled)
    check_every: int = 1  # read the loss back every K steps (each read-back waits for the GPU)
    progress: bool = False  # a progress bar per epoch

    def state_dict(self) -> dict:
        """What last.pt holds besides the run's bookkeeping."""
        stateful = {"scheduler": self.scheduler, "lr_schedule": self.lr_schedule,
                    "scaler": self.scaler, "ema": self.ema}
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                **{k: v.state_dict() if v is not None else None for k, v in stateful.items()}}

    def eval_source(self) -> nn.Module:
        """The uncompiled module whose weights are evaluated (the EMA copy, if any, unless
        lookahead pulls the model itself back to it)."""
        return self.ema.module if self.ema is not None and not self.ema.lookahead else self.model

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for name in ("scheduler", "lr_schedule", "scaler", "ema"):
            if getattr(self, name) is not None and state.get(name) is not None:
                getattr(self, name).load_state_dict(state[name])

    @classmethod
    def build(cls, recipe: Recipe, speed: Speed, loaders, device: torch.device, world=None,
              sample=None, **how) -> "TrainState":
        """The model (fitted to ``sample()`` if it initialises from data), its optimizer,
        schedules, GradScaler and EMA, DDP-wrapped under ``world`` and compiled per ``speed``
        ``how``: check_every, progress."""
        model = create_model(recipe.model, bn_relu=speed.bn_relu,
                             **parse_model_options(recipe.model_options)).to(device)
        init_seconds = 0.0
        if hasattr(model, "fit_to_data") and sample is not None:  # data-dependent init
            timer = DeviceTimer(device)
            timer.start()
            model.fit_to_data(torch.cat([x.float() for x, _ in sample()]))
            init_seconds = timer.stop()  # airbench counts its whitening fit as training time
        if speed.channels_last:
            model = model.to(memory_format=torch.channels_last)
        optimizer = make_optimizer(model, recipe)
        scheduler, lr_schedule = make_schedules(optimizer, recipe, len(loaders[0]))
        amp_dtype = speed.amp_dtype
        ema = ModelEMA(model, recipe.ema_decay, lookahead=recipe.lookahead,
                       total_steps=recipe.epochs * len(loaders[0])) if recipe.ema_decay else None
        separate_eval = ema is not None and not recipe.lookahead  # lookahead: the live model
        net = world.wrap(model) if world is not None else model  # DDP: gradients averaged
        step_model, seconds, failed = compile_model(net, speed.compile, loaders, amp_dtype,
                                                    device, eval_too=not separate_eval,
                                                    tta=recipe.tta)
        scaler = torch.amp.GradScaler(device.type, enabled=speed.amp == "fp16")
        return cls(recipe, model, step_model, ema.module if separate_eval else step_model,
                   optimizer, scheduler, lr_schedule, scaler, ema, amp_dtype, loaders, world,
                   seconds, init_seconds, failed, **how)

    def evaluate(self, loader) -> dict:
        """``evaluate`` of the model under evaluation, summed over the ranks under torchrun."""
        evaluate_ = evaluate if self.world is None else self.world.evaluate  # sharded
        return evaluate_(self.eval_model, loader, tta=self.recipe.tta, amp_dtype=self.amp_dtype)


# ---- one epoch --------------------------------------------------------------------------------

@dataclass
class EpochSoFar:
    """The first ``step`` steps of an epoch: what a mid-epoch last.pt holds, and where a resumed
    epoch starts from. The sums stay on the device."""

    step: int
    loss_sum: torch.Tensor
    correct: torch.Tensor
    images: int
    seconds: float

    def sums(self) -> dict:
        """The running sums, as last.pt stores them (beside ``"step"``)."""
        return {"loss_sum": self.loss_sum, "correct": self.correct, "images": self.images,
                "seconds": self.seconds}

    @classmethod
    def from_checkpoint(cls, state: dict) -> "EpochSoFar | None":
        """The part-done epoch a last.pt holds, or None at an epoch's end."""
        return cls(state["step"], **state["partial"]) if state.get("step") else None


def train_epoch(state: TrainState, epoch: int, hook=None, resume_from: EpochSoFar | None = None
                ) -> dict:
    """One pass over the training loader, ``train_step`` on each batch, the loss and accuracy
    summed on the device. Returns loss, accuracy (%), images and training seconds.

    ``hook(epoch, steps_done, so_far)`` is called after every step; ``so_far()`` checks the loss
    is finite and gives the EpochSoFar a mid-epoch checkpoint holds. ``resume_from`` is one:
    the batches before it are drawn and skipped (an epoch's order and augmentation are a pure
    function of the seed and the epoch), so the resumed epoch ends as an uninterrupted one.
    """
    loader = state.loaders[0]
    device = next(state.model.parameters()).device
    state.step_model.train()
    done = resume_from or EpochSoFar(0, torch.zeros((), device=device),
                                     torch.zeros((), dtype=torch.long, device=device), 0, 0.0)
    loss_sum, correct = done.loss_sum.to(device, copy=True), done.correct.to(device, copy=True)
    images = done.images
    first_bad = torch.full((), -1, dtype=torch.long, device=device)  # first non-finite step
    bar = tqdm(total=len(loader), desc=f"epoch {epoch + 1}", unit="step", leave=False,
               disable=not state.progress)
    timer = DeviceTimer(device)
    timer.start()
    start = time.perf_counter()  # the progress bar's rate only

    def so_far(step: int) -> EpochSoFar:
        _check_finite(first_bad, epoch)
        return EpochSoFar(step, loss_sum.clone(), correct.clone(), images,
                          done.seconds + timer.stop())

    for step, (x, y) in enumerate(loader):
        if step < done.step:  # trained before the checkpoint this epoch resumes from
            bar.update(1)
            continue
        loss, logits = train_step(state, x, y, step, epoch * len(loader) + step)
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
        first_bad = torch.where((first_bad < 0) & ~torch.isfinite(loss.detach()), step, first_bad)
        images += len(y)
        if (step + 1) % state.check_every == 0:  # the only host-device syncs inside the epoch
            _check_finite(first_bad, epoch)
            if state.progress:  # a second read-back, for the bar alone
                elapsed = time.perf_counter() - start
                bar.set_postfix(loss=f"{loss_sum.item() / images:.3f}",
                                img_s=f"{images / elapsed:.0f}")
        bar.update(1)
        if hook is not None:
            hook(epoch, step + 1, lambda s=step + 1: so_far(s))
    seconds = done.seconds + timer.stop()
    _check_finite(first_bad, epoch)
    bar.close()
    images_or_1 = max(images, 1)
    return {"loss": loss_sum.item() / images_or_1, "acc": 100.0 * correct.item() / images_or_1,
            "images": images, "seconds": seconds}


def train_step(state: TrainState, x: torch.Tensor, y: torch.Tensor, step: int,
               global_step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One step on the batch (x, y): forward under autocast, cross entropy, backward through
    the GradScaler, optimizer step, the per-step schedule, the EMA. (loss, logits), on the
    device: nothing is read back."""
    with torch.autocast(x.device.type, dtype=state.amp_dtype, enabled=state.amp_dtype is not None):
        logits = state.step_model(x)
    loss = F.cross_entropy(logits.float(), y, label_smoothing=state.recipe.label_smoothing)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(loss).backward()  # a disabled scaler is the identity
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.lr_schedule is not None:
        state.lr_schedule.step()
    if state.ema is not None:
        state.ema.update(state.model, step, global_step=global_step)
    return loss, logits


def _check_finite(first_bad: torch.Tensor, epoch: int) -> None:
    step = int(first_bad.item())
    if step >= 0:
        raise NonFiniteLoss(epoch, step)


def run_epoch(state: TrainState, epoch: int, history: list, hook=None,
              resume_from: EpochSoFar | None = None) -> dict:
    """Train one epoch (``train_epoch``, with its ``hook`` and ``resume_from``), evaluate, step
    the plateau schedule; the epoch's metrics record.

    Raises NonFiniteLoss if a step's loss, or the monitored evaluation loss, is not finite."""
    train_loader, val_loader, test_loader = state.loaders
    train_loader.set_epoch(epoch)  # the epoch's order and augmentation depend on it alone
    if hasattr(state.model, "start_epoch"):  # e.g. speedrun: the whitening bias's last epoch
        state.model.start_epoch(epoch)
    stats = train_epoch(state, epoch, hook, resume_from)
    if state.world is not None:  # each rank trained on its shard: sum over the ranks
        stats = state.world.reduce_train_stats(stats)
    eval_start = time.perf_counter()
    record = {"epoch": epoch + 1, "train_loss": stats["loss"], "train_acc": stats["acc"],
              "lr": state.optimizer.param_groups[0]["lr"], "train_seconds": stats["seconds"],
              "images_per_s": stats["images"] / stats["seconds"]}
    results = {"test": state.evaluate(test_loader)}
    if val_loader is not None:
        results["val"] = state.evaluate(val_loader)
    for split, r in results.items():
        record[f"{split}_loss"], record[f"{split}_acc"] = r["loss"], r["acc"]
    record["train_seconds_total"] = (history[-1]["train_seconds_total"] if history else 0.0) \
        + stats["seconds"]
    record["eval_seconds"] = time.perf_counter() - eval_start
    monitored = record["val_loss" if val_loader is not None else "test_loss"]
    if not math.isfinite(monitored):  # the weights are broken even though no step saw it
        raise NonFiniteLoss(epoch, len(train_loader) - 1)
    if state.scheduler is not None:
        state.scheduler.step(monitored)
    return record


# ---- evaluation -------------------------------------------------------------------------------

def tta_logits(model: nn.Module, x: torch.Tensor, mode: str) -> torch.Tensor:
    """Logits averaged over test-time views of ``x`` (airbench's weighting for translate):
    "flip" = mean of the image and its mirror; "flip_translate" = 0.5 * that + 0.5 * the same
    for the image shifted by one pixel up-left and down-right (reflect padding)."""
    def view(images):
        # cloned: a CUDA-graph model (--compile reduce-overhead) returns the same output buffer
        # from every call of a graph, so the next view's call would overwrite this one's logits
        return model(images).clone()

    def flip_mean(images):
        return 0.5 * (view(images) + view(images.flip(-1)))

    if mode == "none":
        return model(x)
    if mode == "flip":
        return flip_mean(x)
    if mode != "flip_translate":
        raise ValueError(f"unknown TTA mode {mode!r}; choose one of: {', '.join(TTA_MODES)}")
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    h, w = x.shape[-2:]
    shifted = 0.5 * (flip_mean(padded[..., :h, :w]) + flip_mean(padded[..., 2:, 2:]))
    return 0.5 * flip_mean(x) + 0.5 * shifted


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, num_classes: int = 10, tta: str = "none",
             amp_dtype: torch.dtype | None = None) -> dict:
    """Loss, accuracy (%) and confusion matrix of ``model`` on ``loader`` (eval mode)."""
    device = next(model.parameters()).device
    model.eval()
    loss_sum = torch.zeros((), device=device)
    preds, labels = [], []
    for x, y in loader:
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            logits = tta_logits(model, x, tta)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        preds.append(logits.argmax(1))
        labels.append(y)
    preds, labels = torch.cat(preds), torch.cat(labels)
    n = len(labels)
    return {"loss": loss_sum.item() / n, "acc": 100.0 * (preds == labels).sum().item() / n,
            "confusion": confusion_matrix(preds, labels, num_classes)}
