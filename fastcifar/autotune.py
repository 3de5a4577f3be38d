"""Measured "auto": every speed switch left on auto is decided on this machine, by checking and
timing its candidates, not by a rule.

    choice = decide(switches, recipe, device, train_images=x, train_labels=y)
    choice.speed    # the switches, every "auto" decided (engine.resolve_switches' format + loader)
    choice.record   # for config.json: candidates, checks, timings, cache hit or not
    choice.line     # the run's opening line: what was picked, and briefly why

Candidates, where their switch is "auto":
    amp            bf16 vs fp32, on a CPU with native bf16 (on a GPU the rule stays: bf16 where
                   native, else fp16; on other CPUs fp32, since bf16 is emulated there)
    channels_last  on vs off, on the CPU and the GPU
    bn_relu        triton vs eager, where the Triton kernels run (CUDA), under the run's compile
                   mode; the kernels are first checked against eager fp32 at the model's own
                   layer shapes, forward and backward
    loader         dali vs torch, on CUDA where DALI imports; a DALI batch is first checked
                   against the torch loader's contract

The rule's pick (engine.resolve_switches) is the default; a candidate replaces it only when it
is faster by more than the timing's own noise. A candidate that fails to build, compile or run,
or disagrees with the reference, is dropped with one warning line. Timing happens on fresh
models and random inputs with every RNG restored afterwards, so measuring never changes what the
run learns. Decisions are cached per machine, versions and run shape (``cache_dir()``).
"""

import contextlib
import hashlib
import importlib.metadata
import json
import math
import os
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .engine import AMP_DTYPES, DeviceTimer, resolve_switches, synchronize
from .env import cpu_flags, cpu_name, triton_version
from .models import create_model, parse_model_options
from .recipes import Recipe

CACHE_VERSION = 1
NOISE_FLOOR = 0.03  # a replacement must be at least this much faster, whatever the spread says
CPU_TIMING_BATCH = 32  # on the CPU a small batch stands in for the run's (seconds, not minutes)
ROUND_SECONDS = 0.2  # steps per timing round: enough for this much time, at least one
ROUNDS = 3  # alternating rounds per candidate: their spread is the timing's noise
# the error (root mean square, relative to the reference's) the kernels may show per dtype: they
# compute in fp32 and round once to the storage dtype (fp16 keeps 11 bits, bf16 8, and Triton's
# interpreter truncates rather than rounds): a few units of that last bit, no more
KERNEL_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---- what is fixed while measuring -----------------------------------------------------------

@contextlib.contextmanager
def preserved_rng(device: torch.device):
    """Every RNG a run draws from (Python, NumPy, torch CPU and CUDA) as it was on entry."""
    py, np_state = random.getstate(), np.random.get_state()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        try:
            yield
        finally:
            random.setstate(py)
            np.random.set_state(np_state)


def device_identity(device: torch.device) -> dict:
    """What a timing depends on besides the software: the CPU (model, flags, threads) or GPU."""
    ident = {"type": device.type, "cpu": cpu_name(), "cpu_flags": cpu_flags(),
             "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        ident |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}"}
    return ident


def dali_version() -> str | None:
    for dist in ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def software_versions() -> dict:
    return {"torch": str(torch.__version__), "triton": triton_version(), "dali": dali_version(),
            "cuda": torch.version.cuda}


# ---- the cache --------------------------------------------------------------------------------

def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastcifar``, else ``~/.cache/fastcifar``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastcifar"


def cache_enabled() -> bool:
    """False with ``FASTCIFAR_AUTO_CACHE=off`` (or 0, no, false) in the environment."""
    env = os.environ.get("FASTCIFAR_AUTO_CACHE", "on").strip().lower()
    return env not in ("off", "0", "no", "false")


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"auto-{digest}.json"


def read_cache(key: dict) -> dict | None:
    """The record cached under ``key``, or None: absent, unreadable, corrupt or another key's."""
    path = cache_path(key)
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        warn(f"ignored an unreadable auto-decision cache entry {path} ({err}); measuring anew")
        return None
    if not isinstance(entry, dict) or entry.get("key") != key \
            or not isinstance(entry.get("record"), dict):
        return None
    return entry["record"]


