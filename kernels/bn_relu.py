"""Triton kernels for training-mode BatchNorm2d + ReLU (optionally + residual add), and launchers.

Layout trick: both memory layouts are one 3-D view ``(R, C, K)`` with strides ``(s_r, s_c, 1)``:

    NCHW-contiguous   R = N,     K = H*W, s_r = C*H*W, s_c = H*W
    channels_last     R = N*H*W, K = 1,   s_r = C,     s_c = 1

so every kernel reads tiles ``[BR, BC, BK]`` (a layout picks BC = 1 or BK = 1) with unit stride
along the last non-trivial axis, and reduces over axes 0 and 2 for per-channel statistics.
All arithmetic is fp32: values are converted right after each load and back right before each
store (fp16/bf16 storage, fp32 maths; Triton's interpreter also gets bf16 arithmetic wrong).

Passes (each kernel reads a whole activation at most once):
    forward:  stats partials -> finalize (mean, invstd, running stats) -> apply (+res, ReLU)
    backward: reduce (mask; sum g, sum g*xhat; writes g = d residual) -> finalize -> dx
The reductions split the rows of each channel over ``splits`` programs and combine partial
(count, mean, M2) with Chan's parallel formula: one read, numerically like two-pass variance.

Memory traffic (what bounds these kernels), in activation-sized tensors of n elements; the
per-channel vectors and (splits, C) partials are negligible beside them:

    pass       bn_relu                              bn_add_relu
    forward    3n: read x (stats), read x, write y  4n: the same + read the residual
    backward   5n: read dy, x (sums); read dy, x,   7n: read dy, x, y, write g = d residual (sums);
               write dx                             read g, x, write dx

Statistics need the whole batch before anything can be normalised, so x is read twice: 3n
forward is the floor of a two-pass design. ``traffic_bytes`` turns this into bytes (the benchmark
reports GB/s against it).
"""

import functools
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

# --------------------------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------------------------


@triton.jit
def _tile(r0, k0, pid_c, R, C, K, s_r, s_c, BR: tl.constexpr, BC: tl.constexpr,
          BK: tl.constexpr):
    """Offsets and mask of the tile [BR, BC, BK] whose first row is r0 and first column k0."""
    r = r0 + tl.arange(0, BR)[:, None, None]
    c = pid_c * BC + tl.arange(0, BC)[None, :, None]
    k = k0 + tl.arange(0, BK)[None, None, :]
    offs = r.to(tl.int64) * s_r + c * s_c + k  # int64: past 2**31 elements, int32 wraps
    return offs, (r < R) & (c < C) & (k < K)


@triton.jit
def _channel_sum(v):
    """[BR, BC, BK] -> [BC]"""
    return tl.sum(tl.sum(v, axis=2), axis=0)


