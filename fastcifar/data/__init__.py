"""CIFAR-10 on disk -> uint8 arrays in memory.

    from fastcifar.data import load_cifar10
    data = load_cifar10("data")          # or None: $FASTCIFAR_DATA, else ./data
    data.train_images                    # uint8 (50000, 32, 32, 3), NHWC
    data.train_labels                    # int64 (50000,)
"""

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cache import load_cache, save_cache
from .constants import (
    ARCHIVE_MD5,
    ARCHIVE_URL,
    CLASSES,
    MEAN,
    NUM_CLASSES,
    STD,
    TEST_SIZE,
    TRAIN_SIZE,
)  # fmt: skip
from .download import fetch_cifar10
from .errors import DataError
from .layouts import Layout, find_layout, places_looked, read_split

ENV_DATA_DIR = "FASTCIFAR_DATA"
ENV_DATA_URL = "FASTCIFAR_DATA_URL"

__all__ = [
    "CLASSES", "MEAN", "NUM_CLASSES", "STD", "TEST_SIZE", "TRAIN_SIZE",
    "Cifar10", "DataError", "load_cifar10", "resolve_data_dir",
]  # fmt: skip


@dataclass
class Cifar10:
    """The data set in memory: images uint8 (N, 32, 32, 3), labels int64 (N,)."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray
    folder: Path  # where it was read from
    layout: str  # "py" or "bin"
    from_cache: bool = False
    load_seconds: float = 0.0
    classes: tuple[str, ...] = field(default=CLASSES)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """Where to look for data: ``data_dir``, else $FASTCIFAR_DATA, else ./data."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get(ENV_DATA_DIR):
        return Path(os.environ[ENV_DATA_DIR]).expanduser()
    return Path("data")


def load_cifar10(
    data_dir: str | os.PathLike | None = None,
    download: bool = True,
    url: str | None = None,
    md5: str = ARCHIVE_MD5,
    cache: bool = True,
    progress: bool = True,
) -> Cifar10:
    """Load CIFAR-10 from the official python or binary layout at or inside ``data_dir``.

    When nothing is there and ``download`` is true, the official archive is downloaded into that
    folder (``url`` defaults to $FASTCIFAR_DATA_URL, else the official address), its MD5 checked
    and unpacked. Raises DataError, with the fix in its message, for missing or bad data.
    """
    start = time.perf_counter()
    root = resolve_data_dir(data_dir)
    layout = find_layout(root)
    if layout is None:
        made = _folders_to_make(root)
        below = made[-1].parent if made else root
        if below.exists() and not below.is_dir():
            raise DataError(f"--data-dir {root}: {below} is a file, not a folder; point "
                            "--data-dir at the folder that holds (or is to hold) "
                            "cifar-10-batches-py")
        if not download:
            raise _not_found(root, "downloading is switched off (--no-download)")
        url = url or os.environ.get(ENV_DATA_URL) or ARCHIVE_URL
        try:
            fetch_cifar10(root, url=url, md5=md5, progress=progress)
        except DataError as err:
            _remove_empty(made)
            raise _not_found(root, str(err)) from None
        except OSError as err:  # the folder cannot be made or written
            _remove_empty(made)
            raise _not_found(root, f"{root} cannot be written ({err.strerror or err})") from None
        except BaseException:
            _remove_empty(made)
            raise
        layout = find_layout(root)
        if layout is None:
            raise DataError(f"the archive from {url} held no CIFAR-10 batches; see {root}")
    arrays, from_cache = _read(layout, cache)
    return Cifar10(**arrays, folder=layout.folder, layout=layout.kind, from_cache=from_cache,
                   load_seconds=time.perf_counter() - start)


def _read(layout: Layout, cache: bool) -> tuple[dict[str, np.ndarray], bool]:
    files = [f for f in layout.train_files + layout.test_files if f.exists()]
    if cache and len(files) == len(layout.train_files) + len(layout.test_files):
        cached = load_cache(layout.folder, files)
        if cached is not None:
            return cached, True
    train_images, train_labels = read_split(layout, "train")
    test_images, test_labels = read_split(layout, "test")
    arrays = dict(train_images=train_images, train_labels=train_labels,
                  test_images=test_images, test_labels=test_labels)
    if cache:
        save_cache(layout.folder, files, arrays)
    return arrays, False


def _folders_to_make(root: Path) -> list[Path]:
    """The folders a download into ``root`` makes, deepest first."""
    made = []
    while not root.exists() and root != root.parent:
        made.append(root)
        root = root.parent
    return made


def _remove_empty(folders: list[Path]) -> None:
    """A failed download leaves no empty folders behind (a partial file is its own to go)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _not_found(root: Path, why: str) -> DataError:
    looked = ", ".join(str(p) for p in places_looked(root))
    return DataError(
        f"no CIFAR-10 data found (looked in {looked}) and could not download it: {why}.\n"
        f"Fix: put the official cifar-10-batches-py (or cifar-10-batches-bin) folder in {root}, "
        f"or point at one with --data-dir DIR or {ENV_DATA_DIR}=DIR"
        + (", or connect to the internet and run again." if "switched off" not in why else
           ", or drop --no-download to fetch it (163 MB).")
    )
