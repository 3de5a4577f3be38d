"""Small CIFAR-format data sets for tests: any size, random images a network can learn from.

Each class has its own smooth colour pattern; images are that pattern plus noise, so a small
network separates the classes within an epoch or two, while no two images are the same.
"""

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .constants import BIN_FOLDER, CLASSES, NUM_CLASSES, PY_FOLDER, TEST_FILES, TRAIN_FILES


def make_arrays(n: int, seed: int = 0, noise: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 32, 32, 3), labels int64 (n,)), classes balanced and shuffled."""
    rng = np.random.default_rng(seed)
    # one fixed 4x4 colour pattern per class (same for every seed), upsampled to 32x32
    patterns = np.random.default_rng(12345).uniform(40, 215, size=(NUM_CLASSES, 4, 4, 3))
    patterns = patterns.repeat(8, axis=1).repeat(8, axis=2)
    labels = rng.permutation(np.arange(n) % NUM_CLASSES).astype(np.int64)
    images = patterns[labels] + rng.normal(0.0, noise, size=(n, 32, 32, 3))
    return np.clip(images, 0, 255).round().astype(np.uint8), labels


def _split(n: int, parts: int) -> list[slice]:
    edges = np.linspace(0, n, parts + 1).round().astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def _py_batch(images: np.ndarray, labels: np.ndarray, name: str, key_style: str) -> bytes:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)  # 1024 R, 1024 G, 1024 B
    batch = {"batch_label": name, "labels": [int(v) for v in labels], "data": rows,
             "filenames": [f"synthetic_{i:05d}.png" for i in range(len(images))]}
    if key_style == "bytes":  # as the official Python 2 pickles load under encoding='bytes'
        batch = {k.encode(): v for k, v in batch.items()}
    elif key_style != "str":
        raise ValueError(f"key_style must be 'str' or 'bytes', not {key_style!r}")
    return pickle.dumps(batch, protocol=2)


def _bin_batch(images: np.ndarray, labels: np.ndarray) -> bytes:
    rows = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    return np.concatenate([labels.astype(np.uint8)[:, None], rows], axis=1).tobytes()


def batch_files(
    n_train: int = 500, n_test: int = 100, seed: int = 0, layout: str = "py",
    key_style: str = "bytes",
) -> dict[str, bytes]:
    """The files of a synthetic data set: {path relative to the data root: content}."""
    train, test = make_arrays(n_train, seed), make_arrays(n_test, seed + 1)
    folder = {"py": PY_FOLDER, "bin": BIN_FOLDER}[layout]
    files = {}
    for name, (images, labels), parts in ((TRAIN_FILES, train, 5), (TEST_FILES, test, 1)):
        for file_name, part in zip(name, _split(len(labels), parts)):
            if layout == "py":
                content = _py_batch(images[part], labels[part], file_name, key_style)
            else:
                content, file_name = _bin_batch(images[part], labels[part]), f"{file_name}.bin"
            files[f"{folder}/{file_name}"] = content
    if layout == "py":
        meta = {"label_names": list(CLASSES), "num_cases_per_batch": len(train[1]) // 5}
        if key_style == "bytes":
            meta = {k.encode(): v for k, v in meta.items()}
        files[f"{folder}/batches.meta"] = pickle.dumps(meta, protocol=2)
    else:
        files[f"{folder}/batches.meta.txt"] = ("\n".join(CLASSES) + "\n").encode()
    return files


def write_synthetic_cifar(root: Path, n_train: int = 500, n_test: int = 100, seed: int = 0,
                          layout: str = "py", key_style: str = "bytes") -> Path:
    """Write a synthetic data set in an official layout under ``root``; returns its folder."""
    root = Path(root)
    for rel, content in batch_files(n_train, n_test, seed, layout, key_style).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(content)
    return root / {"py": PY_FOLDER, "bin": BIN_FOLDER}[layout]


def write_synthetic_archive(path: Path, n_train: int = 500, n_test: int = 100,
                            seed: int = 0) -> Path:
    """A cifar-10-python.tar.gz look-alike holding a synthetic python-layout data set."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for rel, content in batch_files(n_train, n_test, seed, "py").items():
            info = tarfile.TarInfo(rel)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path