# Compile-time (tl.constexpr) are only the tile sizes. The variant flags are runtime 0/1 ints
# (one uniform branch a program: free beside the memory traffic) and neither they nor the row
# counts are specialised on (the counts only bound loops and row masks): each distinct constexpr
# or int class (1, multiple of 16, other) is a separate GPU compile, and the tests would compile
# hundreds. Ints, not bools: triton 3.6's interpreter (the GPU machine's version) cannot take a
# bool argument (int1), and an unspecialised int costs the compiled kernel nothing more.
@triton.jit(do_not_specialize=["R", "rows_per_split"])
def _stats_partial_kernel(
    x_ptr,  # (R, C, K) strided, any float dtype
    pmean_ptr, pm2_ptr, pcount_ptr,  # (S, C) fp32: per-split mean, M2, count
    R, C, K, s_r, s_c, rows_per_split,
    BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    pid_c, pid_s = tl.program_id(0), tl.program_id(1)
    r_lo = pid_s * rows_per_split
    r_hi = tl.minimum(r_lo + rows_per_split, R)
    count = tl.zeros([BC], dtype=tl.float32)  # the same for every channel; a vector to store
    mean = tl.zeros([BC], dtype=tl.float32)
    m2 = tl.zeros([BC], dtype=tl.float32)
    for r0 in range(r_lo, r_hi, BR):
        for k0 in range(0, K, BK):
            offs, mask = _tile(r0, k0, pid_c, r_hi, C, K, s_r, s_c, BR, BC, BK)
            x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            n_b = (tl.minimum(r_hi - r0, BR) * tl.minimum(K - k0, BK)).to(tl.float32)
            # the block's mean and M2 about it; a shifted second sum corrects the rounding of
            # the first mean (an fp32 sum of values far from 0 is off by many of their ulps)
            shift = _channel_sum(x) / n_b
            d = tl.where(mask, x - shift[None, :, None], 0.0)
            sum_d = _channel_sum(d)
            mean_b = shift + sum_d / n_b
            m2_b = _channel_sum(d * d) - sum_d * sum_d / n_b
            # Chan et al.: merge (count, mean, m2) with this block's (n_b, mean_b, m2_b)
            delta = mean_b - mean
            total = count + n_b
            mean += delta * (n_b / total)
            m2 += m2_b + delta * delta * (count * n_b / total)
            count = total
    c = pid_c * BC + tl.arange(0, BC)
    out = pid_s * C + c
    tl.store(pmean_ptr + out, mean, mask=c < C)
    tl.store(pm2_ptr + out, m2, mask=c < C)
    tl.store(pcount_ptr + out, count, mask=c < C)


@triton.jit(do_not_specialize=["S", "update_running"])
def _stats_finalize_kernel(
    pmean_ptr, pm2_ptr, pcount_ptr,  # (S, C) fp32 partials
    mean_ptr, invstd_ptr,  # (C,) fp32 outputs, saved for backward
    rmean_ptr, rvar_ptr, new_rmean_ptr, new_rvar_ptr,  # (C,) running stats: old in, new out
    S, C, eps, momentum, update_running,
    BS: tl.constexpr, BC: tl.constexpr,
):
    c = tl.program_id(0) * BC + tl.arange(0, BC)
    c_ok = c < C
    count = tl.zeros([BC], dtype=tl.float32)
    mean = tl.zeros([BC], dtype=tl.float32)
    m2 = tl.zeros([BC], dtype=tl.float32)
    for s0 in range(0, S, BS):
        s = s0 + tl.arange(0, BS)[:, None]
        mask = (s < S) & c_ok[None, :]
        n_p = tl.load(pcount_ptr + s * C + c[None, :], mask=mask, other=0.0)
        mean_p = tl.load(pmean_ptr + s * C + c[None, :], mask=mask, other=0.0)
        m2_p = tl.load(pm2_ptr + s * C + c[None, :], mask=mask, other=0.0)
        # merge BS partials at once, then that block into the running total (Chan again)
        n_b = tl.sum(n_p, axis=0)
        mean_b = tl.sum(n_p * mean_p, axis=0) / tl.maximum(n_b, 1.0)
        dev = mean_p - mean_b[None, :]
        m2_b = tl.sum(m2_p + n_p * dev * dev, axis=0)
        delta = mean_b - mean
        total = tl.maximum(count + n_b, 1.0)
        mean += delta * (n_b / total)
        m2 += m2_b + delta * delta * (count * n_b / total)
        count += n_b
    count = tl.maximum(count, 1.0)  # lanes past C have none; keeps their 0/0 out of the maths
    var = m2 / count  # biased: what training-mode BatchNorm normalises with
    tl.store(mean_ptr + c, mean, mask=c_ok)
    tl.store(invstd_ptr + c, 1.0 / tl.sqrt_rn(var + eps), mask=c_ok)
    if update_running:  # nn.BatchNorm2d: x_new = (1 - momentum) * x + momentum * batch (unbiased)
        rm = tl.load(rmean_ptr + c, mask=c_ok).to(tl.float32)
        rv = tl.load(rvar_ptr + c, mask=c_ok).to(tl.float32)
        unbiased = m2 / tl.maximum(count - 1.0, 1.0)  # the launcher ensures count >= 2
        rm = (1.0 - momentum) * rm + momentum * mean
        rv = (1.0 - momentum) * rv + momentum * unbiased
        tl.store(new_rmean_ptr + c, rm.to(new_rmean_ptr.dtype.element_ty), mask=c_ok)
        tl.store(new_rvar_ptr + c, rv.to(new_rvar_ptr.dtype.element_ty), mask=c_ok)


@triton.jit(do_not_specialize=["R", "has_res", "from_var"])
def _apply_kernel(
    x_ptr, res_ptr, y_ptr,  # (R, C, K) strided, same layout and dtype
    mean_ptr, inv_ptr,  # (C,): batch mean and invstd, or running mean and var if from_var
    w_ptr, b_ptr,  # (C,) affine parameters
    R, C, K, s_r, s_c, eps, has_res, from_var,
    BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    """y = relu((x - mean) * invstd * w + b [+ res]): one elementwise pass, one tile a program."""
    pid_c = tl.program_id(1)
    offs, mask = _tile(tl.program_id(0) * BR, tl.program_id(2) * BK, pid_c, R, C, K, s_r, s_c,
                       BR, BC, BK)
    c = pid_c * BC + tl.arange(0, BC)
    mean = tl.load(mean_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    inv = tl.load(inv_ptr + c, mask=c < C, other=1.0).to(tl.float32)
    if from_var:  # eval mode: normalise with the running variance
        inv = 1.0 / tl.sqrt_rn(inv + eps)
    scale = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32) * inv
    shift = tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    z = (x - mean[None, :, None]) * scale[None, :, None] + shift[None, :, None]
    if has_res:
        z += tl.load(res_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + offs, tl.maximum(z, 0.0).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit(do_not_specialize=["R", "rows_per_split", "has_res"])
def _bwd_reduce_kernel(
    dy_ptr, x_ptr, y_ptr, g_ptr,  # (R, C, K) strided; y read and g written only if has_res
    mean_ptr, inv_ptr, w_ptr, b_ptr,  # (C,)
    psum_g_ptr, psum_gx_ptr,  # (S, C) fp32 partial sums of g and g * xhat
    R, C, K, s_r, s_c, rows_per_split, has_res,
    BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    """g = dy * (output > 0); sums g and g * xhat per channel (dbias and dweight)."""
    pid_c, pid_s = tl.program_id(0), tl.program_id(1)
    c = pid_c * BC + tl.arange(0, BC)
    mean = tl.load(mean_ptr + c, mask=c < C, other=0.0)[None, :, None]
    inv = tl.load(inv_ptr + c, mask=c < C, other=0.0)[None, :, None]
    w = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32)[None, :, None]
    b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)[None, :, None]
    r_lo = pid_s * rows_per_split
    r_hi = tl.minimum(r_lo + rows_per_split, R)
    sum_g = tl.zeros([BC], dtype=tl.float32)
    sum_gx = tl.zeros([BC], dtype=tl.float32)
    for r0 in range(r_lo, r_hi, BR):
        for k0 in range(0, K, BK):
            offs, mask = _tile(r0, k0, pid_c, r_hi, C, K, s_r, s_c, BR, BC, BK)
            xhat = (tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32) - mean) * inv
            if has_res:  # the residual is not saved: the output tells where ReLU passed
                keep = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32) > 0.0
            else:  # recompute the pre-activation exactly as _apply_kernel does
                keep = xhat * w + b > 0.0
            dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
            g = tl.where(keep & mask, dy, 0.0)
            if has_res:  # d residual = g; the dx pass then reads g instead of dy and y
                tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=mask)
            sum_g += _channel_sum(g)
            sum_gx += _channel_sum(g * xhat)
    out = pid_s * C + c
    tl.store(psum_g_ptr + out, sum_g, mask=c < C)
    tl.store(psum_gx_ptr + out, sum_gx, mask=c < C)


