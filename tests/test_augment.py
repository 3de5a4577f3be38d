"""fastcifar.augment, torch backend: spec validation, parity with torchvision.transforms.v2 for
fixed parameters, distributions of random parameters, and the loader's bookkeeping.

Tolerances (float images in [0, 1]):
- nearest resampling: identical pixels. Our grid and torchvision's pick the same source pixel;
  at most NEAREST_TIES of values may differ, since a coordinate exactly half-way between two
  pixels can round either way when the two grids' float rounding differs.
- bilinear resampling and colour jitter: ATOL = 1e-5, float32 rounding of coordinates, blend
  weights and the HSV round trip (measured <= 2e-6); a wrong pixel or order differs by >= 1e-3.
"""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

from fastcifar.augment import (
    PRESETS,
    AugmentSpec,
    epoch_order,
    get_preset,
    identity_params,
    make_loader,
    sample_params,
)
from fastcifar.augment.params import HUE, jitter_plan
from fastcifar.augment.torch_ops import apply_params, color_jitter, to_float_nchw, warp
from fastcifar.data import MEAN, STD
from fastcifar.data.synthetic import make_arrays

ATOL = 1e-5
NEAREST_TIES = 2e-3
B = 8


@pytest.fixture(scope="module")
def images():
    """(uint8 NHWC array, float NCHW tensor in [0, 1]) of B synthetic images."""
    array, _ = make_arrays(B, seed=3)
    return array, to_float_nchw(torch.from_numpy(array)).contiguous()


def params_with(**fields):
    p = identity_params(B, 32, 32)
    for name, value in fields.items():
        getattr(p, name)[:] = torch.as_tensor(value)
    return p


def assert_nearest_equal(ours, ref):
    differ = (ours - ref).abs() > 1e-6
    assert differ.float().mean().item() <= NEAREST_TIES, f"{differ.sum()} values differ"


# ---------------------------------------------------------------- spec

def test_presets_follow_table1():
    assert get_preset("none").geometric is False and get_preset("none").jitter is False
    row2 = get_preset("flip_affine")
    assert (row2.flip_p, row2.degrees, row2.translate) == (0.5, 5.0, (0.2, 0.2))
    assert not row2.jitter and row2.crop_padding == 0
    rows3 = get_preset("flip_affine_crop_jitter")
    assert rows3.crop_padding == 4
    assert (rows3.brightness, rows3.contrast, rows3.saturation, rows3.hue) == (0.2, 0.2, 0.2, 0.1)
    row6 = get_preset("flip_affine_resized_crop")
    assert row6.resized_crop_scale == (0.8, 1.0) and not row6.jitter and row6.crop_padding == 0
    assert all((s.mean, s.std) == (MEAN, STD) for s in PRESETS.values())


def test_unknown_preset_lists_valid_names():
    with pytest.raises(ValueError, match="flip_affine_resized_crop"):
        get_preset("flip")


@pytest.mark.parametrize("bad", [dict(flip_p=1.5), dict(hue=0.7), dict(interpolation="cubic"),
                                 dict(crop_padding=4, resized_crop_scale=(0.8, 1.0)),
                                 dict(resized_crop_scale=(0.0, 1.0)), dict(brightness=-0.1)])
def test_spec_is_validated_at_construction(bad):
    with pytest.raises(ValueError, match="invalid AugmentSpec"):
        AugmentSpec(**bad)


# ---------------------------------------------------------------- parity, fixed parameters

@pytest.mark.parametrize("angle,shift,flip", [(0.0, (3, -2), False), (4.3, (0, 0), False),
                                              (-5.0, (6, 5), True), (30.0, (-4, 1), True)])
def test_flip_affine_matches_torchvision_nearest(images, angle, shift, flip):
    _, x = images
    ours = warp(x, params_with(angle=angle, shift=shift, flip=flip), get_preset("flip_affine"))
    ref = TF.horizontal_flip(x) if flip else x
    ref = TF.affine(ref, angle=angle, translate=list(shift), scale=1.0, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.NEAREST, fill=0)
    assert_nearest_equal(ours, ref)
    if angle or any(shift):  # the test can tell a wrong map from a right one
        assert (ours - x).abs().max() > 0.1


