"""Fused BatchNorm+ReLU (and +residual) forward+backward at resnet_final's shapes: eager PyTorch,
torch.compile of eager, and our Triton kernels.

    python -m benchmarks.kernel_bn_relu [--batch 512] [--dtypes bf16 [fp32 fp16]] [--full]
        [--variants bn_relu bn_add_relu] [--providers eager compile triton] [--budget-s 90]
        [--out DIR]
    python -m benchmarks.kernel_bn_relu --device cpu --quick      # CPU rehearsal, < 40 s

Configurations run in order of what matters: bf16 channels_last (how resnet_final trains on the
GPU) at its five ResBlock shapes, then bf16 NCHW, then fp32 (only with --full or --dtypes). By
default NCHW runs the widest and the narrowest H*W only; --full runs every dtype, layout and
shape. After every configuration the results so far are written (atomically) to
DIR/kernel_bn_relu.json (default benchmarks/results); with --budget-s no configuration starts
after that many seconds, and the skipped ones are listed in the JSON.

Reports the median fwd+bwd time (ms), GB/s against the bytes that must move (the traffic model
of fastcifar.kernels.bn_relu: 8 activation-sized tensors for bn_relu, 11 with the residual), and
that as a % of this device's copy bandwidth (a large copy, measured here). On CUDA timing is
triton.testing.do_bench's median; on the CPU (--device cpu, always --quick: tiny shapes, the
kernels under TRITON_INTERPRET=1) it is a time.perf_counter median, the Triton provider calls the
launchers directly (torch 2.11's wrap_triton refuses interpreted kernels) and torch.compile is
skipped unless --providers names it (a cold compile is 25-28 s per graph on 2 cores).
Without CUDA and without --device cpu it says so and exits 0.
"""

import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

from benchmarks.harness import RESULTS, Bench, command, time_calls

# (channels, H = W) of each ResBlock of resnet_final; both of its BatchNorms see this shape
RESNET_FINAL = [(32, 32), (64, 32), (128, 32), (256, 16), (512, 8)]
NCHW_DEFAULT = [(32, 32), (512, 8)]  # the widest and the narrowest H*W
QUICK = [(32, 8), (64, 4)]  # CPU rehearsal: the same code at interpreter-sized shapes
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
VARIANTS = ("bn_relu", "bn_add_relu")
PROVIDERS = ("eager", "compile", "triton")
NAME = "kernel_bn_relu"


def configurations(dtypes, variants, full: bool, quick: bool, batch: int) -> list[dict]:
    """Every configuration to run, most important first."""
    order = [d for d in ("bf16", "fp16", "fp32") if d in dtypes]
    configs = []
    for dtype in order:
        for channels_last in (True, False):
            if quick:
                shapes = QUICK
            elif full or channels_last:
                shapes = RESNET_FINAL
            else:
                shapes = NCHW_DEFAULT
            for channels, hw in shapes:
                for variant in variants:
                    layout = "channels_last" if channels_last else "nchw"
                    shape = (batch, channels, hw, hw)
                    configs.append({
                        "config": f"{variant}/{dtype}/{layout}/{'x'.join(map(str, shape))}",
                        "variant": variant, "dtype": dtype, "layout": layout, "shape": shape})
    return configs


def sig(x: float, digits: int = 3) -> float:
    """``digits`` significant figures: CPU rehearsal rates are tiny, GPU ones large."""
    return float(f"{x:.{digits}g}")


def make_timer(device: str, reps: int):
    """ms for one call of fn: do_bench's median on CUDA (many calls, the L2 cache flushed
    between them: a kernel of tens of microseconds needs that), the harness's clock on the CPU
    (the median of ``reps`` single calls)."""
    if device == "cuda":
        from triton.testing import do_bench

        return lambda fn: do_bench(fn, quantiles=[0.5])
    return lambda fn: 1e3 * statistics.median(time_calls(fn, 1) for _ in range(reps))


def copy_bandwidth_gbs(device: str, timer) -> float:
    n = 1 << 28 if device == "cuda" else 1 << 24  # 1 GiB (far beyond L2) or 64 MiB
    src = torch.empty(n, dtype=torch.float32, device=device)
    dst = torch.empty_like(src)
    ms = timer(lambda: dst.copy_(src))
    return 2 * src.numel() * src.element_size() / ms / 1e6  # read + write


