"""The "dali" backend: the same spec and the same parameter draws, executed by NVIDIA DALI.

The random parameters come from ``sample_params`` (a seeded torch generator on the CPU), so the
two backends share their sampling code and a seed means the same draws in both. DALI runs the
pixel work: one ``fn.warp_affine`` for the composed geometry (zero fill; a second one for the
pad-crop shift, which reads the first one's frame), the colour jitter as
blend rounds and an exact HSV hue rotation in DALI arithmetic, and ``fn.crop_mirror_normalize``.
It runs CPU-only (``device_id=None``) without a GPU and on the GPU when ``device`` is CUDA; the
data set stays in host memory and each uint8 batch is copied to the GPU inside the pipeline.

Differences from torchvision (and the torch backend), measured in tests/test_augment_dali.py:
- hue: not ``fn.hsv``, which rotates hue linearly in YIQ space and is far from torchvision's
  HSV rotation on saturated colours (pure red +36 deg: (196, 64, -173) against (255, 153, 0));
  the exact formulas are written in DALI arithmetic instead (``_hue_graph``);
- resized crop: the composed warp samples zeros just outside the crop box at the image border,
  where torchvision's resize clamps to the box's edge pixels (edge rows/columns only);
- nearest-neighbour ties (exactly half-way coordinates) may round the other way.
"""

import importlib
import sys
from pathlib import Path

import numpy as np
import torch

from .batches import Batches, check_arrays, stream_seed
from .params import CONTRAST, SATURATION, AugmentParams, jitter_plan, sample_params
from .spec import AugmentSpec
from .torch_ops import geometry_matrices

INSTALL_HINT = ("the 'dali' augmentation backend needs NVIDIA DALI, which is not installed: "
                "pip install 'fastcifar[dali]' (CUDA 12 build; also runs CPU-only) or "
                "'fastcifar[dali-cu13]', or use backend='torch'")


def require_dali():
    """Import DALI or raise ImportError saying how to install it."""
    try:
        return importlib.import_module("nvidia.dali")
    except ImportError:
        pass
    if _join_nvidia_folders():
        try:
            return importlib.import_module("nvidia.dali")
        except ImportError as err:
            raise ImportError(f"{INSTALL_HINT} (DALI's files were found but do not import: "
                              f"{err})") from err
    raise ImportError(INSTALL_HINT)


def _join_nvidia_folders() -> bool:
    """Make DALI importable where another ``nvidia`` package hides it; True if DALI was found.

    The CUDA builds of torch come with nvidia-* wheels whose ``nvidia/`` folder is a regular
    package (it has an __init__.py). DALI installed into another folder on the path (``pip install
    --target /tmp/site``, as on the offline GPU machine) holds only a namespace portion
    ``nvidia/dali``, and a regular package ends the search: ``import nvidia.dali`` fails although
    DALI is on the path. Adding each path entry's ``nvidia/`` that holds DALI to the package's
    __path__ joins them, as a namespace package would have.
    """
    folders = [Path(entry or ".") / "nvidia" for entry in sys.path]
    with_dali = [str(f) for f in folders if (f / "dali" / "__init__.py").is_file()]
    if not with_dali:
        return False
    try:
        nvidia = importlib.import_module("nvidia")
    except ImportError:
        return False
    for folder in with_dali:
        if folder not in list(nvidia.__path__):
            nvidia.__path__.append(folder)
    importlib.invalidate_caches()
    return True


