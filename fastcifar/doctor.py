"""``fastcifar-doctor``: what this machine is, and what every "auto" switch picks here and why.

    fastcifar-doctor                       # resnet_final's default recipe
    python -m fastcifar.doctor --model speedrun --json

It shows the machine (CPU model and flags, GPU, capability, memory, driver) and versions; then
measures the auto switches exactly as a run would (fastcifar.autotune, and stores the decision
in the cache, so the next run starts from it); checks the Triton BatchNorm+ReLU kernels against
eager fp32 in every dtype and layout (on the CPU in Triton's interpreter, at batch 2); builds one
DALI batch and holds it against the torch loader's; and estimates an epoch's training time at
the picked switches from a few timed steps. It never trains and needs no data.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

TRAIN_IMAGES = 50_000  # CIFAR-10's training set: what an epoch's estimate is for


def main(argv: list[str] | None = None) -> int:
    from .lifecycle import run_cli

    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = argparse.ArgumentParser(prog="fastcifar-doctor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="resnet_final",
                        help="the model whose default recipe is measured (default resnet_final)")
    parser.add_argument("--json", action="store_true", help="print one JSON object, no table")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE")
    args = parser.parse_args(argv)

    import torch

    from .models import list_models

    if args.model not in list_models():
        parser.error(f"unknown --model {args.model!r}; choose one of: {', '.join(list_models())}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device cuda, but torch sees no CUDA device (torch {torch.__version__}); "
                     "use --device cpu or auto")
    cuda = torch.cuda.is_available() and args.device != "cpu"
    if not cuda and "triton" not in sys.modules:
        # on the CPU the kernels run only in Triton's interpreter, which must be chosen before
        # triton is imported; it changes nothing else in this process
        os.environ.setdefault("TRITON_INTERPRET", "1")
    if args.out:
        try:
            _save(args.out, {})
        except OSError as err:
            print(f"error: cannot write --out {args.out} ({err.strerror or err}); pick a "
                  "writable path", file=sys.stderr)
            return 2
    report = diagnose(args.model, torch.device("cuda" if cuda else "cpu"),
                      say=(lambda *a: None) if args.json else print,
                      save=(lambda r: _save(args.out, r)) if args.out else None)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    return 0


def _save(path: str, report: dict) -> None:
    """Write atomically: a doctor stopped at a time limit leaves every section it finished."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
    os.replace(tmp, target)


def diagnose(model: str, device, say=print, save=None) -> dict:
    """Everything the doctor reports, as a dict; ``say`` prints each section as it is done and
    ``save`` (if given) is handed the report so far after each one."""
    from .env import environment

    start = time.perf_counter()
    env = environment()
    report = {"machine": machine(device, env), "environment": env}
    say(_machine_text(report["machine"], report["environment"]))
    sections = [("auto", lambda: auto_section(model, device), _auto_text),
                ("kernels", lambda: kernel_section(model, device), _kernel_text),
                ("dali", lambda: dali_section(device), _dali_text),
                ("estimate", lambda: estimate_section(model, device, report["auto"]["speed"]),
                 _estimate_text)]
    for name, run, text in sections:
        if save:
            save(report)
        report[name] = run()
        say(text(report[name]))
    report["seconds"] = round(time.perf_counter() - start, 1)
    say(f"\ndoctor done in {report['seconds']:.0f} s")
    if save:
        save(report)
    return report


# ---- sections ----------------------------------------------------------------------------------

def machine(device, env: dict) -> dict:
    """The CPU (flags, native bf16) and, on CUDA, the GPU as ``env`` (fastcifar.env.environment)
    records it, with the driver's version beside it."""
    from .env import cpu_flags, cpu_native_bf16

    gpu = env["gpu_details"] if device.type == "cuda" else None
    return {"cpu": env["cpu"], "cores": env["cpu_cores"], "cpu_flags": cpu_flags(),
            "cpu_native_bf16": cpu_native_bf16(), "torch_threads": env["torch_threads"],
            "device": str(device), "gpu": gpu and gpu | {"driver": _driver_version()}}


def _driver_version() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() \
        else None


