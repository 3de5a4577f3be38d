"""The Triton BatchNorm+ReLU kernels, through their launchers, against a float64 reference.

Sizes stay small on the CPU (the interpreter pays per program), but the tile plan a GPU runs
(``plan="cuda"``: one channel a program for NCHW, hundreds of reduction splits for
channels_last) runs here too, at CIFAR's 32x32 and 8x8. The fused modules are tested in
test_fused.py.
"""

import pytest
import torch

triton = pytest.importorskip("triton")
import triton.language as tl  # noqa: E402
from kernel_testing import (  # noqa: E402
    DEVICE,
    DTYPES,
    STAT_TOL,
    TOL,
    check_train_step,
    close,
    layout,
    make_inputs,
    needs_kernels,
    poison_buffers,  # noqa: F401
    reference64,
)

from fastcifar.kernels import bn_relu as K  # noqa: E402
from fastcifar.kernels import reference as R  # noqa: E402

pytestmark = [needs_kernels, pytest.mark.usefixtures("poison_buffers")]

# (N, C, H, W): odd sizes; C not a power of two; N*H*W not a multiple of any block size;
# resnet_final's widest channel count at a tiny spatial size; H = W = 1 (both layouts coincide).
# On a GPU each shape class compiles its own specialisations (see kernel_testing): there the
# matrix keeps the odd shape, whose tiles most other tests share, and test_cuda_tile_plan_...
# covers the power-of-two channel counts.
# fp16 runs there only in test_fp16_accumulates_in_fp32_over_many_values (the GPU trains in bf16).
ON_GPU_PLAN = K.DEFAULT_PLAN == "cuda"
SHAPES = [(3, 37, 5, 7)] if ON_GPU_PLAN else [(3, 37, 5, 7), (2, 512, 2, 2), (5, 3, 1, 1)]
MATRIX_DTYPES = [torch.float32, torch.bfloat16] if ON_GPU_PLAN else DTYPES


