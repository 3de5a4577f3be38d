"""Correctness before speed: the Triton BatchNorm+ReLU modules against eager fp32 at a model's own
layer shapes, and a loader's batches against the torch loader's contract."""

import math

import torch

from ..models import create_model, parse_model_options
from ..recipes import Recipe

# the error (root mean square, relative to the reference's) the kernels may show per dtype: they
# compute in fp32 and round once to the storage dtype (fp16 keeps 11 bits, bf16 8, and Triton's
# interpreter truncates rather than rounds): a few units of that last bit, no more
KERNEL_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.5e-2}
DTYPE_NAMES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def norm_layer_shapes(recipe: Recipe) -> list[tuple[int, int, int, bool]]:
    """(channels, height, width, has_residual) of every BatchNorm+ReLU module of the model, in
    order, without duplicates (traced on the meta device: no memory, no time)."""
    from ..models.layers import BatchNormAddReLU2d, BatchNormReLU2d

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
    from ..models.fused import TRITON
    from ..models.layers import EAGER

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


def has_bn_relu(recipe: Recipe) -> bool:
    return bool(norm_layer_shapes(recipe))