def test_affine_matches_torchvision_bilinear(images):
    _, x = images
    spec = replace(get_preset("flip_affine"), interpolation="bilinear")
    ours = warp(x, params_with(angle=3.7, shift=(2, -1)), spec)
    # fill=None: pure zero padding in grid_sample (fill=0 re-weights edge pixels by a mask)
    ref = TF.affine(x, angle=3.7, translate=[2, -1], scale=1.0, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR, fill=None)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


@pytest.mark.parametrize("top,left", [(0, 0), (4, 4), (1, 7), (8, 2)])
def test_pad_crop_matches_torchvision(images, top, left):
    _, x = images
    p = params_with(crop=(top - 4, left - 4))
    ours = warp(x, p, get_preset("flip_affine_crop_jitter"))
    ref = TF.crop(TF.pad(x, [4], fill=0), top, left, 32, 32)
    assert_nearest_equal(ours, ref)


@pytest.mark.parametrize("box", [(0, 0, 32, 32), (3, 1, 27, 29), (0, 4, 28, 25), (5, 6, 26, 26)])
def test_resized_crop_matches_torchvision(images, box):
    _, x = images
    ours = warp(x, params_with(box=box), get_preset("flip_affine_resized_crop"))
    ref = TF.resized_crop(x, *box, size=[32, 32], interpolation=InterpolationMode.BILINEAR,
                          antialias=True)
    torch.testing.assert_close(ours, ref, atol=ATOL, rtol=0)


def torchvision_jitter(x, factors, order):
    ops = [lambda t: TF.adjust_brightness(t, factors[0]),
           lambda t: TF.adjust_contrast(t, factors[1]),
           lambda t: TF.adjust_saturation(t, factors[2]), lambda t: TF.adjust_hue(t, factors[3])]
    for op in order:
        x = ops[op](x)
    return x


@pytest.mark.parametrize("order", [(0, 1, 2, 3), (3, 2, 1, 0), (1, 3, 0, 2), (2, 0, 3, 1)])
def test_color_jitter_matches_torchvision_in_any_order(images, order):
    _, x = images
    factors = (1.15, 0.83, 1.2, -0.07)
    ours = color_jitter(x, params_with(jitter_factors=factors, jitter_order=order),
                        get_preset("flip_affine_crop_jitter"))
    torch.testing.assert_close(ours, torchvision_jitter(x, factors, order), atol=ATOL, rtol=0)


def test_each_image_gets_its_own_jitter_order(images):
    _, x = images
    orders = torch.stack([torch.randperm(4) for _ in range(B)])
    factors = torch.tensor([[1.2, 0.8, 0.8, 0.1]]).repeat(B, 1)
    p = params_with(jitter_factors=factors, jitter_order=orders)
    ours = color_jitter(x, p, get_preset("flip_affine_crop_jitter"))
    for i in range(B):
        ref = torchvision_jitter(x[i : i + 1], factors[i].tolist(), orders[i].tolist())
        torch.testing.assert_close(ours[i : i + 1], ref, atol=ATOL, rtol=0)


def test_composed_chain_matches_torchvision_sequence(images):
    """Rows 3-5: flip, affine, pad-crop in one resampling = torchvision's three steps."""
    _, x = images
    spec = get_preset("flip_affine_crop_jitter")
    p = sample_params(spec, B, 32, 32, torch.Generator().manual_seed(5))
    ours = apply_params(x, p, spec)
    for i in range(B):
        ref = TF.horizontal_flip(x[i]) if p.flip[i] else x[i]
        ref = TF.affine(ref, angle=p.angle[i].item(), translate=p.shift[i].tolist(), scale=1.0,
                        shear=[0.0, 0.0], fill=0)
        ref = TF.crop(TF.pad(ref, [4]), *map(int, p.crop[i] + 4), 32, 32)
        factors, order = p.jitter_factors[i].tolist(), p.jitter_order[i].tolist()
        ref = torchvision_jitter(ref[None], factors, order)
        # composing nearest resamplings is exact; jitter then adds float rounding only
        differ = ((ours[i : i + 1] - ref).abs() > ATOL).float().mean().item()
        assert differ <= NEAREST_TIES


