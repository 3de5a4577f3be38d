"""The drop-in modules of fastcifar.models.fused against eager nn.BatchNorm2d (+ ReLU): every
constructor option, inputs the kernels do not take directly, and resnet_final end to end."""

import contextlib

import pytest
import torch
from torch import nn

pytest.importorskip("triton")

from kernel_testing import DEVICE, gpu, needs_kernels, poison_buffers  # noqa: E402, F401

from fastcifar.kernels import bn_relu as K  # noqa: E402
from fastcifar.models import create_model, fused  # noqa: E402
from fastcifar.models.layers import BatchNormAddReLU2d, BatchNormReLU2d  # noqa: E402

pytestmark = [needs_kernels, pytest.mark.usefixtures("poison_buffers")]


def _pair(residual, channels, **kw):
    """A fused module and its eager twin with the same (non-default) parameters."""
    classes = ((fused.BatchNormAddReLU2d, BatchNormAddReLU2d) if residual
               else (fused.BatchNormReLU2d, BatchNormReLU2d))
    ours, eager = (cls(channels, **kw).to(DEVICE) for cls in classes)
    if ours.affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.normal_()
    eager.load_state_dict(ours.state_dict())  # same keys as nn.BatchNorm2d
    return ours, eager


def _step(module, x, residual, dy_fn=torch.cos):
    """Output and every grad (inputs, then parameters) of one forward and backward."""
    leaves = [x] if residual is None else [x, residual]
    # detach, not clone: a clone of a strided tensor comes back contiguous
    leaves = [t.detach().requires_grad_() for t in leaves]
    module.zero_grad()
    y = module(*leaves)
    y.backward(dy_fn(y))  # a varied upstream grad
    params = [p.grad for p in module.parameters()]
    return [y, *(t.grad for t in leaves), *params]


def _assert_same(ours, eager, outs, tol, grad_tol=None):
    """Outputs, grads (dx within ``grad_tol``) and every buffer of two modules agree."""
    for i, (got, want) in enumerate(zip(*outs)):
        assert got.dtype == want.dtype, i
        tol = grad_tol if i == 1 and grad_tol else tol
        torch.testing.assert_close(got, want, atol=tol, rtol=tol,
                                   msg=lambda m, i=i: f"output/grad {i}: {m}")
    for key, value in eager.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, atol=1e-6, rtol=1e-6, msg=key)


OPTIONS = {
    "defaults": {},
    "cumulative": {"momentum": None},
    "eps1e-3-momentum0.3": {"eps": 1e-3, "momentum": 0.3},
    "affine_false": {"affine": False},
    "no_running_stats": {"track_running_stats": False},
}


@pytest.mark.parametrize("options", list(OPTIONS))
@pytest.mark.parametrize("residual", [False, True], ids=["relu", "add_relu"])
def test_module_matches_eager_over_steps(residual, options):
    # (3, 37, 5, 7): a GPU runs these with the tiles (and compiles) of test_bn_relu.py's matrix
    ours, eager = _pair(residual, 37, **OPTIONS[options])
    for step in range(3):  # two training steps, then eval: running stats must carry over
        if step == 2:
            ours.eval(), eager.eval()
        x = torch.randn(3, 37, 5, 7, device=DEVICE) + step
        x[:, 1] = 3e-3 * torch.randn_like(x[:, 1])  # a variance near eps
        res = torch.randn_like(x) if residual else None
        outs = [_step(m, x, res) for m in (ours, eager)]
        # fp32 end to end: fp32 rounding only, but the near-eps channel's invstd (~330)
        # multiplies it in dx
        _assert_same(ours, eager, outs, 1e-5, grad_tol=1e-4)


def test_frozen_module_backward_matches_eager():
    # eval-mode gradients (a frozen BatchNorm, e.g. fine-tuning): the eval op's own backward
    ours, eager = _pair(True, 37)
    ours.eval(), eager.eval()
    x = torch.randn(3, 37, 5, 7, device=DEVICE)
    res = torch.randn_like(x)
    outs = [_step(m, x, res) for m in (ours, eager)]
    _assert_same(ours, eager, outs, 1e-5)


# What the kernels do not take as they are, and the modules must still get right: a strided
# input, a residual in another memory format or dtype, dtypes the kernels lack (fp64).
@pytest.mark.parametrize("case", ["non_contiguous", "residual_other_layout",
                                  "residual_other_dtype", "float64", "bf16_x_float64_residual"])
def test_inputs_the_kernels_do_not_take_directly(case, monkeypatch):
    residual = case != "non_contiguous"
    ours, eager = _pair(residual, 37)
    width = 14 if case == "non_contiguous" else 7
    x = torch.randn(3, 37, 5, width, device=DEVICE) * 2 + 1
    res = torch.randn_like(x) if residual else None
    tol = 1e-5
    if case == "non_contiguous":
        x = x[..., ::2]  # neither NCHW-contiguous nor channels_last
        assert not (x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last))
    elif case == "residual_other_layout":
        x = x.contiguous(memory_format=torch.channels_last)
    elif case == "residual_other_dtype":
        # the module promotes x first (the kernels take one dtype): what eager computes from
        # x in fp32; BN in fp16 would round before the add and flip ReLU masks near 0
        x = x.half()
    else:  # nn.BatchNorm2d works in fp64: so must we, through the reference
        def no_kernel(*a, **kw):
            raise AssertionError("a kernel was launched for an fp64 computation")
        monkeypatch.setattr(K, "bn_relu_forward", no_kernel)
        if case == "float64":
            ours.double(), eager.double()
            x, res = x.double(), res.double()
        else:  # eager: BN in bf16, then `+` promotes to fp64
            x, res, tol = x.bfloat16(), res.double(), 1e-2
    for _ in range(2):  # two training steps: the running stats carry over
        outs = [_step(ours, x, res),
                _step(eager, x.float() if case == "residual_other_dtype" else x, res)]
        if case == "residual_other_dtype":
            assert outs[0][1].dtype == torch.float16  # d x in x's dtype
            outs[1][1] = outs[1][1].half()
        # d x of the fp16 case: the same fp32 value rounded to fp16 twice (one ulp apart)
        _assert_same(ours, eager, outs, tol,
                     grad_tol=2e-3 if case == "residual_other_dtype" else None)
        if case == "residual_other_layout":  # the output keeps x's layout
            assert outs[0][0].is_contiguous(memory_format=torch.channels_last)