def auto_section(model: str, device) -> dict:
    """The run's own decision for ``model``'s default recipe, measured afresh (and cached)."""
    import torch

    from .autotune import ALL_AUTO, decide
    from .recipes import DEFAULT_RECIPE, get_recipe

    recipe = get_recipe(DEFAULT_RECIPE[model])
    n = 8 * recipe.batch_size  # a stand-in data set for the loader check: random images
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=gen).numpy()
    labels = torch.randint(0, 10, (n,), generator=gen).numpy()
    choice = decide(ALL_AUTO, recipe, device, train_images=images, train_labels=labels,
                    cache="refresh")
    return {"recipe": recipe.name, "batch_size": recipe.batch_size, "speed": choice.speed.as_dict(),
            "line": choice.line, "record": choice.record}


def kernel_section(model: str, device) -> dict:
    """Worst error of the Triton kernels against eager fp32, per dtype and layout, at the
    model's layer shapes (a batch of 2 in the interpreter, the recipe's batch on a GPU)."""
    import torch

    from .autotune import check_bn_relu, has_bn_relu, norm_layer_shapes, short_error
    from .models.norms import triton_usable
    from .recipes import DEFAULT_RECIPE, get_recipe

    recipe = get_recipe(DEFAULT_RECIPE[model])
    if not triton_usable():
        return {"skipped": f"no triton, or torch {torch.__version__} lacks triton_op"}
    from fastcifar.kernels import bn_relu as K

    if device.type != "cuda" and not K.INTERPRETED:
        return {"skipped": "no CUDA device, and triton was imported before TRITON_INTERPRET=1 "
                           "could be set"}
    shapes = norm_layer_shapes(recipe) if has_bn_relu(recipe) else norm_layer_shapes(
        get_recipe(DEFAULT_RECIPE["resnet_final"]))
    batch = recipe.batch_size if device.type == "cuda" else 2
    rows = []
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        for channels_last in (False, True):
            try:
                rows.append(check_bn_relu(shapes, batch, dtype, channels_last, device))
            except Exception as err:  # noqa: BLE001 - reported, not raised
                rows.append({"ok": False, "error": short_error(err),
                             "dtype": str(dtype).removeprefix("torch."),
                             "layout": "channels_last" if channels_last else "nchw"})
    return {"batch": batch, "interpreted": device.type != "cuda",
            "shapes_of": recipe.model if has_bn_relu(recipe) else "resnet_final", "rows": rows}


def dali_section(device) -> dict:
    """DALI's import, and one pipeline batch held against the torch loader's."""
    import numpy as np

    from .augment import get_preset, make_loader
    from .augment.dali import require_dali
    from .autotune import check_loader, dali_version, short_error

    try:
        require_dali()
    except ImportError as err:
        return {"imports": False, "why": str(err)}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (256, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, 256)
    spec = get_preset("flip_crop")
    out = {"imports": True, "version": dali_version(), "device": str(device)}
    try:
        start = time.perf_counter()
        loaders = {b: make_loader(images, labels, spec, 128, train=True, backend=b,
                                  device=device, seed=0) for b in ("dali", "torch")}
        problem = check_loader(loaders["dali"], loaders["torch"], channels_last=True)
        out |= {"batch_ok": problem is None, "problem": problem,
                "seconds": round(time.perf_counter() - start, 2)}
    except Exception as err:  # noqa: BLE001
        out |= {"batch_ok": False, "problem": short_error(err)}
    return out


def estimate_section(model: str, device, speed: dict) -> dict:
    """An epoch's training time at the picked switches, from a few timed steps (on the CPU at
    the stand-in batch, scaled to the epoch's images)."""
    from .autotune import StepBench, short_error, time_alternating, timing_batch
    from .recipes import DEFAULT_RECIPE, get_recipe

    recipe = get_recipe(DEFAULT_RECIPE[model])
    batch = timing_batch(recipe.batch_size, device)
    try:
        bench = StepBench(recipe, speed, batch, device)
        timings, errors = time_alternating({"step": bench.step}, device=device)
    except Exception as err:  # noqa: BLE001
        return {"error": short_error(err)}
    if not timings:
        return {"error": errors.get("step")}
    step = timings["step"].seconds
    epoch = step / batch * TRAIN_IMAGES
    return {"recipe": recipe.name, "batch": batch, "recipe_batch": recipe.batch_size,
            "ms_per_step": round(step * 1e3, 2), "images_per_s": round(batch / step, 1),
            "epoch_seconds": round(epoch, 1), "epochs": recipe.epochs,
            "run_seconds": round(epoch * recipe.epochs, 1)}


# ---- text --------------------------------------------------------------------------------------