def test_row6_composition_is_close_to_torchvision(images):
    """Row 6 resamples once (bilinear) where torchvision resamples twice (nearest, bilinear)."""
    _, x = images
    spec = get_preset("flip_affine_resized_crop")
    p = sample_params(spec, B, 32, 32, torch.Generator().manual_seed(6))
    ours = apply_params(x, p, spec)
    refs = []
    for i in range(B):
        ref = TF.horizontal_flip(x[i]) if p.flip[i] else x[i]
        ref = TF.affine(ref, angle=p.angle[i].item(), translate=p.shift[i].tolist(), scale=1.0,
                        shear=[0.0, 0.0], fill=0)
        refs.append(TF.resized_crop(ref, *map(int, p.box[i].tolist()), size=[32, 32]))
    diff = (ours - torch.stack(refs)).abs()
    # one interpolation instead of two: same content, differences of an interpolation step
    # (mean well under 0.1 on these noisy images; a wrong box or angle gives >> 0.1)
    assert diff.mean() < 0.06, diff.mean()


# ---------------------------------------------------------------- random parameters

def test_parameter_distributions_match_spec():
    spec = replace(get_preset("flip_affine_crop_jitter"), resized_crop_scale=None)
    n = 20000
    p = sample_params(spec, n, 32, 32, torch.Generator().manual_seed(0))
    assert abs(p.flip.float().mean() - 0.5) < 0.02  # 5 sigma of a binomial(20000, 0.5) ~ 0.018
    assert p.angle.min() >= -5 and p.angle.max() <= 5 and p.angle.std() > 2.7  # U(-5,5): 2.89
    shifts = p.shift.flatten()
    assert set(shifts.unique().tolist()) == set(range(-6, 7))  # round(U(-6.4, 6.4))
    assert abs((shifts == 6).float().mean() - 0.9 / 12.8) < 0.01
    assert set(p.crop.flatten().unique().tolist()) == set(range(-4, 5))  # 2 * 4 + 1 windows
    f = p.jitter_factors
    for col, bound in ((0, 0.2), (1, 0.2), (2, 0.2)):
        assert f[:, col].min() >= 1 - bound and f[:, col].max() <= 1 + bound
        assert abs(f[:, col].mean() - 1) < 0.01
    assert f[:, HUE].abs().max() <= 0.1 and f[:, HUE].abs().max() > 0.099
    assert (p.jitter_order.sort(dim=1).values == torch.arange(4)).all()
    first_op = torch.bincount(p.jitter_order[:, 0], minlength=4).float() / n
    assert (first_op - 0.25).abs().max() < 0.02


def test_resized_crop_boxes_follow_torchvision_rules():
    spec = get_preset("flip_affine_resized_crop")
    n = 20000
    top, left, h, w = sample_params(spec, n, 32, 32, torch.Generator().manual_seed(1)).box.T
    area = h * w / 1024
    assert area.min() >= 0.8 * 0.9 and area.max() <= 1.0  # rounding of w, h moves area a little
    assert ((w / h) >= 0.75 * 0.9).all() and ((w / h) <= 4 / 3 / 0.9).all()
    assert (top >= 0).all() and (left >= 0).all()
    assert (top + h <= 32).all() and (left + w <= 32).all()
    assert (h < 32).float().mean() > 0.5 and (top > 0).any() and (left > 0).any()
    assert torch.equal(w, w.round()) and torch.equal(top, top.round())


def test_jitter_plan_preserves_each_images_order():
    p = params_with(jitter_factors=(1.1, 1.2, 1.3, 0.05), jitter_order=(2, 3, 0, 1))
    plan = jitter_plan(p)
    applied = [round(v, 4) for v in plan.factor[:, 0].tolist() if v != 1.0]
    assert applied == [1.3, 1.1, 1.2]  # saturation, then (hue), brightness, contrast
    assert plan.factor[:3, 0].tolist()[1:] == [1.0, 1.0]  # only saturation comes before hue


# ---------------------------------------------------------------- the loader

def loader(n=50, bs=8, **kwargs):
    images, labels = make_arrays(n, seed=1)
    kwargs.setdefault("train", True)
    return make_loader(images, labels, get_preset(kwargs.pop("preset", "flip_affine")), bs,
                       **kwargs), images, labels