def write_cache(key: dict, record: dict) -> None:
    """Write atomically (a temporary file renamed into place): a reader, or a second run
    writing at the same moment, never sees half a file. A cache that cannot be written is
    skipped with a warning; the run goes on."""
    path = cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"key": key, "record": record}, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        warn(f"could not write the auto-decision cache {path} ({err.strerror or err}); "
             "the next run measures again")


# ---- timing ------------------------------------------------------------------------------------

@dataclass
class Timing:
    """Seconds per step (or batch) of each alternating round."""

    rounds: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> float:
        """(slowest - fastest) / fastest round: how far this timing can be trusted."""
        return (max(self.rounds) - min(self.rounds)) / min(self.rounds)


def pick_fastest(default: str, timings: dict[str, Timing]) -> tuple[str, str]:
    """(the winner, why): the fastest candidate, if it beats ``default`` by more than the noise
    (the larger spread of the two, at least NOISE_FLOOR); else ``default``."""
    if default not in timings:  # the default itself failed: the fastest that ran
        best = min(timings, key=lambda c: timings[c].seconds)
        return best, f"the fastest that ran ({default} failed)"
    best = min(timings, key=lambda c: timings[c].seconds)
    if best == default:
        others = [c for c in timings if c != default]
        if not others:
            return default, "the only candidate"
        runner = min(others, key=lambda c: timings[c].seconds)
        ratio = timings[runner].seconds / timings[default].seconds
        return default, f"fastest; the next, {runner}, took {ratio:.2f}x as long"
    d, b = timings[default], timings[best]
    noise = max(NOISE_FLOOR, d.spread, b.spread)
    gain = 1 - b.seconds / d.seconds
    if gain > noise:
        return best, f"{d.seconds / b.seconds:.2f}x faster than {default}, beyond the noise " \
                     f"({noise:.0%})"
    return default, (f"{best} was {gain:.0%} faster, within the noise ({noise:.0%}): the rule's "
                     "pick stays")


def timing_batch(batch_size: int, device: torch.device) -> int:
    return batch_size if device.type == "cuda" else min(batch_size, CPU_TIMING_BATCH)