def dali_matrices(params: AugmentParams, spec: AugmentSpec, height: int, width: int):
    """Output->source maps in DALI's pixel coordinates (pixel centres at +0.5), (B, 2, 3) each:
    (geometry, crop). With a pad-crop, geometry is flip + affine and crop the whole-pixel shift,
    run as a second warp (the crop reads the affine step's frame, see torch_ops.warp); else
    geometry is the whole chain and crop is None."""
    pre, post = geometry_matrices(params.to("cpu"), spec, height, width)
    unscale = torch.diag(torch.tensor([width / 2, height / 2, 1.0]))  # undo grid normalisation
    to_dali = torch.tensor([[1.0, 0, width / 2], [0, 1, height / 2], [0, 0, 1]])
    from_dali = torch.tensor([[1.0, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])

    def dali(matrix):
        return (to_dali @ matrix @ from_dali)[:, :2].numpy().astype(np.float32)

    if spec.crop_padding:
        return dali(unscale @ post), dali(pre)
    return dali(unscale @ post @ pre), None


def jitter_inputs(params: AugmentParams) -> tuple[np.ndarray, np.ndarray]:
    """The JitterPlan as DALI inputs: blend (B, 6, 3) [factor, is_contrast, is_saturation]
    and the hue shift in turns (B,)."""
    plan = jitter_plan(params.to("cpu"))
    blend = torch.stack([plan.factor, (plan.op == CONTRAST).float(),
                         (plan.op == SATURATION).float()], dim=-1)  # (6, B, 3)
    return (blend.transpose(0, 1).contiguous().numpy().astype(np.float32),
            plan.hue.numpy().astype(np.float32))


class DaliAugmenter:
    """A built DALI pipeline for one spec: ``(uint8 NHWC batch, params) -> float NHWC``."""

    def __init__(self, spec: AugmentSpec, batch_size: int, device="cpu", num_threads=2,
                 normalise=True):
        dali = require_dali()
        from nvidia.dali import fn, types

        self.spec, self.device = spec, torch.device(device)
        gpu = self.device.type == "cuda"
        device_id = (self.device.index or 0) if gpu else None
        height, width = 32, 32  # set per batch from the images; pipelines are built for 32x32
        self.size = (height, width)

        @dali.pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                           prefetch_queue_depth=1)  # fed batch by batch (feed_input + run)
        def pipeline():
            x = fn.external_source(name="images", layout="HWC")
            x = x.gpu() if gpu else x
            if spec.geometric:
                interp = {"nearest": types.INTERP_NN, "bilinear": types.INTERP_LINEAR}
                x = fn.warp_affine(x, matrix=fn.external_source(name="matrix"), size=self.size,
                                   fill_value=0, interp_type=interp[spec.interpolation],
                                   dtype=types.FLOAT)
                if spec.crop_padding:  # the pad-crop as a whole-pixel shift with zero fill
                    x = fn.warp_affine(x, matrix=fn.external_source(name="crop"), size=self.size,
                                       fill_value=0, interp_type=types.INTERP_NN)
            else:
                x = fn.cast(x, dtype=types.FLOAT)
            if spec.jitter:
                x = _jitter_graph(x, spec, gpu)
            scale = 255.0 if normalise else 1.0
            mean = [m * scale for m in spec.mean] if normalise else [0.0, 0.0, 0.0]
            std = [s * scale for s in spec.std] if normalise else [1.0, 1.0, 1.0]
            return fn.crop_mirror_normalize(x, dtype=types.FLOAT, output_layout="HWC",
                                            mean=mean, std=std)

        self.pipe = pipeline()
        self.pipe.build()

    def __call__(self, images: np.ndarray, params: AugmentParams) -> torch.Tensor:
        """Augment one batch; returns float (B, H, W, 3) on the loader's device."""
        if images.shape[1:3] != self.size:
            raise ValueError(f"the DALI backend is built for {self.size} images, "
                             f"got {images.shape[1:3]}")
        self.pipe.feed_input("images", np.ascontiguousarray(images))
        if self.spec.geometric:
            matrix, crop = dali_matrices(params, self.spec, *self.size)
            self.pipe.feed_input("matrix", matrix)
            if crop is not None:
                self.pipe.feed_input("crop", crop)
        if self.spec.jitter:
            blend, hue = jitter_inputs(params)
            self.pipe.feed_input("blend", blend)
            self.pipe.feed_input("hue", hue)
        (out,) = self.pipe.run()
        return _to_torch(out, self.device)