def test_batches_shapes_dtypes_and_length():
    ld, _, _ = loader(n=50, bs=8, dtype=torch.bfloat16)
    batches = list(ld)
    assert len(ld) == len(batches) == 6  # 50 // 8, last partial dropped
    x, y = batches[0]
    assert x.shape == (8, 3, 32, 32) and x.dtype == torch.bfloat16 and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    ev, _, _ = loader(n=50, bs=8, train=False, channels_last=False)
    assert len(ev) == 7 and [len(y) for _, y in ev][-1] == 2 and next(iter(ev))[0].is_contiguous()


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shard", [(0, 1), (1, 3)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_example_batches_are_laid_out_as_the_real_ones(train, shard, channels_last):
    # what a compile warm-up runs on (fastcifar.train.compile_model): every real batch's shape,
    # dtype and strides, the partial last one included, and nothing else
    ld, _, _ = loader(n=50, bs=12, train=train, shard=shard, channels_last=channels_last,
                      dtype=torch.bfloat16)
    real = {(x.shape, x.dtype, x.stride()) for x, _ in ld}
    examples = {(x.shape, x.dtype, x.stride()) for x in map(ld.example_batch, ld.batch_sizes())}
    assert examples == real and len(real) == (1 if train else 2)


def test_eval_only_normalises_in_order():
    ld, images, labels = loader(n=20, bs=8, train=False)
    x = torch.cat([x for x, _ in ld])
    y = torch.cat([y for _, y in ld])
    ref = (torch.from_numpy(images).permute(0, 3, 1, 2) / 255 - torch.tensor(MEAN)[:, None, None])
    ref = ref / torch.tensor(STD)[:, None, None]
    torch.testing.assert_close(x, ref, atol=1e-6, rtol=0)
    assert torch.equal(y, torch.from_numpy(labels))


def test_labels_stay_with_their_images():
    # the "none" preset does not move pixels, so each output must be its source image
    ld, images, labels = loader(n=40, bs=8, preset="none")
    source = (torch.from_numpy(images).permute(0, 3, 1, 2) / 255 - torch.tensor(MEAN)[:, None,
              None]) / torch.tensor(STD)[:, None, None]
    for x, y in ld:
        dist = (x[:, None] - source[None]).abs().flatten(2).amax(2)  # (B, N)
        match = dist.argmin(1)
        assert (dist.min(1).values < 1e-5).all()
        assert torch.equal(y, torch.from_numpy(labels)[match])
        assert not torch.equal(match, match.sort().values)  # shuffled


def test_epoch_visits_every_sample_once_and_epochs_differ():
    assert torch.equal(epoch_order(100, 0, 3).sort().values, torch.arange(100))
    assert not torch.equal(epoch_order(100, 0, 3), epoch_order(100, 0, 4))
    ld, _, labels = loader(n=48, bs=8, preset="none")
    counts = torch.bincount(torch.cat([y for _, y in ld]), minlength=10)
    assert torch.equal(counts, torch.bincount(torch.from_numpy(labels), minlength=10))


def test_same_seed_same_batches_and_resumable():
    a, _, _ = loader(preset="flip_affine_crop_jitter", seed=7)
    b, _, _ = loader(preset="flip_affine_crop_jitter", seed=7)
    c, _, _ = loader(preset="flip_affine_crop_jitter", seed=8)
    first_a, second_a = list(a), list(a)  # epochs 0 and 1
    b.set_epoch(1)
    for (xa, ya), (xb, yb) in zip(second_a, list(b)):  # epoch 1 without running epoch 0
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(first_a[0][0], second_a[0][0])
    assert not torch.equal(first_a[0][0], next(iter(c))[0])