@pytest.mark.parametrize("dtype", MATRIX_DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_forward_and_backward_match_float64(shape, channels_last, dtype, residual):
    x, weight, bias, res, running = make_inputs(shape, dtype, channels_last, residual)
    dy = torch.randn(shape, device=DEVICE).to(dtype)
    check_train_step(x, weight, bias, res, running, dy)


# Tiny tiles force what the default (big) tiles skip on these small inputs: several programs
# per channel (partial statistics merged in the finalize kernels), several loop iterations per
# program, a partial last row block, partial channel blocks and H*W split over blocks.
@pytest.mark.parametrize("channels_last, tiles", [
    (False, K.Tiles(block_r=2, block_c=4, block_k=8, splits=2)),
    (True, K.Tiles(block_r=2, block_c=4, block_k=1, splits=3)),
], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_small_tiles_split_and_loop(channels_last, tiles, residual):
    shape = (3, 5, 5, 7)
    x, weight, bias, res, running = make_inputs(shape, torch.float32, channels_last, residual)
    check_train_step(x, weight, bias, res, running, torch.randn(shape, device=DEVICE),
                     tiles=tiles)


# More than 64 splits (the finalize and partial-sum kernels merge 64 at a time, so their loops
# run twice) and a row count the splits do not divide (the last program owns fewer rows and must
# neither read nor write past them). Rows of 2: the interpreter's cost is per program.
@pytest.mark.parametrize("shape, channels_last, residual, tiles", [
    # asks for 70 splits; 66 of 2 rows cover the 131: the launchers must use the count they
    # computed, not the one asked for
    ((131, 3, 2, 3), False, True, K.Tiles(block_r=2, block_c=4, block_k=8, splits=70)),
    ((1, 8, 7, 19), True, False, K.Tiles(block_r=2, block_c=4, block_k=1, splits=67)),
], ids=["nchw-add_relu", "channels_last-relu"])
def test_many_splits_uneven_rows(shape, channels_last, residual, tiles):
    x, weight, bias, res, running = make_inputs(shape, torch.float32, channels_last, residual)
    v = K.view3d(x)
    rows, splits = K._rows_per_split(v, tiles)
    assert splits > 64 and v.R % rows != 0, "the shape no longer tests what it says"
    check_train_step(x, weight, bias, res, running, torch.randn(shape, device=DEVICE),
                     tiles=tiles)


# The tiles the launchers choose on a GPU, run here: CIFAR's spatial sizes, resnet_final's
# channel counts, one channel a program for NCHW, 64 channels a tile for channels_last. bf16
# channels_last is what the GPU trains in; NCHW in fp32 (and batch 2) shares its compiles with
# the resnet_final test in test_fused.py.
@pytest.mark.parametrize("shape, channels_last, residual, dtype", [
    ((2, 64, 32, 32), False, False, torch.float32), ((2, 64, 32, 32), True, True, torch.bfloat16),
    ((2, 64, 8, 8), False, True, torch.float32), ((4, 64, 8, 8), True, False, torch.bfloat16),
], ids=["nchw-32x32", "channels_last-32x32-add", "nchw-8x8-add", "channels_last-8x8"])
def test_cuda_tile_plan_at_cifar_shapes(shape, channels_last, residual, dtype):
    x, weight, bias, res, running = make_inputs(shape, dtype, channels_last, residual)
    tiles = K.choose_tiles(K.view3d(x), plan="cuda")
    assert tiles.block_r * tiles.block_c * tiles.block_k <= 4096
    if not channels_last:
        assert tiles.block_c == 1  # one channel a program
    check_train_step(x, weight, bias, res, running, torch.randn(shape, device=DEVICE).to(dtype),
                     tiles=tiles)


def test_fp16_accumulates_in_fp32_over_many_values():
    # 131072 values a channel about 30, summed by one program over 16 tiles of the GPU's plan:
    # an fp16 sum overflows within one 4096-value tile (max 65504), and an fp16 running sum of
    # the channel would stop moving long before its end; fp32 accumulation reaches fp32 accuracy
    shape = (2, 1, 256, 256)
    x, weight, bias, _, running = make_inputs(shape, torch.float16, False, False)
    x = (x.float() + 28).half()  # make_inputs' mean is 2
    tiles = K.choose_tiles(K.view3d(x), plan="cuda")
    assert x[0, 0].numel() // tiles.block_k >= 16
    check_train_step(x, weight, bias, None, running,
                     torch.randn(shape, device=DEVICE).to(torch.float16), tiles=tiles)


@pytest.mark.parametrize("x_channels_last", [False, True], ids=["nchw_x", "channels_last_x"])
def test_residual_and_grad_in_another_memory_format(x_channels_last):
    # the residual and the upstream grad arrive in the other layout; the kernels index both
    # with x's strides, so the launchers must convert them
    shape = (3, 37, 5, 7)
    x, weight, bias, res, running = make_inputs(shape, torch.float32, x_channels_last, True,
                                                res_channels_last=not x_channels_last)
    dy = torch.randn(shape, device=DEVICE).contiguous(memory_format=layout(not x_channels_last))
    check_train_step(x, weight, bias, res, running, dy)


def _with_small_channel(shape, std, channels_last):
    """Inputs whose channel 1 has standard deviation ``std`` (variance near eps) about 0."""
    x, weight, bias, res, running = make_inputs(shape, torch.float32, channels_last, True)
    x = x.clone()
    x[:, 1] = std * torch.randn_like(x[:, 1])
    running[1][1] = std * std  # eval: a running variance near eps too
    return x, weight, bias, res, running


# eps and momentum other than the defaults, and a channel whose variance is near eps: with
# variances ~9 (the other channels) where eps sits in invstd = rsqrt(var + eps) cannot show.
@pytest.mark.parametrize("eps, momentum, std", [(1e-5, 0.1, 3e-3), (1e-3, 0.3, 3e-2)],
                         ids=["default-eps", "eps1e-3-momentum0.3"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
def test_eps_momentum_and_variance_near_eps(eps, momentum, std, channels_last):
    shape = (3, 37, 5, 7)
    x, weight, bias, res, running = _with_small_channel(shape, std, channels_last)
    # that channel's invstd (~230) multiplies fp32 rounding in dx 230-fold: 1e-4 absolute
    check_train_step(x, weight, bias, res, running, torch.randn(shape, device=DEVICE),
                     momentum=momentum, eps=eps, tol=(1e-4, 1e-5))
    y = K.bn_relu_eval(x, weight, bias, *running, res, eps)
    rm, rv = (t.double() for t in running)
    ref = R.bn_relu(x.double(), weight.double(), bias.double(), rm, rv, False, momentum, eps,
                    res.double())
    close(y, ref, TOL[torch.float32], "eval output")


@pytest.mark.parametrize("dtype", MATRIX_DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_eval_uses_running_stats(channels_last, dtype, residual):
    x, weight, bias, res, running = make_inputs((3, 37, 5, 7), dtype, channels_last, residual)
    y = K.bn_relu_eval(x, weight, bias, *running, res, 1e-5)
    rm, rv = (t.double() for t in running)
    ref = R.bn_relu(x.double(), weight.double(), bias.double(), rm, rv, False, 0.1, 1e-5,
                    res.double() if residual else None)
    assert y.stride() == x.stride()
    close(y, ref, TOL[dtype], "eval output")


def test_numerically_sound_variance():
    # a large mean and a small spread: E[x^2] - E[x]^2 in fp32 would lose every digit here
    x = (1000 + 0.01 * torch.randn(4, 3, 7, 9, device=DEVICE, dtype=torch.float64)).float()
    ones, zeros = torch.ones(3, device=DEVICE), torch.zeros(3, device=DEVICE)
    _, mean, invstd, _, _ = K.bn_relu_forward(x, ones, zeros)
    _, ref_mean, ref_invstd, _, _ = reference64(x, ones, zeros, None, (zeros, ones),
                                                torch.ones_like(x))
    close(mean, ref_mean, STAT_TOL, "mean")
    close(invstd, ref_invstd, (0, 1e-3), "invstd")


@triton.jit
def _offsets_kernel(out_ptr, r0, s_r, BR: tl.constexpr):
    offs, _ = K._tile(r0, 0, 0, r0 + BR, 1, 1, s_r, 1, BR, 1, 1)
    tl.store(out_ptr + tl.arange(0, BR)[:, None, None], offs)


def test_tile_offsets_do_not_overflow_int32():
    # an activation past 2**31 elements (batch 512 x 512 channels x 128 x 64) needs int64
    # offsets; too big to allocate here, so check the offset arithmetic itself
    r0, s_r, rows = 1 << 20, 1 << 12, 4
    out = torch.zeros(rows, dtype=torch.int64, device=DEVICE)
    _offsets_kernel[(1,)](out, r0, s_r, BR=rows)
    want = (torch.arange(rows, dtype=torch.int64) + r0) * s_r
    assert out.cpu().tolist() == want.tolist()


def test_launcher_rejects_bad_input():
    w = torch.ones(4, device=DEVICE)
    x = torch.randn(2, 4, 3, 3, device=DEVICE)
    with pytest.raises(ValueError, match="4-D"):
        K.bn_relu_forward(torch.randn(2, 4, 3, device=DEVICE), w, w)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        K.bn_relu_forward(torch.randn(1, 4, 1, 1, device=DEVICE), w, w)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        K.bn_relu_forward(x, w[:3], w)
    with pytest.raises(ValueError, match="NCHW-contiguous or channels_last"):
        K.bn_relu_forward(torch.randn(2, 3, 4, 3, device=DEVICE).transpose(1, 2), w, w)
    with pytest.raises(ValueError, match="unsupported dtype torch.float64"):
        K.bn_relu_forward(x.double(), w, w)  # the modules send fp64 to the reference instead
    with pytest.raises(ValueError, match="must match x"):
        K.bn_relu_forward(x, w, w, residual=x.half())
    with pytest.raises(ValueError, match="unknown tile plan"):
        K.choose_tiles(K.view3d(x), plan="tpu")


# --------------------------------------------------------------------------------------------
# Tile plans and the traffic model (plain Python: no kernel runs)
# --------------------------------------------------------------------------------------------


def _view(shape, channels_last):
    return K.view3d(torch.empty(shape, device="meta").contiguous(memory_format=layout(
        channels_last)))


def test_cuda_plan_at_resnet_final_batch_512():
    for (c, hw), channels_last in [((64, 32), True), ((512, 8), True), ((128, 32), False)]:
        v = _view((512, c, hw, hw), channels_last)
        t = K.choose_tiles(v, plan="cuda")
        rows, splits = K._rows_per_split(v, t)
        assert t.block_r * t.block_c * t.block_k <= 4096
        assert rows % t.block_r == 0 and (splits - 1) * rows < v.R <= splits * rows
        if channels_last:  # what the CPU tests above force: hundreds of splits
            assert splits >= 256 and t.block_k == 1
        else:
            assert t.block_c == 1 and t.block_k == hw * hw
    # the reductions aim at 8 programs a streaming multiprocessor
    v = _view((512, 64, 32, 32), True)
    assert K.choose_tiles(v, plan="cuda", sm_count=66).splits * 2 == K.choose_tiles(
        v, plan="cuda", sm_count=132).splits == 8 * 132


def test_interpreter_plan_uses_few_programs():
    v = _view((4, 64, 32, 32), False)
    t = K.choose_tiles(v, plan="interpret")
    assert t.splits == 1 and t.block_c > 1  # many channels a program: the interpreter pays per
    assert t.block_r * t.block_c * t.block_k == 1 << 16


def test_traffic_model():
    n, fp16 = 1000, 2
    assert K.traffic_bytes(n, fp16) == 8 * n * fp16  # 3n forward + 5n backward
    assert K.traffic_bytes(n, fp16, residual=True) == 11 * n * fp16
    assert K.traffic_bytes(n, 4, passes=("forward",)) == 3 * n * 4