def _machine_text(m: dict, env: dict) -> str:
    gpu = m["gpu"]
    lines = ["== machine",
             f"cpu      {m['cpu']} ({m['cores']} cores, torch threads {m['torch_threads']}; "
             f"native bf16: {'yes' if m['cpu_native_bf16'] else 'no'})",
             f"flags    {' '.join(m['cpu_flags']) or 'unknown'}",
             "gpu      " + (f"{gpu['name']} (capability {gpu['capability']}, "
                            f"{gpu['memory_gib']} GiB, {gpu['sms']} SMs, driver "
                            f"{gpu['driver'] or 'unknown'})" if gpu else "none: the CPU trains"),
             f"versions python {env['python']}, torch {env['torch']}, triton {env['triton']}, "
             f"numpy {env['numpy']}, cuda {(env.get('gpu_details') or {}).get('cuda')}, "
             f"commit {env['commit']}"]
    return "\n".join(lines)


def _auto_text(a: dict) -> str:
    from .autotune import switch_word

    record = a["record"]
    lines = [f"\n== auto switches for {a['recipe']} (batch {a['batch_size']})",
             "switch         picked   rule     why"]
    for switch in ("amp", "channels_last", "compile", "bn_relu", "loader", "cpu_malloc"):
        decision = record.get("decisions", {}).get(switch)
        why = decision["why"] if decision else record.get("skipped", {}).get(switch, "rule")
        lines.append(f"{switch:14s} {switch_word(switch, a['speed'][switch]):8s} "
                     f"{switch_word(switch, record['rule'][switch]):8s} {why}")
    for name, table in record.get("timings", {}).items():
        if not table:
            continue
        lines.append(f"timing {name} ({table['unit']}, batch {table['batch']}):")
        for cand, t in sorted(table["candidates"].items(), key=lambda kv: kv[1].get("ms", 1e18)):
            lines.append(f"  {cand:36s} " + (f"{t['ms']:10.2f}  spread {t['spread']:.1%}"
                                             if "ms" in t else f"failed: {t['error']}"))
    if "seconds" in record:
        lines.append(f"measured in {record['seconds']:.1f} s (decision stored in the cache)")
    return "\n".join(lines)


def _kernel_text(k: dict) -> str:
    if "skipped" in k:
        return f"\n== Triton BatchNorm+ReLU kernels: not checked ({k['skipped']})"
    where = "Triton's interpreter on the CPU" if k["interpreted"] else "the GPU"
    lines = [f"\n== Triton BatchNorm+ReLU kernels against eager fp32 ({k['shapes_of']}'s layer "
             f"shapes, batch {k['batch']}, on {where}; rms error relative to the reference)",
             "dtype  layout         worst       tolerance  ok    where"]
    for r in k["rows"]:
        if "error" in r:
            lines.append(f"{r['dtype']:6s} {r['layout']:14s} failed: {r['error']}")
        else:
            lines.append(f"{r['dtype']:6s} {r['layout']:14s} {r['worst']:.2e}    "
                         f"{r['tolerance']:.1e}    {'yes' if r['ok'] else 'NO':5s} {r['shape']}")
    return "\n".join(lines)


def _dali_text(d: dict) -> str:
    if not d["imports"]:
        return f"\n== DALI: not available ({d['why']})"
    if d.get("batch_ok"):
        return (f"\n== DALI {d['version']}: imports; one pipeline batch on {d['device']} keeps "
                f"the torch loader's contract ({d['seconds']:.1f} s)")
    return f"\n== DALI {d['version']}: imports, but its batch fails: {d['problem']}"


def _estimate_text(e: dict) -> str:
    if "error" in e:
        return f"\n== epoch estimate: could not time a step ({e['error']})"
    scaled = "" if e["batch"] == e["recipe_batch"] else \
        f" (timed at batch {e['batch']}, the recipe's is {e['recipe_batch']})"
    return (f"\n== epoch estimate for {e['recipe']}: {e['ms_per_step']:.1f} ms a step of "
            f"{e['batch']}{scaled}, {e['images_per_s']:.0f} images/s: ~{e['epoch_seconds']:.0f} s "
            f"an epoch of {TRAIN_IMAGES:,} images, ~{_span(e['run_seconds'])} for its "
            f"{e['epochs']} epochs (training only; compile and evaluation not included)")


def _span(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.1f} min"


if __name__ == "__main__":
    sys.exit(main())
