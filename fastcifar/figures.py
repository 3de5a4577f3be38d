"""Figures of a run: training curves, confusion matrix, per-class accuracy, and overlays.

Reads metric histories and matrices only; never imports the engine. Drawn off-screen (Agg).
"""

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator  # no backend chosen by this import

from .metrics import THRESHOLDS


def pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no screen needed
    import matplotlib.pyplot as plt

    return plt



def plot_curves(history: list[dict], path: Path, title: str = "") -> None:
    """Loss and accuracy per epoch: train, validation (if any) and test, with the benchmarks."""
    plt = pyplot()
    epochs = [h["epoch"] for h in history]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for split, style in (("train", "-"), ("val", "--"), ("test", "-")):
        if history and history[0].get(f"{split}_loss") is not None:
            ax_loss.plot(epochs, [h[f"{split}_loss"] for h in history], style, marker=".",
                         label=split)
            ax_acc.plot(epochs, [h[f"{split}_acc"] for h in history], style, marker=".",
                        label=split)
    for t in THRESHOLDS:
        ax_acc.axhline(t, color="grey", lw=0.5, ls=":")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy (dotted: 86-94 %)")
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_confusion(confusion: np.ndarray, classes, path: Path, title: str = "") -> None:
    """Counts of true (rows) against predicted (columns) classes."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 6))
    image = ax.imshow(confusion, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046)
    ticks = np.arange(len(classes))
    ax.set_xticks(ticks, classes, rotation=45, ha="right")
    ax.set_yticks(ticks, classes)
    ax.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (test set)")
    bright = confusion.max() / 2
    for i, j in np.ndindex(confusion.shape):
        ax.text(j, i, confusion[i, j], ha="center", va="center", fontsize=7,
                color="white" if confusion[i, j] > bright else "black")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_per_class(accuracy: np.ndarray, classes, path: Path, title: str = "") -> None:
    """Accuracy (%) of each class as bars, the mean as a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 3.5))
    bars = ax.bar(classes, accuracy)
    ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.axhline(np.nanmean(accuracy), color="black", lw=0.8, ls="--", label="mean")
    ax.set(ylabel="accuracy (%)", ylim=(0, 105), title=title or "per-class accuracy (test set)")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(loc="lower right")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_overlay(curves: dict[str, list[dict]], path: Path, key: str = "test_acc",
                 title: str = "", marks: dict[str, tuple[float, float]] | None = None) -> None:
    """One line per run: ``key`` against epoch (e.g. the six Table-1 rows' test accuracy);
    ``marks`` adds labelled single points, (epoch, value), such as a published best epoch."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, history in curves.items():
        ax.plot([h["epoch"] for h in history], [h[key] for h in history], marker=".", label=name)
    for name, (x, y) in (marks or {}).items():
        ax.plot([x], [y], marker="*", markersize=12, ls="none", label=f"{name}: {y:g} @ {x:g}")
    for t in THRESHOLDS:
        ax.axhline(t, color="grey", lw=0.5, ls=":")
    ax.set(xlabel="epoch", ylabel=key.replace("_", " ") + " (%)", title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
