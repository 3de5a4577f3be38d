"""Measured "auto": every speed switch left on auto is decided on this machine, by checking and
timing its candidates, not by a rule.

    choice = decide(switches, recipe, device, train_images=x, train_labels=y)
    choice.speed    # an engine.Speed: every switch decided
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

import time
from dataclasses import dataclass

import torch

from ..engine import Speed, resolve_switches, synchronize
from ..recipes import Recipe
from .cache import (
    cache_dir,
    cache_enabled,
    cache_path,
    dali_version,
    device_identity,
    read_cache,
    software_versions,
    warn,
    write_cache,
)  # fmt: skip
from .checks import (
    KERNEL_TOLERANCE,
    check_bn_relu,
    check_loader,
    has_bn_relu,
    norm_layer_shapes,
)  # fmt: skip
from .timing import (
    StepBench,
    Timing,
    pick_fastest,
    preserved_rng,
    short_error,
    time_alternating,
    timing_batch,
)  # fmt: skip

CACHE_VERSION = 1
# every switch left to measurement (or to the rule where there is no choice): RunOptions' defaults
ALL_AUTO = {"amp": "auto", "channels_last": "auto", "compile": "auto", "bn_relu": "auto",
            "cpu_malloc": "auto", "loader": "auto"}

__all__ = ["ALL_AUTO", "KERNEL_TOLERANCE", "Choice", "StepBench", "Timing", "cache_dir",
           "cache_enabled", "cache_path", "check_bn_relu", "check_loader", "dali_version", "decide",
           "device_identity", "has_bn_relu", "norm_layer_shapes", "pick_fastest", "read_cache",
           "rule_speed", "short_error", "software_versions", "switch_word", "time_alternating",
           "timing_batch", "warn", "write_cache"]


def switch_word(switch: str, value) -> str:
    if switch == "channels_last":
        return "on" if value else "off"
    if switch == "amp" and value == "off":
        return "fp32"
    return str(value)


@dataclass
class Choice:
    speed: Speed  # every switch decided
    record: dict  # config.json's "auto"
    line: str  # the opening line's account of the decisions


def candidates(switches: dict, recipe: Recipe, device: torch.device, rule: dict) -> dict:
    """{switch: [values to measure]} for each switch left on auto that has a real choice here;
    and {switch: why not} in ``["skipped"]`` for the others left on auto."""
    from ..augment import get_preset
    from ..env import cpu_native_bf16
    from ..models.norms import triton_usable

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


def _dali_imports() -> bool:
    from ..augment.dali import require_dali

    try:
        require_dali()
    except ImportError:
        return False
    return True


def rule_speed(switches: dict, device: torch.device) -> dict:
    """The rule's pick for every switch (the default that measuring must beat)."""
    return resolve_switches(switches, device).as_dict()


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
    if switches["bn_relu"] == "auto" and not has_bn_relu(recipe):
        rule["bn_relu"] = "eager"  # nothing to fuse: the model refuses triton
    found = candidates(switches, recipe, device, rule)
    skipped = found.pop("skipped")
    record = {"measured": bool(found), "rule": dict(rule), "skipped": skipped, "decisions": {}}
    if not found:
        return Choice(Speed(**rule), record | {"cache": "not needed"}, _line(rule, record))
    key = {"version": CACHE_VERSION, "device": device_identity(device),
           "versions": software_versions(), "model": recipe.model,
           "model_options": recipe.model_options, "batch_size": recipe.batch_size,
           "augment": recipe.augment if "loader" in found else None,
           "requested": {k: switches[k] for k in ("amp", "channels_last", "compile", "bn_relu",
                                                  "loader")}}
    cached = read_cache(key) if cache == "use" else None
    if cached is not None and set(cached.get("speed", {})) == set(rule):
        record = cached | {"cache": "hit"}
        return Choice(Speed(**cached["speed"]), record, _line(cached["speed"], record))
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
    return Choice(Speed(**speed), record, _line(speed, record))


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
    dtype = Speed(**speed).amp_dtype or torch.float32
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
    from ..augment import get_preset, make_loader

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
            same = "the rule's pick" if all(speed[s] == decisions[s]["rule"]
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
