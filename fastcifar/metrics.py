"""Pure functions on predictions and metric histories: thresholds, confusion matrices."""

import numpy as np
import torch

THRESHOLDS = (86.0, 88.0, 90.0, 92.0, 94.0)  # the report's benchmarks (%), plus 94


def threshold_table(history: list[dict], key: str = "test_acc",
                    thresholds=THRESHOLDS) -> list[dict]:
    """For each threshold, the first epoch whose ``key`` accuracy (%) reached it and the training
    time spent up to the end of that epoch (evaluation excluded); None where never reached."""
    rows = []
    for t in thresholds:
        hit = next((h for h in history if h.get(key) is not None and h[key] >= t), None)
        rows.append({"threshold": t, "epoch": hit["epoch"] if hit else None,
                     "train_seconds": hit["train_seconds_total"] if hit else None})
    return rows


def confusion_matrix(preds: torch.Tensor, labels: torch.Tensor, num_classes: int) -> np.ndarray:
    """counts[true, predicted], int64 (num_classes, num_classes)."""
    flat = labels.long().cpu() * num_classes + preds.long().cpu()
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).numpy()


def per_class_accuracy(confusion: np.ndarray) -> np.ndarray:
    """Accuracy (%) of each true class; NaN for a class with no images."""
    totals = confusion.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return 100.0 * np.diag(confusion) / totals
