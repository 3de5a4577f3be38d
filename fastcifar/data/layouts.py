"""Readers for the official CIFAR-10 layouts, ``cifar-10-batches-py`` and ``cifar-10-batches-bin``.

Both give images as uint8 arrays (N, 32, 32, 3) (NHWC) and labels as int64 arrays (N,).
"""

import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .constants import BIN_FOLDER, NUM_CLASSES, PIXELS, PY_FOLDER, TEST_FILES, TRAIN_FILES
from .errors import DataError


@dataclass(frozen=True)
class Layout:
    """Where a CIFAR-10 folder is, which layout it has, and its batch files in order."""

    kind: str  # "py" or "bin"
    folder: Path

    @property
    def train_files(self) -> list[Path]:
        suffix = ".bin" if self.kind == "bin" else ""
        return [self.folder / f"{name}{suffix}" for name in TRAIN_FILES]

    @property
    def test_files(self) -> list[Path]:
        suffix = ".bin" if self.kind == "bin" else ""
        return [self.folder / f"{name}{suffix}" for name in TEST_FILES]


def find_layout(root: Path) -> Layout | None:
    """The CIFAR-10 folder at ``root`` or just inside it (python layout first), or None."""
    root = Path(root)
    for folder in (root, root / PY_FOLDER):
        if (folder / "data_batch_1").is_file() or (folder / "test_batch").is_file():
            return Layout("py", folder)
    for folder in (root, root / BIN_FOLDER):
        if (folder / "data_batch_1.bin").is_file() or (folder / "test_batch.bin").is_file():
            return Layout("bin", folder)
    return None


def places_looked(root: Path) -> list[Path]:
    """The folders ``find_layout`` checks, for error messages."""
    root = Path(root)
    return [root, root / PY_FOLDER, root / BIN_FOLDER]


class _BatchUnpickler(pickle.Unpickler):
    """Unpickles a CIFAR batch and nothing else: a batch holds numpy arrays, lists and strings,
    so any other global in the stream (which could run arbitrary code) is refused."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),  # how Python 3 writes bytes into a protocol-2 pickle
    }

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name} in a CIFAR batch")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            # numpy 2 moved numpy.core to numpy._core; go there directly, past its deprecation shim
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _fix(path: Path, what: str) -> DataError:
    return DataError(
        f"{path}: {what}. The file is truncated or corrupt: delete the folder {path.parent} "
        "and download or unpack CIFAR-10 again."
    )


def read_python_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch -> (images uint8 (N, 32, 32, 3), labels int64 (N,)).

    Keys may load as ``str`` or ``bytes`` (Python 2 pickles give bytes under encoding='bytes',
    batches written by Python 3 give str): both are accepted.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            batch = _BatchUnpickler(f, encoding="bytes").load()
    except FileNotFoundError:
        raise _fix(path, "file missing") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, KeyError) as err:
        raise _fix(path, f"cannot be unpickled ({err})") from None
    if not isinstance(batch, dict):
        raise _fix(path, f"holds a {type(batch).__name__}, not a dict")
    batch = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or "labels" not in batch:
        raise _fix(path, f"has no 'data' and 'labels' entries (keys: {sorted(batch)})")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != PIXELS:
        raise _fix(path, f"'data' is {data.dtype} {data.shape}, expected uint8 (N, {PIXELS})")
    # rows hold 1024 R, then 1024 G, then 1024 B values: (N, C, H, W) -> (N, H, W, C)
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), _check_labels(path, batch["labels"], len(images))


def read_binary_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch (records of 1 label byte + 3072 pixel bytes) -> (images, labels)."""
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except FileNotFoundError:
        raise _fix(path, "file missing") from None
    record = 1 + PIXELS
    if raw.size == 0 or raw.size % record:
        raise _fix(path, f"is {raw.size} bytes, not a whole number of {record}-byte records")
    raw = raw.reshape(-1, record)
    images = raw[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), _check_labels(path, raw[:, 0], len(images))


def _check_labels(path: Path, labels, n: int) -> np.ndarray:
    try:
        labels = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError):
        raise _fix(path, "labels are not integers") from None
    if labels.shape != (n,):
        raise _fix(path, f"has {labels.size} labels for {n} images")
    if n and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
        bad = labels[(labels < 0) | (labels >= NUM_CLASSES)][0]
        raise _fix(path, f"has label {bad}, outside 0..{NUM_CLASSES - 1}")
    return labels


def read_split(layout: Layout, split: str) -> tuple[np.ndarray, np.ndarray]:
    """All batches of ``split`` ("train" or "test") concatenated in the official order."""
    files = {"train": layout.train_files, "test": layout.test_files}[split]
    read = read_python_batch if layout.kind == "py" else read_binary_batch
    parts = [read(path) for path in files]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
