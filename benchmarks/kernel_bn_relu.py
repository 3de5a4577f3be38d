"""Fused BatchNorm+ReLU (and +residual) forward+backward at resnet_final's shapes: eager PyTorch,
torch.compile of eager, and our Triton kernels. CUDA only (on the CPU it says so and exits 0).

    python benchmarks/kernel_bn_relu.py [--batch 512] [--dtypes bf16 fp32] [--out DIR]

Reports the median fwd+bwd time (triton.testing.do_bench, ms), GB/s against the bytes that must
move, and that as a % of this card's copy bandwidth (a large device-to-device copy, measured here).
Bytes that must move, in activation-sized tensors of n elements (a two-pass design: statistics
need the whole batch before anything can be normalised):
    bn_relu:      forward read x twice, write y (3n); backward read dy, x twice, write dx (5n)
    bn_add_relu:  forward + read residual (4n); backward read dy, y, x, write g = d residual,
                  read g, x, write dx (7n)
Writes benchmarks/results/kernel_bn_relu.json (or --out DIR).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a source checkout

import torch  # noqa: E402

from benchmarks._common import environment, print_table, save_result  # noqa: E402

# (channels, H = W) of each ResBlock of resnet_final; both of its BatchNorms see this shape
RESNET_FINAL = [(32, 32), (64, 32), (128, 32), (256, 16), (512, 8)]
DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32}
TRAFFIC = {"bn_relu": 8, "bn_add_relu": 11}  # activation-sized reads + writes, fwd + bwd


def copy_bandwidth_gbs(do_bench) -> float:
    src = torch.empty(1 << 28, dtype=torch.float32, device="cuda")  # 1 GiB, far beyond L2
    dst = torch.empty_like(src)
    ms = do_bench(lambda: dst.copy_(src), quantiles=[0.5])
    return 2 * src.numel() * src.element_size() / ms / 1e6  # read + write


def setup(variant, provider, shape, dtype, channels_last):
    """A closure running one fwd+bwd, for one provider ("eager", "compile" or "triton")."""
    from fastcifar.models.fused import TRITON
    from fastcifar.models.layers import EAGER

    norm = TRITON if provider == "triton" else EAGER
    cls = norm.bn_relu if variant == "bn_relu" else norm.bn_add_relu
    module = cls(shape[1]).cuda()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    make = lambda: torch.randn(shape, device="cuda", dtype=dtype).contiguous(memory_format=fmt)
    x = make().requires_grad_()
    inputs = [x, make().requires_grad_()] if variant == "bn_add_relu" else [x]
    dy = make()
    # static shapes: one specialised graph per configuration, the best case for Inductor
    run = torch.compile(module, fullgraph=True, dynamic=False) if provider == "compile" else module
    leaves = [*inputs, module.weight, module.bias]
    return lambda: torch.autograd.grad(run(*inputs), leaves, dy)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=list(DTYPES))
    parser.add_argument("--variants", nargs="+", choices=list(TRAFFIC), default=list(TRAFFIC))
    parser.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("kernel_bn_relu: needs a CUDA device (the Triton kernels are GPU kernels); skipped")
        return 0
    import triton
    from triton.testing import do_bench

    # one recompile per shape, dtype and layout: keep them all compiled rather than fall back
    for name in ("cache_size_limit", "recompile_limit"):
        if hasattr(torch._dynamo.config, name):
            setattr(torch._dynamo.config, name, 256)
    copy_gbs = copy_bandwidth_gbs(do_bench)
    rows = []
    for dtype_name in args.dtypes:
        for channels_last in (True, False):
            for channels, hw in RESNET_FINAL:
                shape = (args.batch, channels, hw, hw)
                for variant in args.variants:
                    row = {"variant": variant, "dtype": dtype_name,
                           "shape": "x".join(map(str, shape)),
                           "layout": "channels_last" if channels_last else "nchw"}
                    itemsize = DTYPES[dtype_name].itemsize
                    nbytes = TRAFFIC[variant] * torch.Size(shape).numel() * itemsize
                    for provider in ("eager", "compile", "triton"):
                        fn = setup(variant, provider, shape, DTYPES[dtype_name], channels_last)
                        fn()  # compile and warm up outside the timing
                        row[f"{provider}_ms"] = round(do_bench(fn, quantiles=[0.5]), 4)
                    ours = row["triton_ms"]
                    row["triton_GBs"] = round(nbytes / ours / 1e6, 1)
                    row["triton_%copy"] = round(100 * nbytes / ours / 1e6 / copy_gbs, 1)
                    row["vs_eager"] = round(row["eager_ms"] / ours, 2)
                    row["vs_compile"] = round(row["compile_ms"] / ours, 2)
                    rows.append(row)
                    print(row, flush=True)
    env = environment()
    print(f"\n{env['gpu']}, torch {env['torch']}; copy bandwidth {copy_gbs:.0f} GB/s")
    print_table(rows, list(rows[0]))
    payload = {"triton": triton.__version__, "batch": args.batch, "copy_GBs": round(copy_gbs, 1),
               "rows": rows, "traffic_tensors": TRAFFIC,
               "timing": "triton.testing.do_bench median, ms"}
    print(f"saved {save_result('kernel_bn_relu', payload, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
