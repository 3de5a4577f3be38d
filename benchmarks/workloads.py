"""What the throughput benchmarks time, built once for all of them: the training images, the seed's
per-image torchvision loader, a stream of device batches and a whole training step."""

import torch
import torch.nn.functional as F

from fastcifar.augment import AugmentSpec, get_preset, make_loader
from fastcifar.data import load_cifar10
from fastcifar.data.synthetic import make_arrays
from fastcifar.models import create_model


def training_images(data_dir: str | None, n: int | None):
    """(images, labels, where from): the first ``n`` (None: all) of CIFAR-10's training set in
    ``data_dir``, or ``n`` synthetic ones without it. Raises fastcifar.data.DataError for a bad
    folder."""
    if data_dir is None:
        images, labels = make_arrays(n, seed=0)
        return images, labels, f"synthetic ({n} images)"
    data = load_cifar10(data_dir, download=False)
    return data.train_images[:n], data.train_labels[:n], str(data.folder)


def torchvision_pipeline(spec: AugmentSpec):
    """The report's torchvision transforms for ``spec`` (flip, affine, crop, jitter, normalise)."""
    from torchvision.transforms import v2

    steps = []
    if spec.flip_p:
        steps.append(v2.RandomHorizontalFlip(spec.flip_p))
    if spec.degrees or any(spec.translate):
        steps.append(v2.RandomAffine(spec.degrees, translate=spec.translate))
    if spec.crop_padding:
        steps.append(v2.RandomCrop(32, padding=spec.crop_padding))
    if spec.resized_crop_scale is not None:
        steps.append(v2.RandomResizedCrop(32, scale=spec.resized_crop_scale,
                                          ratio=spec.resized_crop_ratio))
    if spec.jitter:
        steps.append(v2.ColorJitter(spec.brightness, spec.contrast, spec.saturation, spec.hue))
    steps += [v2.PILToTensor(), v2.ToDtype(torch.float32, scale=True),
              v2.Normalize(spec.mean, spec.std)]
    return v2.Compose(steps)


class PilDataset(torch.utils.data.Dataset):
    """uint8 arrays served as PIL images through a transform, as torchvision's CIFAR10 does."""

    def __init__(self, images, labels, transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def torchvision_loader(images, labels, spec: AugmentSpec, batch: int, workers: int, device):
    """The report's way: per-image torchvision transforms in DataLoader worker processes."""
    dataset = PilDataset(images, labels, torchvision_pipeline(spec))
    return torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True,
                                       num_workers=workers, persistent_workers=workers > 0,
                                       pin_memory=torch.device(device).type == "cuda")


def batches(loader, device, memory_format=torch.channels_last):
    """Endless (x, y) batches of ``loader`` on ``device`` in ``memory_format``, pass after pass."""
    while True:
        empty = True
        for x, y in loader:
            empty = False
            yield (x.to(device, non_blocking=True).contiguous(memory_format=memory_format),
                   y.to(device, non_blocking=True))
        if empty:
            raise ValueError("the loader gives no batch: the batch is larger than the data")


def training_step(model_name: str, s: dict, images, labels, device, workers: int = 0):
    """One SGD step of ``model_name`` on the next batch, with the switches of ``s``: loader
    ("torchvision" or make_loader's "torch"), batch, channels_last, amp (a dtype or None),
    bn_relu, compile. Built afresh: a new model, optimizer and loader."""
    torch.manual_seed(0)
    model = create_model(model_name, bn_relu=s["bn_relu"]).to(device)
    memory_format = torch.channels_last if s["channels_last"] else torch.contiguous_format
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    step_model = torch.compile(model) if s["compile"] else model
    if s["loader"] == "torchvision":
        loader = torchvision_loader(images, labels, get_preset("flip_crop"), s["batch"], workers,
                                    device)
    else:
        loader = make_loader(images, labels, get_preset("flip_crop"), s["batch"], train=True,
                             device=device, channels_last=s["channels_last"])
    stream = batches(loader, device, memory_format)

    def step():
        x, y = next(stream)
        with torch.autocast(device.type, dtype=s["amp"], enabled=s["amp"] is not None):
            loss = F.cross_entropy(step_model(x).float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step