def test_kernels_can_run_only_their_dtypes():
    from fastcifar.kernels.autograd import kernels_can_run

    x = torch.zeros(2, 3, 4, 4, device=DEVICE)
    assert kernels_can_run(x) and kernels_can_run(x.bfloat16()) and kernels_can_run(x.half())
    assert not kernels_can_run(x.double())
    assert not kernels_can_run(x.to(torch.int32))


def test_cpu_tensors_fall_back_to_the_reference(monkeypatch):
    # what happens without TRITON_INTERPRET: CPU tensors must never reach a Triton kernel
    monkeypatch.setattr(K, "INTERPRETED", False)
    monkeypatch.setattr(K, "bn_relu_forward", lambda *a, **kw: pytest.fail("kernel called"))
    ours, eager = _pair(True, 4)
    ours, eager = ours.cpu(), eager.cpu()
    x, r = torch.randn(2, 4, 3, 3), torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(ours(x, r), eager(x, r), atol=0, rtol=0)
    torch.testing.assert_close(ours.running_var, eager.running_var, atol=0, rtol=0)
    with pytest.raises(RuntimeError, match="need CUDA tensors"):
        K._check(x)


@contextlib.contextmanager
def _no_tf32():
    """cuDNN and cuBLAS run fp32 convolutions and matmuls in TF32 by default on Ampere and later
    (10 significant bits): two fp32 models would then differ by far more than fp32 rounding."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@pytest.fixture
def no_tf32():
    with _no_tf32():
        yield


def test_no_tf32_fixture_restores_the_flags():
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    with _no_tf32():
        assert not torch.backends.cudnn.allow_tf32
        assert not torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32) == before


def test_resnet_final_triton_matches_eager(no_tf32):
    torch.manual_seed(0)
    ours = create_model("resnet_final", bn_relu="triton").to(DEVICE)
    eager = create_model("resnet_final", bn_relu="eager").to(DEVICE)
    assert isinstance(ours.features[0].bn1, fused.BatchNormReLU2d)
    assert isinstance(ours.features[0].bn2, fused.BatchNormAddReLU2d)
    eager.load_state_dict(ours.state_dict())
    # the reference is eager in float64: eager fp32 is not always the closer of the two (on a
    # CPU with AVX2 only, oneDNN's fp32 weight gradients of the first blocks were 2.4e-4 off
    # float64 on this input, where ours were 1e-7 off)
    eager.double()
    x = torch.randn(2, 3, 32, 32, device=DEVICE)
    outs = [ours(x), eager(x.double())]
    for out in outs:
        out.logsumexp(1).sum().backward()
    # ten BatchNorms and twelve convolutions compound fp32 rounding, and the logits are O(0.1):
    # 1e-4 absolute is ~1e3 fp32 ulps of slack, far below any real bug
    torch.testing.assert_close(outs[0], outs[1].float(), atol=1e-4, rtol=1e-4)
    for (name, p), q in zip(ours.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad.float(), atol=1e-4, rtol=1e-3, msg=name)
    for key, value in eager.state_dict().items():
        value = value.float() if value.is_floating_point() else value
        torch.testing.assert_close(ours.state_dict()[key], value, atol=1e-5, rtol=1e-5, msg=key)


@gpu
def test_resnet_final_bf16_autocast_and_compile_on_gpu():
    torch.manual_seed(0)
    cl = torch.channels_last
    ours = create_model("resnet_final", bn_relu="triton").cuda().to(memory_format=cl)
    eager = create_model("resnet_final", bn_relu="eager").cuda().to(memory_format=cl)
    eager.load_state_dict(ours.state_dict())
    compiled = torch.compile(ours, fullgraph=True)  # no graph break allowed
    x = torch.randn(64, 3, 32, 32, device="cuda").to(memory_format=cl)
    outs = []
    for model in (compiled, eager):
        with torch.autocast("cuda", dtype=torch.bfloat16):
            out = model(x)
        out.float().logsumexp(1).sum().backward()
        outs.append(out.float())
    # bf16 activations (8 significant bits) through twelve convolutions: a few 1e-2 at most
    torch.testing.assert_close(outs[0], outs[1], atol=5e-2, rtol=5e-2)
    for (name, p), q in zip(ours.named_parameters(), eager.parameters()):
        scale = q.grad.abs().max().item() + 1e-12
        assert (p.grad - q.grad).abs().max().item() <= 5e-2 * scale, name


def test_batchnorm_subclass_state_dict():
    # the fused module is an nn.BatchNorm2d: a plain BatchNorm's checkpoint loads into it
    plain = nn.BatchNorm2d(7)
    ours = fused.BatchNormReLU2d(7)
    ours.load_state_dict(plain.state_dict())
    assert isinstance(ours, nn.BatchNorm2d)