def test_alternating_flip_mirrors_each_image_every_other_epoch():
    # images whose left half is bright: a flipped copy has its bright half on the right
    n = 64
    images = np.zeros((n, 8, 8, 3), np.uint8)
    images[:, :, :4] = 255
    images[:, 0, 0, 0] = np.arange(n)  # a mark that identifies the image after any flip
    labels = np.zeros(n, np.int64)
    spec = AugmentSpec(flip_p=0.5, alternate_flip=True, mean=(0, 0, 0), std=(1, 1, 1))
    ld = make_loader(images, labels, spec, 16, train=True, seed=3)

    def flips_of_epoch():
        flipped = {}
        for x, _ in ld:
            right = x[:, 1, :, 4:].mean((1, 2)) > 0.5
            marks = torch.where(right, x[:, 0, 0, -1], x[:, 0, 0, 0]) * 255
            flipped.update(zip(marks.round().long().tolist(), right.tolist()))
        return torch.tensor([flipped[i] for i in range(n)])

    first, second, third = flips_of_epoch(), flips_of_epoch(), flips_of_epoch()
    assert 0 < first.sum() < n  # epoch 0 is a coin per image
    assert torch.equal(second, ~first) and torch.equal(third, first)
    with pytest.raises(ValueError, match="alternate_flip needs flip_p=0.5"):
        AugmentSpec(flip_p=1.0, alternate_flip=True)


def test_bad_inputs_are_rejected():
    images, labels = make_arrays(10)
    with pytest.raises(ValueError, match="unknown augmentation backend"):
        make_loader(images, labels, get_preset("none"), 4, train=True, backend="cv2")
    with pytest.raises(ValueError, match="NHWC"):
        make_loader(images.transpose(0, 3, 1, 2), labels, get_preset("none"), 4, train=True)
    with pytest.raises(ValueError, match="labels"):
        make_loader(images, labels[:5], get_preset("none"), 4, train=True)
    with pytest.raises(TypeError):
        make_loader(images, labels, "none", 4, train=True)


def test_translation_range_shows_in_pixels():
    # a single bright pixel at the centre lands within the shift range, never beyond it
    image = np.zeros((1, 32, 32, 3), np.uint8)
    image[0, 16, 16] = 255
    spec = AugmentSpec(translate=(0.2, 0.2))
    p = sample_params(spec, 400, 32, 32, torch.Generator().manual_seed(2))
    out = warp(to_float_nchw(torch.from_numpy(image)).expand(400, -1, -1, -1), p, spec)
    ys, xs = (out[:, 0] > 0.5).nonzero()[:, 1:].T
    assert len(ys) == 400
    assert torch.equal(xs - 16, p.shift[:, 0].long()) and torch.equal(ys - 16, p.shift[:, 1].long())
    assert math.isclose((xs - 16).abs().max().item(), 6)


# ---------------------------------------------------------------- no host round trips


class HostTraffic(TorchDispatchMode):
    """Records every op that, on a GPU, copies Python/NumPy data to the device (lift_fresh: the
    op torch.tensor, as_tensor, asarray, from_numpy, new_tensor and ``t[i] = 3.0`` all run) or
    reads device data back to the host (item, bool, int, float; nonzero and boolean indexing,
    whose output shape depends on data). On the CPU none of them syncs, so the test counts them
    instead; tolist and numpy bypass the dispatcher and are patched."""

    READS = {"aten._local_scalar_dense", "aten.nonzero", "aten.masked_select", "aten.unique",
             "aten._unique2", "aten.repeat_interleave"}

    def __init__(self):
        super().__init__()
        self.seen, self._patches = [], pytest.MonkeyPatch()

    def __enter__(self):
        for name in ("tolist", "numpy"):
            self._patches.setattr(torch.Tensor, name, self._counted(name))
        return super().__enter__()

    def __exit__(self, *exc):
        self._patches.undo()
        return super().__exit__(*exc)

    def _counted(self, name):
        original = getattr(torch.Tensor, name)

        def read(tensor, *args, **kwargs):
            self.seen.append(f"Tensor.{name}")
            return original(tensor, *args, **kwargs)
        return read

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket._qualified_op_name.replace("::", ".")
        masks = func.overloadpacket is torch.ops.aten.index and any(
            i is not None and i.dtype in (torch.bool, torch.uint8) for i in args[1])
        if name == "aten.lift_fresh" or name in self.READS or masks:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_batches_build_no_tensor_from_host_data(preset, train):
    # the per-batch path (and the epoch's start) must not build tensors from Python data or
    # read device values back: on a GPU each one is a blocking copy that stalls the step. The
    # loader's constants come from its constructor, outside the check. Two ranks: the shard path.
    ld, _, _ = loader(n=40, bs=8, preset=preset, train=train, shard=(1, 2))
    for _ in range(2):  # epochs 0 and 1 (alternating flip's odd epoch)
        with HostTraffic() as traffic:
            batches = list(ld)
        assert len(batches) == len(ld) and traffic.seen == []