def _jitter_graph(x, spec: AugmentSpec, gpu: bool):
    """ColorJitter in DALI: 3 blend rounds, the hue shift, 3 blend rounds (see JitterPlan)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn

    blend = fn.external_source(name="blend")  # (6, 3) per sample
    blend = blend.gpu() if gpu else blend
    hue = fn.external_source(name="hue")  # hue shift in turns, per sample
    hue = hue.gpu() if gpu else hue

    def blend_round(x, r):
        grey = x[:, :, 0:1] * 0.2989 + x[:, :, 1:2] * 0.587 + x[:, :, 2:3] * 0.114
        ref = blend[r, 1] * fn.reductions.mean(grey) + blend[r, 2] * grey
        return dmath.clamp(x * blend[r, 0] + ref * (1.0 - blend[r, 0]), 0.0, 255.0)

    for r in range(3):
        x = blend_round(x, r)
    if spec.hue:
        x = _hue_graph(x, hue)
    for r in range(3, 6):
        x = blend_round(x, r)
    return x


def _hue_graph(x, shift):
    """torchvision's exact HSV hue rotation in DALI arithmetic (fn.hsv is a YIQ approximation).

    Same formulas as torch_ops.adjust_hue: hue in sixths of a turn from the maximal channel,
    then channel n in (5, 3, 1) = max - delta * clamp(min(k, 4 - k), 0, 1), k = (n + h) mod 6.
    """
    import nvidia.dali.math as dmath
    from nvidia.dali import fn

    r, g, b = x[:, :, 0:1], x[:, :, 1:2], x[:, :, 2:3]
    maxc = dmath.max(dmath.max(r, g), b)
    delta = maxc - dmath.min(dmath.min(r, g), b)
    safe = delta + (delta == 0.0)  # avoids 0/0 on grey pixels, whose delta is 0 anyway
    is_r, is_g = maxc == r, (maxc != r) * (maxc == g)
    h = (is_r * ((g - b) / safe) + is_g * ((b - r) / safe + 2.0)
         + (1.0 - is_r - is_g) * ((r - g) / safe + 4.0) + 6.0 * shift)
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = n + h
        k = k - 6.0 * dmath.floor(k / 6.0)
        channels.append(maxc - delta * dmath.clamp(dmath.min(k, 4.0 - k), 0.0, 1.0))
    return fn.cat(*channels, axis=2)


def _to_torch(out, device: torch.device) -> torch.Tensor:
    """A dense DALI TensorList (CPU or GPU) as a torch tensor on ``device``."""
    tensor = out.as_tensor()
    if device.type == "cuda":
        from nvidia.dali.plugin.pytorch import feed_ndarray

        result = torch.empty(tensor.shape(), dtype=torch.float32, device=device)
        feed_ndarray(tensor, result, cuda_stream=torch.cuda.current_stream(device))
        return result
    return torch.from_numpy(np.array(tensor))


class DaliLoader(Batches):
    """make_loader's "dali" backend: same interface, order and parameter draws as TorchLoader."""

    def __init__(self, images, labels, spec: AugmentSpec, batch_size: int, *, train: bool,
                 device="cpu", seed=0, drop_last=None, dtype=torch.float32, channels_last=True,
                 shard=(0, 1)):
        require_dali()
        if spec.crop_fill != "zeros":
            raise ValueError(f"the DALI loader pads crops with zeros only, not "
                             f"{spec.crop_fill!r}; use --loader torch for this preset")
        images, labels = check_arrays(images, labels)
        super().__init__(len(images), batch_size, train, seed, drop_last, shard)
        self.images = images.cpu().numpy()  # DALI reads host memory
        self.device = torch.device(device)
        self.labels = labels.to(self.device)
        self.spec = spec if train else spec.eval_spec()
        self.augment = DaliAugmenter(self.spec, batch_size, device=self.device)
        self._draw_first_flips(self.spec)  # on the CPU, with the sample indices
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def __iter__(self):
        epoch, batches = self._next_epoch()
        gen = torch.Generator().manual_seed(stream_seed(self.seed, epoch, 1))
        height, width = self.images.shape[1:3]
        for idx in batches:
            params = sample_params(self.spec, len(idx), height, width, gen)  # the global batch's
            params = self._alternate_flips(self.spec, epoch, idx, params)
            idx, params = self._shard(idx, params)  # rather than DALI's shard_id: same split
            x = self.augment(self.images[idx.numpy()], params).permute(0, 3, 1, 2)
            yield (x.to(self.dtype, memory_format=self.memory_format),
                   self.labels[idx.to(self.device)])