@triton.jit(do_not_specialize=["S"])
def _sum_partials_kernel(
    pa_ptr, pb_ptr,  # (S, C) fp32
    a_ptr, b_ptr,  # (C,) fp32: column sums
    S, C, BS: tl.constexpr, BC: tl.constexpr,
):
    c = tl.program_id(0) * BC + tl.arange(0, BC)
    a = tl.zeros([BC], dtype=tl.float32)
    b = tl.zeros([BC], dtype=tl.float32)
    for s0 in range(0, S, BS):
        s = s0 + tl.arange(0, BS)[:, None]
        mask = (s < S) & (c < C)[None, :]
        a += tl.sum(tl.load(pa_ptr + s * C + c[None, :], mask=mask, other=0.0), axis=0)
        b += tl.sum(tl.load(pb_ptr + s * C + c[None, :], mask=mask, other=0.0), axis=0)
    tl.store(a_ptr + c, a, mask=c < C)
    tl.store(b_ptr + c, b, mask=c < C)


@triton.jit(do_not_specialize=["R", "recompute_mask"])
def _bwd_dx_kernel(
    g_ptr, x_ptr, dx_ptr,  # (R, C, K) strided; g is dy (mask recomputed) or the masked grad
    mean_ptr, inv_ptr, w_ptr, b_ptr, sum_g_ptr, sum_gx_ptr,  # (C,)
    R, C, K, s_r, s_c, inv_count, recompute_mask,
    BR: tl.constexpr, BC: tl.constexpr, BK: tl.constexpr,
):
    """dx = w * invstd * (g - mean(g) - xhat * mean(g * xhat)), means over N, H, W."""
    pid_c = tl.program_id(1)
    offs, mask = _tile(tl.program_id(0) * BR, tl.program_id(2) * BK, pid_c, R, C, K, s_r, s_c,
                       BR, BC, BK)
    c = pid_c * BC + tl.arange(0, BC)
    mean = tl.load(mean_ptr + c, mask=c < C, other=0.0)[None, :, None]
    inv = tl.load(inv_ptr + c, mask=c < C, other=0.0)[None, :, None]
    w = tl.load(w_ptr + c, mask=c < C, other=0.0).to(tl.float32)[None, :, None]
    mean_g = tl.load(sum_g_ptr + c, mask=c < C, other=0.0)[None, :, None] * inv_count
    mean_gx = tl.load(sum_gx_ptr + c, mask=c < C, other=0.0)[None, :, None] * inv_count
    xhat = (tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32) - mean) * inv
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if recompute_mask:  # g is dy: apply the ReLU mask as _bwd_reduce_kernel did
        b = tl.load(b_ptr + c, mask=c < C, other=0.0).to(tl.float32)[None, :, None]
        g = tl.where(xhat * w + b > 0.0, g, 0.0)
    dx = (w * inv) * (g - mean_g - xhat * mean_gx)
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)