def setup(cfg: dict, provider: str, device: str):
    """A closure running one fwd+bwd of ``cfg`` for one provider."""
    from fastcifar.kernels import bn_relu as K
    from fastcifar.models.fused import TRITON
    from fastcifar.models.layers import EAGER

    shape, dtype = cfg["shape"], DTYPES[cfg["dtype"]]
    fmt = torch.channels_last if cfg["layout"] == "channels_last" else torch.contiguous_format
    make = lambda: torch.randn(shape, device=device, dtype=dtype).contiguous(memory_format=fmt)
    residual = cfg["variant"] == "bn_add_relu"
    x, dy = make(), make()
    res = make() if residual else None
    if provider == "triton" and device == "cpu":
        # the launchers themselves: interpreted kernels cannot go through wrap_triton on every
        # torch (2.11 refuses them); the module path is what CUDA measures
        c = shape[1]
        w, b = torch.ones(c), torch.zeros(c)
        rm, rv = torch.zeros(c), torch.ones(c)

        def fwd_bwd():
            y, mean, invstd, _, _ = K.bn_relu_forward(x, w, b, res, rm, rv)
            return K.bn_relu_backward(dy, x, w, b, mean, invstd, y if residual else None)
        return fwd_bwd
    norm = TRITON if provider == "triton" else EAGER
    module = (norm.bn_add_relu if residual else norm.bn_relu)(shape[1]).to(device)
    inputs = [x.requires_grad_(), res.requires_grad_()] if residual else [x.requires_grad_()]
    # static shapes: one specialised graph per configuration, the best case for Inductor
    run = torch.compile(module, fullgraph=True, dynamic=False) if provider == "compile" else module
    leaves = [*inputs, module.weight, module.bias]
    return lambda: torch.autograd.grad(run(*inputs), leaves, dy)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=command(__file__),
        description="Fused BatchNorm+ReLU (+residual) fwd+bwd: eager, torch.compile, Triton.")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--quick", action="store_true",
                        help="tiny shapes (batch 2) to check the script end to end")
    parser.add_argument("--full", action="store_true",
                        help="every dtype, layout and resnet_final shape (40 configurations)")
    parser.add_argument("--batch", type=int, default=None, help="default 512 (2 with --quick)")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None,
                        help="default bf16 (with --full: bf16 fp32)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--providers", nargs="+", choices=PROVIDERS, default=None,
                        help="default all three (on the CPU: eager triton)")
    parser.add_argument("--budget-s", type=float, default=90.0,
                        help="start no configuration after this many seconds (default 90)")
    parser.add_argument("--out", default=None, help=f"results folder (default {RESULTS})")
    return parser