class StepBench:
    """One training step (forward, backward, SGD) of a fresh model under one configuration,
    on random inputs: what a switch changes in a step, and nothing of the run's state."""

    def __init__(self, recipe: Recipe, config: dict, batch: int, device: torch.device):
        self.device, self.config = device, config
        cl = torch.channels_last if config["channels_last"] else torch.contiguous_format
        model = create_model(recipe.model, bn_relu=config["bn_relu"],
                             **parse_model_options(recipe.model_options)).to(device)
        gen = torch.Generator(device).manual_seed(0)
        if hasattr(model, "fit_to_data"):  # a data-initialised layer: fitted to noise here
            model.fit_to_data(torch.randn(256, 3, 32, 32, device=device, generator=gen))
        self.model = model.to(memory_format=cl).train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)
        self.x = torch.randn(batch, 3, 32, 32, device=device, generator=gen).contiguous(
            memory_format=cl)
        self.y = torch.randint(0, 10, (batch,), device=device, generator=gen)
        self.amp = AMP_DTYPES[config["amp"]]
        mode = config["compile"]
        self.step_model = self.model if mode == "off" else torch.compile(
            self.model, mode=None if mode == "default" else mode)

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            logits = self.step_model(self.x)
        loss = F.cross_entropy(logits.float(), self.y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()


def time_alternating(runners: dict, warmup: int = 2, rounds: int = ROUNDS,
                     device: torch.device | None = None) -> tuple[dict, dict]:
    """({name: Timing}, {name: error}) for ``runners`` (name -> a function doing one unit of
    work): each is warmed up (compiles happen there), then timed in ``rounds`` rounds that
    alternate between candidates, so a drift of the machine's speed hits them all alike."""
    errors, per_round = {}, {}
    timer = DeviceTimer(device or torch.device("cpu"))
    for name, run in runners.items():
        try:
            for _ in range(warmup):
                run()
            timer.start()
            run()
            per_round[name] = max(1, min(50, math.ceil(ROUND_SECONDS / max(timer.stop(), 1e-6))))
        except Exception as err:  # noqa: BLE001 - a candidate that cannot run is dropped
            errors[name] = short_error(err)
    timings = {name: Timing() for name in per_round}
    for _ in range(rounds):
        for name in list(timings):
            try:
                timer.start()
                for _ in range(per_round[name]):
                    runners[name]()
                timings[name].rounds.append(timer.stop() / per_round[name])
            except Exception as err:  # noqa: BLE001
                errors[name] = short_error(err)
                del timings[name]
    return timings, errors


def short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


# ---- correctness checks ------------------------------------------------------------------------

def norm_layer_shapes(recipe: Recipe) -> list[tuple[int, int, int, bool]]:
    """(channels, height, width, has_residual) of every BatchNorm+ReLU module of the model, in
    order, without duplicates (traced on the meta device: no memory, no time)."""
    from .models.layers import BatchNormAddReLU2d, BatchNormReLU2d

    with torch.device("meta"):
        model = create_model(recipe.model, bn_relu="eager",
                             **parse_model_options(recipe.model_options))
        shapes = []

        def hook(module, inputs, _output):
            c, h, w = inputs[0].shape[1:]
            shape = (c, h, w, isinstance(module, BatchNormAddReLU2d))
            if shape not in shapes:
                shapes.append(shape)

        handles = [m.register_forward_hook(hook) for m in model.modules()
                   if isinstance(m, BatchNormReLU2d | BatchNormAddReLU2d)]
        model(torch.empty(2, 3, 32, 32))
        for h in handles:
            h.remove()
    return shapes


def check_bn_relu(shapes, batch: int, dtype: torch.dtype, channels_last: bool,
                  device: torch.device) -> dict:
    """The Triton modules against eager fp32 at each shape: forward output, running statistics
    and the backward's dx, dweight, dbias (and d residual). {"ok", "worst", "tolerance",
    "shape"} where worst is the largest error relative to the reference's magnitude."""
    from .models.fused import TRITON
    from .models.layers import EAGER

    tolerance = KERNEL_TOLERANCE[dtype]
    worst, worst_shape = 0.0, None
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    gen = torch.Generator(device).manual_seed(1)
    for c, h, w, residual in shapes:
        kind = "bn_add_relu" if residual else "bn_relu"
        fused, eager = getattr(TRITON, kind)(c).to(device), getattr(EAGER, kind)(c).to(device)
        with torch.no_grad():
            fused.weight.uniform_(0.5, 1.5, generator=gen)
            fused.bias.normal_(generator=gen)
        eager.load_state_dict(fused.state_dict())
        # the same values for both (rounded to ``dtype`` once): only the arithmetic differs
        x, res, dy = ((torch.randn(batch, c, h, w, device=device, generator=gen) * 2 + 0.5)
                      .to(dtype) for _ in range(3))
        res = res if residual else None
        got = _forward_backward(fused, x, res, dy, fmt)
        want = _forward_backward(eager, x.float(), None if res is None else res.float(),
                                 dy.float(), fmt)
        got |= {"running_mean": fused.running_mean, "running_var": fused.running_var}
        want |= {"running_mean": eager.running_mean, "running_var": eager.running_var}
        for name, ref in want.items():
            err = _relative_error(got[name], ref)
            if not err <= worst:  # NaN counts as the worst
                worst, worst_shape = err, f"{kind} {batch}x{c}x{h}x{w} ({name})"
    return {"ok": worst <= tolerance, "worst": worst, "tolerance": tolerance,
            "shape": worst_shape, "dtype": DTYPE_NAMES[dtype],
            "layout": "channels_last" if channels_last else "nchw"}


def _forward_backward(module, x, res, dy, fmt) -> dict:
    x = x.detach().clone(memory_format=fmt).requires_grad_(True)  # a leaf of this call's own
    args = [x]
    if res is not None:
        res = res.detach().to(x.dtype).clone(memory_format=fmt).requires_grad_(True)
        args.append(res)
    module.train()
    y = module(*args)
    y.backward(dy.contiguous(memory_format=fmt))
    out = {"y": y.detach(), "dx": x.grad, "dweight": module.weight.grad,
           "dbias": module.bias.grad}
    if res is not None:
        out["dresidual"] = res.grad
    return out


def _relative_error(got: torch.Tensor, ref: torch.Tensor) -> float:
    """||got - ref|| / ||ref|| (root mean square). Not the largest elementwise error: at fp16 or
    bf16 an activation that rounds to exactly 0 flips its ReLU gradient, a full-size difference
    at that one element, which a correct kernel shows and a wrong one shows everywhere."""
    if got is None or got.shape != ref.shape:
        return math.inf
    ref = ref.double()
    return ((got.double() - ref).norm() / ref.norm().clamp_min(1e-12)).item()


def check_loader(loader, reference, channels_last: bool) -> str | None:
    """None if ``loader`` keeps the torch loader's contract on its first batches, else what it
    breaks: shape, dtype, device, memory layout, finite values in ``reference``'s range, and
    labels that equal the reference's (same seed, same order)."""
    (x, y), (rx, ry) = next(iter(loader)), next(iter(reference))
    if x.shape != rx.shape or x.dtype != rx.dtype or x.device != rx.device:
        return f"batch {tuple(x.shape)} {x.dtype} on {x.device}, expected " \
               f"{tuple(rx.shape)} {rx.dtype} on {rx.device}"
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if not x.is_contiguous(memory_format=fmt):
        return f"batch not in {'channels_last' if channels_last else 'NCHW'} layout"
    if not bool(torch.isfinite(x).all()):
        return "batch holds NaN or infinite values"
    lo, hi = rx.amin().item(), rx.amax().item()
    margin = 0.05 * (hi - lo)
    if x.amin().item() < lo - margin or x.amax().item() > hi + margin:
        return f"values in [{x.amin().item():.2f}, {x.amax().item():.2f}], expected " \
               f"[{lo:.2f}, {hi:.2f}]"
    if y.dtype != ry.dtype or not torch.equal(y, ry):
        return "labels differ from the torch loader's for the same seed and order"
    return None


# ---- the decisions -----------------------------------------------------------------------------

def switch_word(switch: str, value) -> str:
    if switch == "channels_last":
        return "on" if value else "off"
    if switch == "amp" and value == "off":
        return "fp32"
    return str(value)


@dataclass
class Choice:
    speed: dict  # every switch decided: amp, channels_last, compile, bn_relu, cpu_malloc, loader
    record: dict  # config.json's "auto"
    line: str  # the opening line's account of the decisions


def candidates(switches: dict, recipe: Recipe, device: torch.device, rule: dict) -> dict:
    """{switch: [values to measure]} for each switch left on auto that has a real choice here;
    and {switch: why not} in ``["skipped"]`` for the others left on auto."""
    from .augment import get_preset
    from .env import cpu_native_bf16
    from .models.norms import triton_usable

    found, skipped = {}, {}
    cuda = device.type == "cuda"
    if switches["amp"] == "auto":
        if device.type == "cpu" and cpu_native_bf16():
            found["amp"] = ["bf16", "off"]
        else:
            skipped["amp"] = "rule: bf16 where the GPU has it natively, else fp16" if cuda \
                else "rule: fp32 (this CPU has no native bf16: it would be emulated)"
    if switches["channels_last"] == "auto":
        found["channels_last"] = [rule["channels_last"], not rule["channels_last"]]
    if switches["bn_relu"] == "auto":
        if not has_bn_relu(recipe):
            skipped["bn_relu"] = "the model has no BatchNorm+ReLU to fuse"
        elif not triton_runs_here(device):
            skipped["bn_relu"] = "the Triton kernels need CUDA"
        elif not triton_usable():
            skipped["bn_relu"] = f"no triton, or torch {torch.__version__} lacks triton_op"
        else:
            found["bn_relu"] = ["triton", "eager"] if rule["bn_relu"] == "triton" \
                else ["eager", "triton"]
    if switches["loader"] == "auto":
        if not dali_candidate_here(device):
            skipped["loader"] = "DALI is a candidate on CUDA only"
        elif get_preset(recipe.augment).crop_fill != "zeros":
            skipped["loader"] = f"DALI pads crops with zeros; augment {recipe.augment} does not"
        elif not _dali_imports():
            skipped["loader"] = "DALI is not installed"
        else:
            found["loader"] = ["torch", "dali"]
    return found | {"skipped": skipped}


def triton_runs_here(device: torch.device) -> bool:
    """Whether the Triton kernels run on ``device``'s tensors as themselves: CUDA. (On the CPU
    they run only in Triton's interpreter, a test tool orders of magnitude slower.)"""
    return device.type == "cuda"


def dali_candidate_here(device: torch.device) -> bool:
    return device.type == "cuda"


def has_bn_relu(recipe: Recipe) -> bool:
    return bool(norm_layer_shapes(recipe))


def _dali_imports() -> bool:
    from .augment.dali import require_dali

    try:
        require_dali()
    except ImportError:
        return False
    return True


def rule_speed(switches: dict, device: torch.device) -> dict:
    """The rule's pick for every switch (the default that measuring must beat)."""
    from .models.norms import auto_bn_relu

    rule = resolve_switches(switches, device)
    if rule["bn_relu"] == "auto":
        rule["bn_relu"] = auto_bn_relu()[0] if device.type == "cuda" else "eager"
    loader = switches.get("loader", "torch")
    rule["loader"] = "torch" if loader == "auto" else loader
    return rule


CACHE_MODES = ("use", "refresh", "off")  # read and write; measure anew and write; neither


def decide(switches: dict, recipe: Recipe, device: torch.device, *, train_images=None,
           train_labels=None, cache: str = "use") -> Choice:
    """Decide every "auto" in ``switches`` (RunOptions' speed switches and loader) for this
    recipe on ``device``: measured where there is a choice, by the rule elsewhere. ``cache``:
    one of CACHE_MODES (``FASTCIFAR_AUTO_CACHE=off`` makes it "off")."""
    if cache not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, not {cache!r}")
    if not cache_enabled():
        cache = "off"
    rule = rule_speed(switches, device)
    found = candidates(switches, recipe, device, rule)
    skipped = found.pop("skipped")
    record = {"measured": bool(found), "rule": dict(rule), "skipped": skipped, "decisions": {}}
    if not found:
        return Choice(rule, record | {"cache": "not needed"}, _line(rule, record))
    key = {"version": CACHE_VERSION, "device": device_identity(device),
           "versions": software_versions(), "model": recipe.model,
           "model_options": recipe.model_options, "batch_size": recipe.batch_size,
           "augment": recipe.augment if "loader" in found else None,
           "requested": {k: switches[k] for k in ("amp", "channels_last", "compile", "bn_relu",
                                                  "loader")}}
    cached = read_cache(key) if cache == "use" else None
    if cached is not None and set(cached.get("speed", {})) == set(rule):
        record = cached | {"cache": "hit"}
        return Choice(dict(cached["speed"]), record, _line(cached["speed"], record))
    start = time.perf_counter()
    with preserved_rng(device):
        speed, decisions, timings = measure(found, rule, recipe, device, train_images,
                                            train_labels)
    record |= {"decisions": decisions, "timings": timings, "speed": speed,
               "seconds": round(time.perf_counter() - start, 2),
               "timing_batch": timing_batch(recipe.batch_size, device)}
    if cache != "off":
        write_cache(key, record)
    record = record | {"cache": {"use": "miss", "refresh": "refreshed", "off": "off"}[cache]}
    return Choice(speed, record, _line(speed, record))


class CompileFailed(RuntimeError):
    """torch.compile failed for every candidate: the compiler fails here, not a candidate."""


def measure(found: dict, rule: dict, recipe: Recipe, device, images, labels):
    """(speed, decisions, timings): layout and dtype first (timed together: on the CPU each
    decides how fast the other is), then the kernel at the chosen layout and dtype, then the
    loader. ``decisions[switch]`` = picked, rule, why and the name of its entry in ``timings``
    (each candidate's ms per step, spread and rounds, or the error that dropped it). Where
    torch.compile fails for every candidate, the run is decided uncompiled (one warning)."""
    try:
        return _measure(found, rule, recipe, device, images, labels)
    except CompileFailed as err:
        warn(f"torch.compile failed while timing the auto candidates ({err}); training "
             "uncompiled (--compile off)")
        speed, decisions, timings = _measure(found, rule | {"compile": "off"}, recipe, device,
                                             images, labels)
        decisions["compile"] = {"picked": "off", "rule": rule["compile"],
                                "why": f"torch.compile failed: {err}"}
        return speed, decisions, timings


def _measure(found: dict, rule: dict, recipe: Recipe, device, images, labels):
    speed, decisions, timings = dict(rule), {}, {}
    batch = timing_batch(recipe.batch_size, device)
    grid = [dict()]
    for switch in ("amp", "channels_last"):
        if switch in found:
            grid = [g | {switch: v} for g in grid for v in found[switch]]
    if grid != [{}]:
        name = "+".join(grid[0])
        configs = {_name(g): speed | g for g in grid}
        default = _name({s: rule[s] for s in grid[0]})
        winner, why, timings[name] = _time_configs(configs, default, recipe, batch, device)
        for switch in grid[0]:
            speed[switch] = configs[winner][switch]
            decisions[switch] = {"picked": speed[switch], "rule": rule[switch], "why": why,
                                 "timing": name}
    if "bn_relu" in found:
        decisions["bn_relu"], timings["bn_relu"] = _decide_bn_relu(
            found["bn_relu"], speed, rule, recipe, batch, device)
        speed["bn_relu"] = decisions["bn_relu"]["picked"]
    if "loader" in found:
        decisions["loader"], timings["loader"] = _decide_loader(speed, rule, recipe, device,
                                                                images, labels)
        speed["loader"] = decisions["loader"]["picked"]
    return speed, decisions, timings


def _name(config: dict) -> str:
    return ", ".join(f"{k}={switch_word(k, v)}" for k, v in sorted(config.items()))


def _time_configs(configs: dict, default: str, recipe, batch, device) -> tuple[str, str, dict]:
    """(winner, why, timing table) of training steps under each configuration."""
    benches, failed = {}, {}
    for name, config in configs.items():
        try:
            benches[name] = StepBench(recipe, config, batch, device)
        except Exception as err:  # noqa: BLE001
            failed[name] = short_error(err)
    timings, errors = time_alternating({n: b.step for n, b in benches.items()}, device=device)
    failed |= errors
    del benches
    if not timings and any(c["compile"] != "off" for c in configs.values()):
        raise CompileFailed(next(iter(failed.values())))  # the compiler, not the candidates
    for name, why in failed.items():
        warn(f"auto: dropped {name} ({why})")
    table = {"batch": batch, "unit": "ms per training step", "candidates": {
        n: {"ms": round(t.seconds * 1e3, 3), "spread": round(t.spread, 4),
            "rounds_ms": [round(r * 1e3, 3) for r in t.rounds]} for n, t in timings.items()}}
    table["candidates"] |= {n: {"error": e} for n, e in failed.items()}
    if not timings:
        return default, "every candidate failed: the rule's pick", table
    winner, why = pick_fastest(default, timings)
    return winner, why, table


def _decide_bn_relu(values, speed, rule, recipe, batch, device) -> tuple[dict, dict]:
    """(decision, timing table): the kernel checked at the model's layer shapes, in the run's
    dtype and layout, then timed against eager if it passed."""
    dtype = AMP_DTYPES[speed["amp"]] or torch.float32
    try:
        check = check_bn_relu(norm_layer_shapes(recipe), batch, dtype, speed["channels_last"],
                              device)
    except Exception as err:  # noqa: BLE001 - a kernel that cannot even run is dropped
        check = {"ok": False, "error": short_error(err)}
    decision = {"rule": rule["bn_relu"], "check": check, "timing": "bn_relu"}
    if not check["ok"]:
        why = check.get("error") or (f"it disagrees with eager fp32: worst error "
                                     f"{check['worst']:.2e} at {check['shape']}, over the "
                                     f"{check['dtype']} tolerance {check['tolerance']:.0e}")
        warn(f"auto: dropped bn_relu=triton ({why})")
        return decision | {"picked": "eager", "why": f"triton failed its check ({why})"}, {}
    configs = {v: speed | {"bn_relu": v} for v in values}
    winner, why, table = _time_configs(configs, rule["bn_relu"], recipe, batch, device)
    return decision | {"picked": winner, "why": why}, table


def _decide_loader(speed, rule, recipe, device, images, labels) -> tuple[dict, dict]:
    """(decision, timing table): a DALI batch checked against the torch loader's, in eval
    and training mode, then a few training epochs of a data subset timed with each."""
    from .augment import get_preset, make_loader

    spec = get_preset(recipe.augment)
    n = min(len(labels), 8 * recipe.batch_size)
    common = dict(device=device, seed=0, channels_last=speed["channels_last"])
    decision, built, failed = {"rule": rule["loader"], "timing": "loader"}, {}, {}
    for backend in ("torch", "dali"):
        try:
            built[backend] = {train: make_loader(images[:n], labels[:n], spec,
                                                 min(recipe.batch_size, n), train=train,
                                                 backend=backend, **common)
                              for train in (False, True)}
        except Exception as err:  # noqa: BLE001
            failed[backend] = short_error(err)
    if "dali" in built and "torch" in built:
        try:
            problem = check_loader(built["dali"][False], built["torch"][False],
                                   speed["channels_last"]) or check_loader(
                built["dali"][True], built["torch"][True], speed["channels_last"])
        except Exception as err:  # noqa: BLE001
            problem = short_error(err)
        decision["check"] = {"ok": problem is None, "problem": problem}
        if problem:
            failed["dali"] = f"it breaks the torch loader's contract: {problem}"
            del built["dali"]

    def epoch_of(loader):
        def run():
            for _ in loader:
                pass
            synchronize(device)
        return run

    timings, errors = time_alternating({b: epoch_of(ls[True]) for b, ls in built.items()},
                                       warmup=1, device=device) if len(built) > 1 else ({}, {})
    failed |= errors
    for name, why in failed.items():
        warn(f"auto: dropped loader={name} ({why})")
    table = {"batch": min(recipe.batch_size, n), "unit": "ms per batch", "candidates": {
        b: {"ms": round(t.seconds * 1e3 / len(built[b][True]), 3), "spread": round(t.spread, 4)}
        for b, t in timings.items()}}
    table["candidates"] |= {b: {"error": e} for b, e in failed.items()}
    if len(timings) < 2:
        return decision | {"picked": "torch", "why": "the only candidate that ran and passed "
                           "its check"}, table
    winner, why = pick_fastest("torch", timings)
    return decision | {"picked": winner, "why": why}, table


def _line(speed: dict, record: dict) -> str:
    """One line: each auto switch's pick and, briefly, why (measured or not, the rule's pick)."""
    parts, done = [], set()
    decisions = record.get("decisions", {})
    for switch in ("amp", "channels_last", "bn_relu", "loader", "compile"):
        if switch in done:
            continue
        if switch in decisions:
            timing = decisions[switch].get("timing", switch)
            together = [s for s in decisions if decisions[s].get("timing", s) == timing]
            done |= set(together)
            picked = ", ".join(f"{s}={switch_word(s, speed[s])}" for s in together)
            rule = ", ".join(f"{s}={switch_word(s, decisions[s]['rule'])}" for s in together)
            same = "the rule's pick too" if all(speed[s] == decisions[s]["rule"]
                                                for s in together) else f"the rule: {rule}"
            parts.append(f"{picked} ({decisions[switch]['why']}; {same})")
        elif switch in record.get("skipped", {}):
            parts.append(f"{switch}={switch_word(switch, speed[switch])} "
                         f"({record['skipped'][switch]})")
    if not parts:
        return ""
    where = {"hit": "cached decision", "miss": f"measured in {record.get('seconds', 0):.1f} s",
             "off": f"measured in {record.get('seconds', 0):.1f} s, cache off",
             "refreshed": f"measured in {record.get('seconds', 0):.1f} s, cache refreshed",
             "not needed": "nothing to measure"}[record.get("cache", "not needed")]
    return f"auto ({where}): " + "; ".join(parts)