# True when TRITON_INTERPRET=1 was set before this module was imported: the kernels then run on
# CPU tensors (slowly; for tests). Triton decides this once, when @triton.jit runs.
INTERPRETED = type(_apply_kernel).__name__ == "InterpretedFunction"


# --------------------------------------------------------------------------------------------
# Launchers: validate, choose tiles, allocate, launch
# --------------------------------------------------------------------------------------------

# Every buffer the launchers allocate comes from these two, so that tests can fill them with NaN
# first: an element a kernel forgot to write then shows.
_empty, _empty_like = torch.empty, torch.empty_like


# activation-sized tensors read + written, per variant and pass (module docstring's table)
TRAFFIC = {
    "bn_relu": {"forward": 3, "backward": 5},
    "bn_add_relu": {"forward": 4, "backward": 7},
}


def traffic_bytes(numel: int, itemsize: int, residual: bool = False,
                  passes: tuple[str, ...] = ("forward", "backward")) -> int:
    """Bytes that must move for ``passes`` over an activation of ``numel`` elements."""
    per_pass = TRAFFIC["bn_add_relu" if residual else "bn_relu"]
    return sum(per_pass[p] for p in passes) * numel * itemsize


# The dtypes the kernels take (fp32 maths whatever the storage); the modules send others (fp64)
# to the reference, as nn.BatchNorm2d would compute them.
DTYPES = (torch.float32, torch.float16, torch.bfloat16)


