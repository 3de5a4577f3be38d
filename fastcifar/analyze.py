"""Data analysis, as in the report: ``python -m fastcifar.analyze --data-dir DIR --out DIR``.

Writes Figure 1 (example images per class) and Figure 2 (samples per class, train and test) as
PNGs, and prints the per-channel mean and std of both splits. With ``--augment PRESET`` (and
``--backend torch|dali``) it also writes Figure 3: originals beside augmented copies.
"""

import argparse
import sys
from pathlib import Path

import numpy as np

from .cli import add_data_flags, data_options
from .data import DataError, load_cifar10
from .figures import pyplot as _pyplot
from .lifecycle import run_cli


def channel_stats(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std of uint8 NHWC images, pixels scaled to [0, 1]."""
    pixels = images.reshape(-1, images.shape[-1])
    total = np.zeros(pixels.shape[1])
    total_sq = np.zeros(pixels.shape[1])
    for start in range(0, len(pixels), 1 << 22):  # in chunks: float64 copies of 150M values are big
        chunk = pixels[start : start + (1 << 22)].astype(np.float64) / 255.0
        total += chunk.sum(0)
        total_sq += (chunk**2).sum(0)
    mean = total / len(pixels)
    return mean, np.sqrt(total_sq / len(pixels) - mean**2)


def plot_examples(images, labels, classes, path: Path, per_class: int = 10, seed: int = 0):
    """Figure 1: a grid with one row per class and ``per_class`` random examples."""
    plt = _pyplot()
    rng = np.random.default_rng(seed)
    size = (per_class * 0.9, len(classes) * 0.95)
    fig, axes = plt.subplots(len(classes), per_class, figsize=size)
    for row, name in enumerate(classes):
        picks = rng.choice(np.flatnonzero(labels == row), size=per_class, replace=False)
        for col, index in enumerate(picks):
            ax = axes[row, col]
            ax.imshow(images[index], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=9)
    fig.suptitle("CIFAR-10: random examples per class", y=0.91)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_class_counts(train_labels, test_labels, classes, path: Path):
    """Figure 2: samples per class, train and test side by side."""
    plt = _pyplot()
    k = len(classes)
    train, test = np.bincount(train_labels, minlength=k), np.bincount(test_labels, minlength=k)
    x = np.arange(k)
    fig, ax = plt.subplots(figsize=(9, 4))
    for offset, counts, label in ((-0.2, train, "train"), (0.2, test, "test")):
        bars = ax.bar(x + offset, counts, width=0.4, label=f"{label} ({counts.sum():,})")
        ax.bar_label(bars, fontsize=7)
    ax.set_xticks(x, classes, rotation=30)
    ax.set_ylabel("images")
    ax.set_title("CIFAR-10: samples per class")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=2)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_augmentations(images, labels, classes, path: Path, preset: str, backend: str = "torch",
                       rows: int = 8, copies: int = 7, seed: int = 0):
    """Figure 3: ``rows`` random training images, each followed by ``copies`` augmentations."""
    from .augment import get_preset
    from .augment.preview import augment_examples

    plt = _pyplot()
    picks = np.random.default_rng(seed).choice(len(images), size=rows, replace=False)
    augmented = augment_examples(images[picks], get_preset(preset), copies, backend, seed)
    fig, axes = plt.subplots(rows, copies + 1, figsize=((copies + 1) * 0.95, rows * 0.95))
    for row, index in enumerate(picks):
        for col in range(copies + 1):
            ax = axes[row, col]
            ax.imshow(images[index] if col == 0 else augmented[row, col - 1],
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(classes[labels[index]], rotation=0, ha="right", va="center",
                                fontsize=8)
    axes[0, 0].set_title("original", fontsize=8)
    fig.suptitle(f"augmentation preset {preset!r} ({backend} backend)", y=0.93)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m fastcifar.analyze", description=__doc__)
    add_data_flags(parser)
    parser.add_argument("--out", default="runs/analysis", help="folder for the figures")
    parser.add_argument("--seed", type=int, default=0, help="which examples Figures 1, 3 show")
    parser.add_argument("--augment", metavar="PRESET", default=None,
                        help="also draw Figure 3 for this augmentation preset (e.g. flip_affine)")
    parser.add_argument("--backend", default="torch", choices=["torch", "dali"],
                        help="which augmentation backend draws Figure 3")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_cli(_main, argv)


def _main(argv: list[str] | None) -> int:
    parser = get_args_parser()
    args = parser.parse_args(argv)
    if args.seed < 0:
        parser.error(f"--seed must be 0 or more, not {args.seed}")
    if args.augment is not None:
        from .augment import PRESETS

        if args.augment not in PRESETS:
            parser.error(f"--augment {args.augment!r} is not a preset; valid: {', '.join(PRESETS)}")
    try:
        data = load_cifar10(**data_options(args))
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    fig1, fig2 = out / "fig1_examples.png", out / "fig2_class_counts.png"
    try:
        out.mkdir(parents=True, exist_ok=True)
        plot_examples(data.train_images, data.train_labels, data.classes, fig1, seed=args.seed)
        plot_class_counts(data.train_labels, data.test_labels, data.classes, fig2)
    except OSError as err:
        print(f"error: --out {out} cannot be written ({err.strerror or err}); pick a folder "
              "you can write to with --out DIR", file=sys.stderr)
        return 2
    n_train, n_test = len(data.train_labels), len(data.test_labels)
    print(f"CIFAR-10 at {data.folder}: {n_train} train, {n_test} test")
    for split in ("train", "test"):
        mean, std = channel_stats(getattr(data, f"{split}_images"))
        print(f"  {split:5s} mean (R, G, B) = {np.array2string(mean, precision=4)}"
              f"  std = {np.array2string(std, precision=4)}")
    print(f"wrote {fig1} and {fig2}")
    if args.augment is not None:
        fig3 = out / f"fig3_augment_{args.augment}_{args.backend}.png"
        try:
            plot_augmentations(data.train_images, data.train_labels, data.classes, fig3,
                               args.augment, args.backend, seed=args.seed)
        except ImportError as err:  # the dali backend without DALI installed
            print(f"error: {err}", file=sys.stderr)
            return 2
        print(f"wrote {fig3}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
