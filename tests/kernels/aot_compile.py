"""Compile every kernel specialisation the launchers pick at resnet_final's shapes for a GPU
target, without a GPU (Triton ships ptxas): catches what the interpreter cannot (types of loop
variables, layouts, register limits). Run by test_bn_relu_compiles.py without TRITON_INTERPRET.

    python tests/kernels/aot_compile.py [sm ...]      # default: 90 (H100/H200)

bf16 only and two shapes (the widest and the narrowest H*W), to stay near 10 s on 2 cores.
"""

import sys

import torch
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from fastcifar.kernels import bn_relu as K

SCALARS_FP32 = {"eps", "momentum", "inv_count"}
FLAGS = {"has_res", "from_var", "update_running", "recompute_mask"}  # runtime bools
SHAPES = [(512, 128, 32, 32), (512, 512, 8, 8)]


def signature(kernel, data_type: str, constexprs: dict) -> dict:
    """Pointers to activations get ``data_type``; per-channel buffers are fp32."""
    activations = {"x_ptr", "y_ptr", "res_ptr", "dy_ptr", "g_ptr", "dx_ptr"}
    sig = {}
    for name in kernel.arg_names:
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = "*" + (data_type if name in activations else "fp32")
        elif name in FLAGS:
            sig[name] = "u1"
        else:
            sig[name] = "fp32" if name in SCALARS_FP32 else "i32"
    return sig


def specialisations():
    for shape in SHAPES:
        for fmt in (torch.contiguous_format, torch.channels_last):
            x = torch.empty(shape, device="meta").contiguous(memory_format=fmt)
            t = K.choose_tiles(K.view3d(x), plan="cuda")
            tile = dict(BR=t.block_r, BC=t.block_c, BK=t.block_k)
            # the variant flags are runtime bools: one compile serves relu, add_relu and eval
            for kernel in (K._stats_partial_kernel, K._apply_kernel, K._bwd_reduce_kernel,
                           K._bwd_dx_kernel):
                yield kernel, tile, t.num_warps
    partials = dict(BS=K._PART_BS, BC=K._PART_BC)
    yield K._stats_finalize_kernel, partials, 4
    yield K._sum_partials_kernel, partials, 4


def main(archs) -> int:
    assert not K.INTERPRETED, "run without TRITON_INTERPRET"
    seen = set()
    for arch in archs:
        for kernel, consts, warps in specialisations():
            for data_type in ("bf16",):
                key = (arch, kernel.__name__, tuple(sorted(consts.items())), warps, data_type)
                if key in seen:
                    continue
                seen.add(key)
                src = ASTSource(kernel, signature(kernel, data_type, consts), constexprs=consts)
                compiled = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                                          options={"num_warps": warps})
                assert compiled.asm.get("cubin"), key
    print(f"compiled {len(seen)} specialisations")
    return 0


if __name__ == "__main__":
    sys.exit(main([int(a) for a in sys.argv[1:]] or [90]))