def interpreter_breaks(triton_version: str, numpy_version: str) -> bool:
    """Triton < 3.7's interpreter indexes 1-element numpy arrays as scalars, which numpy 2.4
    refuses (measured with triton 3.6.0 and numpy 2.4.6; triton 3.8 is fine)."""
    version = lambda text: tuple(int(p) for p in text.split("+")[0].split(".")[:2])
    return version(triton_version) < (3, 7) and version(numpy_version) >= (2, 4)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = get_args_parser()
    args = parser.parse_args(argv)
    start = time.perf_counter()
    device = args.device
    notes = []
    if device == "cuda" and not torch.cuda.is_available():
        print("kernel_bn_relu: needs a CUDA device (the Triton kernels are GPU kernels); skipped."
              " For a CPU rehearsal: --device cpu --quick")
        return 0
    if device == "cpu":
        if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
            print("kernel_bn_relu --device cpu: triton was imported without TRITON_INTERPRET=1;"
                  " set it before starting python", file=sys.stderr)
            return 2
        os.environ["TRITON_INTERPRET"] = "1"  # before triton is imported (the kernels read it)
        if not args.quick:
            notes.append("--device cpu implies --quick (the interpreter is far too slow at "
                         "batch 512)")
            args.quick = True
    import triton

    if device == "cpu" and interpreter_breaks(triton.__version__, np.__version__):
        print(f"error: triton {triton.__version__}'s interpreter fails with numpy "
              f"{np.__version__} (>= 2.4; 'only 0-dimensional arrays can be converted'): for "
              "the CPU rehearsal pip install 'numpy<2.4' (the GPU does not use the interpreter)",
              file=sys.stderr)
        return 2
    dtypes = args.dtypes or (["bf16", "fp32"] if args.full else ["bf16"])
    batch = args.batch or (2 if args.quick else 512)
    providers = args.providers or (["eager", "triton"] if device == "cpu" else list(PROVIDERS))
    if device == "cpu" and "compile" not in providers:
        notes.append("compile provider skipped on the CPU: a cold torch.compile is 25-28 s per "
                     "graph on 2 cores (pass --providers eager compile triton to include it)")
    # one recompile per shape, dtype and layout: keep them all compiled rather than fall back
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)

    from fastcifar.kernels import bn_relu as K

    timer = make_timer(device, reps=3 if device == "cpu" else 0)
    copy_gbs = copy_bandwidth_gbs(device, timer)
    planned = configurations(dtypes, args.variants, args.full, args.quick, batch)
    meta = {
        "device": device, "triton": triton.__version__,
        "mode": "quick" if args.quick else "full" if args.full else "default",
        "batch": batch, "providers": providers, "budget_s": args.budget_s,
        "copy_GBs": round(copy_gbs, 1),
        "timing": ("triton.testing.do_bench median, ms" if device == "cuda"
                   else "time.perf_counter median of 3 after a warm-up call, ms"),
        "traffic_tensors": {v: sum(K.TRAFFIC[v].values()) for v in K.TRAFFIC},
        "traffic_model": K.TRAFFIC, "notes": notes,
        "planned": [c["config"] for c in planned], "skipped": [],
        "complete": False, "elapsed_s": 0.0,
    }
    columns = ["variant", "dtype", "layout", "shape", *(f"{p}_ms" for p in providers)]
    if "triton" in providers:
        columns += ["triton_GBs", "triton_%copy",
                    *(f"vs_{p}" for p in ("eager", "compile") if p in providers)]
    bench = Bench(NAME, parser.prog, argv, vars(args), columns, meta=meta, out=args.out)
    bench.save()
    for cfg in planned:
        elapsed = time.perf_counter() - start
        if elapsed >= args.budget_s:
            meta["skipped"].append({"config": cfg["config"],
                                    "reason": f"budget of {args.budget_s:g} s spent"})
            continue
        row = {k: cfg[k] for k in ("variant", "dtype", "layout")}
        row["shape"] = "x".join(map(str, cfg["shape"]))
        nbytes = K.traffic_bytes(torch.Size(cfg["shape"]).numel(), DTYPES[cfg["dtype"]].itemsize,
                                 residual=cfg["variant"] == "bn_add_relu")
        for provider in providers:
            fn = setup(cfg, provider, device)
            fn()  # compile and warm up outside the timing
            row[f"{provider}_ms"] = sig(timer(fn), 4)
        if "triton_ms" in row:
            ours = row["triton_ms"]
            row["triton_GBs"] = sig(nbytes / ours / 1e6)
            row["triton_%copy"] = sig(100 * nbytes / ours / 1e6 / copy_gbs)
            for other in ("eager", "compile"):
                if f"{other}_ms" in row:
                    row[f"vs_{other}"] = sig(row[f"{other}_ms"] / ours)
        meta["elapsed_s"] = round(time.perf_counter() - start, 1)
        bench.add(row)
        print(row, flush=True)
    meta["complete"] = not meta["skipped"]
    meta["elapsed_s"] = round(time.perf_counter() - start, 1)
    for note in notes:
        print(f"note: {note}")
    if meta["skipped"]:
        print(f"skipped {len(meta['skipped'])} configurations: the {args.budget_s:g} s "
              "budget was spent")
    env = bench.environment
    return bench.report(f"{env['gpu'] or env['cpu']}, torch {env['torch']}, triton "
                        f"{triton.__version__}; copy bandwidth {copy_gbs:.0f} GB/s")


if __name__ == "__main__":
    sys.exit(main())
