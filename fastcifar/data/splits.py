"""What a run trains and evaluates on: the validation split held out of the training set, and
the quick-check subsets, all as uint8 arrays (the loaders come later)."""

from dataclasses import dataclass

import numpy as np

from .errors import DataError

Arrays = tuple[np.ndarray, np.ndarray]  # (uint8 images (N, 32, 32, 3), int64 labels (N,))


@dataclass
class Splits:
    train: Arrays
    val: Arrays | None  # None without --val-split
    test: Arrays


def stratified_split(labels: np.ndarray, n_val: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, validation indices): ``n_val`` held out, classes in proportion, seeded.

    Each class gives round(n_val * its share) images (largest remainders fill the rest), so the
    validation set has the class balance of the training set.
    """
    labels = np.asarray(labels)
    if not 0 < n_val < len(labels):
        raise ValueError(f"validation split must be between 1 and {len(labels) - 1}, not {n_val}")
    classes, counts = np.unique(labels, return_counts=True)
    exact = n_val * counts / counts.sum()
    take = np.floor(exact).astype(int)
    take[np.argsort(exact - take)[::-1][: n_val - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    val = np.concatenate([
        rng.permutation(np.flatnonzero(labels == c))[:k] for c, k in zip(classes, take)
    ])  # fmt: skip
    val.sort()
    train = np.setdiff1d(np.arange(len(labels)), val)
    return train, val


def make_splits(data, val_split: int = 0, seed: int = 0, train_subset: int | None = None,
                test_subset: int | None = None) -> Splits:
    """``data`` (a Cifar10) cut for one run: ``val_split`` training images held out (stratified,
    seeded), then the first ``train_subset`` / ``test_subset`` images of what is left."""
    train_x, train_y = data.train_images, data.train_labels
    val = None
    if val_split:
        if val_split >= len(train_y):
            raise DataError(f"--val-split {val_split} leaves no training images "
                            f"(the training set has {len(train_y)})")
        keep, held = stratified_split(train_y, val_split, seed=seed)
        val = (train_x[held], train_y[held])
        train_x, train_y = train_x[keep], train_y[keep]
    test_x, test_y = data.test_images, data.test_labels
    train_subset, test_subset = train_subset or None, test_subset or None  # 0: everything
    return Splits((train_x[:train_subset], train_y[:train_subset]), val,
                  (test_x[:test_subset], test_y[:test_subset]))