@dataclass(frozen=True)
class Tiles:
    """Tile sizes (powers of two) and how many programs split each channel's rows."""

    block_r: int
    block_c: int
    block_k: int
    splits: int  # programs per channel block in the reductions (1..ceil(R / block_r))
    num_warps: int = 4


@dataclass(frozen=True)
class View3d:
    """x as (R, C, K) with strides (s_r, s_c, 1); see the module docstring."""

    R: int
    C: int
    K: int
    s_r: int
    s_c: int
    channels_last: bool

    @property
    def count(self) -> int:  # values per channel, N * H * W
        return self.R * self.K


def view3d(x: torch.Tensor) -> View3d:
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D (N, C, H, W) tensor, got shape {tuple(x.shape)}")
    # plain ints: tile choice needs concrete sizes (under torch.compile with dynamic shapes this
    # specialises on them, one compiled graph per size)
    n, c, h, w = (int(s) for s in x.shape)
    if x.is_contiguous():
        return View3d(n, c, h * w, c * h * w, h * w, channels_last=False)
    if x.is_contiguous(memory_format=torch.channels_last):
        return View3d(n * h * w, c, 1, c, 1, channels_last=True)
    raise ValueError(f"expected NCHW-contiguous or channels_last, got strides {x.stride()}")


def _same_layout(t: torch.Tensor, v: View3d) -> torch.Tensor:
    fmt = torch.channels_last if v.channels_last else torch.contiguous_format
    return t.contiguous(memory_format=fmt)


# "cuda": what a GPU runs (4096-element tiles, one channel a program for NCHW, ~8 programs an SM
# in the reductions); "interpret": big tiles and few programs, because the interpreter pays per
# program. Tests pass plan="cuda" to run the GPU's tiles on the CPU; conftest may change the
# default.
PLANS = ("cuda", "interpret")
DEFAULT_PLAN = "interpret" if INTERPRETED else "cuda"
# planning for a GPU from the CPU (a test forcing plan="cuda"): an H100 or H200 (sm_90, 132 SMs)
DEFAULT_SM_COUNT = 132


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def sm_count_of(x: torch.Tensor) -> int | None:
    """Streaming multiprocessors of x's GPU (None on the CPU)."""
    if not x.is_cuda:
        return None
    return _sm_count(x.device.index if x.device.index is not None else
                     torch.cuda.current_device())