def test_host_traffic_check_sees_what_it_must():
    # the check itself: each kind of host round trip it claims to catch is caught
    cases = [lambda: torch.tensor([1.0, 2.0]), lambda: torch.as_tensor([1.0]),
             lambda: torch.ones(3).new_tensor([1.0]), lambda: torch.ones(2).__setitem__(0, 3.0),
             lambda: torch.ones(()).item(), lambda: bool(torch.ones(())),
             lambda: torch.ones(2).tolist(), lambda: torch.ones(3)[torch.ones(3) > 0],
             lambda: torch.ones(3).nonzero()]
    for case in cases:
        with HostTraffic() as traffic:
            case()
        assert traffic.seen, case
    with HostTraffic() as traffic:  # scalars are kernel arguments: fine
        torch.where(torch.ones(2) > 0, torch.ones(2) * 2.0, 1.0).clamp_(0.0, 1.5)
    assert traffic.seen == []


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_cuda_epoch_never_syncs(preset, train):
    # what HostTraffic approximates, measured: any synchronising CUDA call in an epoch raises
    ld, _, _ = loader(n=200, bs=32, preset=preset, train=train, device="cuda")
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(2):
            batches = list(ld)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert len(batches) == len(ld) and batches[0][0].is_cuda


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_given_the_same_params(images):
    _, x = images
    spec = get_preset("flip_affine_crop_jitter")
    p = sample_params(spec, B, 32, 32, torch.Generator().manual_seed(9))
    ours = apply_params(x.cuda(), p.to("cuda"), spec).cpu()
    torch.testing.assert_close(ours, apply_params(x, p, spec), atol=1e-4, rtol=0)
    ld, _, _ = loader(preset="flip_affine_resized_crop", device="cuda")
    xb, yb = next(iter(ld))
    assert xb.is_cuda and yb.is_cuda and xb.is_contiguous(memory_format=torch.channels_last)


def test_dali_backend_without_dali_says_how_to_install(monkeypatch):
    import sys

    import fastcifar.augment as package

    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # as if DALI were not installed
    monkeypatch.delitem(sys.modules, "fastcifar.augment.dali", raising=False)
    # the import below rebinds the package's attribute too: restored with sys.modules after
    monkeypatch.setattr(package, "dali", getattr(package, "dali", None), raising=False)
    images, labels = make_arrays(10)
    with pytest.raises(ImportError, match=r"pip install 'fastcifar\[dali\]'"):
        make_loader(images, labels, get_preset("none"), 4, train=True, backend="dali")
    # the torch backend is unaffected
    assert len(make_loader(images, labels, get_preset("none"), 4, train=True)) == 2


@pytest.mark.parametrize("backend", ["torch", "dali"])
def test_analyze_draws_figure3(synthetic_root, tmp_path, backend):
    if backend == "dali":
        pytest.importorskip("nvidia.dali")
    from fastcifar import analyze

    out = tmp_path / "fig"
    argv = ["--data-dir", str(synthetic_root), "--out", str(out), "--no-download",
            "--augment", "flip_affine_crop_jitter", "--backend", backend]
    assert analyze.main(argv) == 0
    png = out / f"fig3_augment_flip_affine_crop_jitter_{backend}.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_analyze_rejects_unknown_preset(synthetic_root):
    from fastcifar import analyze

    with pytest.raises(SystemExit) as exit_info:
        analyze.main(["--data-dir", str(synthetic_root), "--augment", "bogus"])
    assert exit_info.value.code == 2


def test_augment_examples_are_in_range_and_vary():
    from fastcifar.augment.preview import augment_examples

    images, _ = make_arrays(3)
    out = augment_examples(images, get_preset("flip_affine_resized_crop"), copies=4)
    assert out.shape == (3, 4, 32, 32, 3) and out.min() >= 0 and out.max() <= 1
    assert not np.allclose(out[0, 0], out[0, 1])