def choose_tiles(v: View3d, max_tile: int | None = None, programs: int | None = None,
                 plan: str | None = None, sm_count: int | None = None) -> Tiles:
    """About ``max_tile`` elements a tile; reductions split rows to reach ~``programs`` programs.

    ``plan`` is "cuda" or "interpret" (default: how the kernels were imported). On "cuda" the
    reductions aim at 8 programs per streaming multiprocessor (``sm_count``, default an
    H100's or H200's 132): 32-64 warps an SM in flight, so each has other work while its
    loads wait on memory.
    """
    plan = plan or DEFAULT_PLAN
    if plan not in PLANS:
        raise ValueError(f"unknown tile plan {plan!r}; choose one of: {', '.join(PLANS)}")
    gpu = plan == "cuda"
    max_tile = max_tile or (4096 if gpu else 1 << 16)
    programs = programs or (8 * (sm_count or DEFAULT_SM_COUNT) if gpu else 1)
    if v.K == 1:  # channels_last: channels are contiguous
        bc, bi = min(triton.next_power_of_2(v.C), 128), 1
    else:  # NCHW: H*W contiguous; on a GPU one channel a program, interpreted as few as can be
        bi = min(triton.next_power_of_2(v.K), max_tile)
        bc = 1 if gpu else min(triton.next_power_of_2(v.C), max_tile // bi)
    bo = max(1, min(max_tile // (bc * bi), triton.next_power_of_2(v.R)))
    c_blocks = triton.cdiv(v.C, bc)
    splits = max(1, min(triton.cdiv(programs, c_blocks), triton.cdiv(v.R, bo)))
    return Tiles(bo, bc, bi, splits, num_warps=8 if bo * bc * bi >= 4096 else 4)


def _rows_per_split(v: View3d, t: Tiles) -> tuple[int, int]:
    """Rows each reduction program owns (a multiple of block_r) and the resulting split count."""
    rows = triton.cdiv(triton.cdiv(v.R, t.splits), t.block_r) * t.block_r
    return rows, triton.cdiv(v.R, rows)


# The (splits, C) partials are merged BS splits x BC channels at a time. Fixed sizes, not sized to
# the split count: every shape then shares one compiled finalize kernel (a GPU compiles each
# distinct constexpr anew), and past 64 splits the merge loop runs more than once.
_PART_BS, _PART_BC = 64, 64


def _check_residual(x: torch.Tensor, residual: torch.Tensor | None) -> None:
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(f"residual {tuple(residual.shape)} {residual.dtype} must match x "
                         f"{tuple(x.shape)} {x.dtype}")


def _check(x: torch.Tensor, *vectors: torch.Tensor) -> View3d:
    v = view3d(x)
    if not (x.is_cuda or INTERPRETED):
        raise RuntimeError("the Triton BatchNorm kernels need CUDA tensors (or TRITON_INTERPRET=1"
                           " set before import); use fastcifar.kernels.reference on the CPU")
    for t in vectors:
        if t is not None and (t.shape != (v.C,) or t.device != x.device):
            raise ValueError(f"expected per-channel tensors of shape ({v.C},) on {x.device}, "
                             f"got {tuple(t.shape)} on {t.device}")
    if x.dtype not in DTYPES:
        raise ValueError(f"unsupported dtype {x.dtype}: use float32, float16 or bfloat16")
    return v


def _elementwise_grid(v: View3d, t: Tiles) -> tuple[int, int, int]:
    return (triton.cdiv(v.R, t.block_r), triton.cdiv(v.C, t.block_c), triton.cdiv(v.K, t.block_k))


def bn_relu_forward(x, weight, bias, residual=None, running_mean=None, running_var=None,
                    momentum=0.1, eps=1e-5, tiles=None, launch=lambda k: k):
    """Training-mode forward: (y, mean, invstd, new running mean, new running var).

    The running stats are not modified: their updated values are returned (None when not given),
    because PyTorch cannot attach autograd to an operator that mutates its inputs.
    ``launch`` wraps each kernel (torch.library.wrap_triton inside the custom op).
    """
    v = _check(x, weight, bias, running_mean, running_var)
    _check_residual(x, residual)  # before any kernel runs
    if v.count < 2:
        raise ValueError(f"expected more than 1 value per channel when training, got {v.count}")
    t = tiles or choose_tiles(v, sm_count=sm_count_of(x))
    rows, splits = _rows_per_split(v, t)
    # three allocations, not slices of one: each starts 16-byte aligned (one compile, not two)
    part = [_empty((splits, v.C), device=x.device, dtype=torch.float32) for _ in range(3)]
    launch(_stats_partial_kernel)[(triton.cdiv(v.C, t.block_c), splits)](
        x, part[0], part[1], part[2], v.R, v.C, v.K, v.s_r, v.s_c, rows,
        BR=t.block_r, BC=t.block_c, BK=t.block_k, num_warps=t.num_warps)
    # separate allocations: a custom op's outputs must not alias each other
    mean = _empty(v.C, device=x.device, dtype=torch.float32)
    invstd = _empty(v.C, device=x.device, dtype=torch.float32)
    update = running_mean is not None and running_var is not None
    new_rm = _empty_like(running_mean) if update else None
    new_rv = _empty_like(running_var) if update else None
    launch(_stats_finalize_kernel)[(triton.cdiv(v.C, _PART_BC),)](
        part[0], part[1], part[2], mean, invstd,
        *((running_mean, running_var, new_rm, new_rv) if update else (mean, mean, mean, mean)),
        splits, v.C, eps, momentum, int(update), BS=_PART_BS, BC=_PART_BC)
    y = _apply(x, residual, mean, invstd, weight, bias, v, t, eps, False, launch)
    return y, mean, invstd, new_rm, new_rv


def bn_relu_eval(x, weight, bias, running_mean, running_var, residual=None, eps=1e-5,
                 tiles=None, launch=lambda k: k):
    """Eval-mode forward with the running statistics: one elementwise pass."""
    v = _check(x, weight, bias, running_mean, running_var)
    _check_residual(x, residual)
    t = tiles or choose_tiles(v, sm_count=sm_count_of(x))
    return _apply(x, residual, running_mean, running_var, weight, bias, v, t, eps, True, launch)


def _apply(x, residual, mean, inv, weight, bias, v, t, eps, from_var, launch):
    if residual is not None:
        residual = _same_layout(residual, v)
    y = _empty_like(x)  # keeps x's memory format
    launch(_apply_kernel)[_elementwise_grid(v, t)](
        x, residual if residual is not None else x, y, mean, inv, weight, bias,
        v.R, v.C, v.K, v.s_r, v.s_c, eps, int(residual is not None), int(from_var),
        BR=t.block_r, BC=t.block_c, BK=t.block_k, num_warps=t.num_warps)
    return y


def bn_relu_backward(dy, x, weight, bias, mean, invstd, y=None, tiles=None, launch=lambda k: k):
    """Grads of the training-mode forward: (dx, dweight, dbias, dresidual or None).

    Pass the forward output ``y`` for the residual variant: its ReLU mask comes from ``y``
    (the residual is not saved), and d residual is the masked grad.
    """
    v = _check(x, weight, bias, mean, invstd)
    t = tiles or choose_tiles(v, sm_count=sm_count_of(x))
    dy = _same_layout(dy, v)
    has_res = y is not None
    g = _empty_like(x) if has_res else None
    rows, splits = _rows_per_split(v, t)
    part = [_empty((splits, v.C), device=x.device, dtype=torch.float32) for _ in range(2)]
    launch(_bwd_reduce_kernel)[(triton.cdiv(v.C, t.block_c), splits)](
        dy, x, _same_layout(y, v) if has_res else x, g if has_res else dy,
        mean, invstd, weight, bias, part[0], part[1], v.R, v.C, v.K, v.s_r, v.s_c, rows,
        int(has_res),
        BR=t.block_r, BC=t.block_c, BK=t.block_k, num_warps=t.num_warps)
    # sum g = dbias, sum g * xhat = dweight (fp32; separate: outputs must not alias)
    dbias = _empty(v.C, device=x.device, dtype=torch.float32)
    dweight = _empty(v.C, device=x.device, dtype=torch.float32)
    launch(_sum_partials_kernel)[(triton.cdiv(v.C, _PART_BC),)](
        part[0], part[1], dbias, dweight, splits, v.C, BS=_PART_BS, BC=_PART_BC)
    dx = _empty_like(x)
    launch(_bwd_dx_kernel)[_elementwise_grid(v, t)](
        g if has_res else dy, x, dx, mean, invstd, weight, bias, dbias, dweight,
        v.R, v.C, v.K, v.s_r, v.s_c, 1.0 / v.count, int(not has_res),
        BR=t.block_r, BC=t.block_c, BK=t.block_k, num_warps=t.num_warps)
    return dx, dweight.to(weight.dtype), dbias.to(bias.dtype), g
