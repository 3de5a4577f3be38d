"""A fast second load: the decoded arrays kept as one uncompressed .npz beside the batch files.

The cache records the name, size and modification time of every source file; any change to the
sources (or to the cache format) makes it stale, and it is rebuilt on the next load.
"""

import json
import os
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np

CACHE_NAME = ".fastcifar-cache.npz"
CACHE_VERSION = 1
ARRAYS = ("train_images", "train_labels", "test_images", "test_labels")


def fingerprint(files: list[Path]) -> str:
    stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
    return json.dumps({"version": CACHE_VERSION, "files": stats})


def load_cache(folder: Path, files: list[Path]) -> dict[str, np.ndarray] | None:
    """The cached arrays if the cache exists and matches ``files``; None otherwise."""
    path = Path(folder) / CACHE_NAME
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fingerprint(files):
                return None
            return {name: z[name] for name in ARRAYS}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None  # unreadable cache: rebuild it from the sources


def save_cache(folder: Path, files: list[Path], arrays: dict[str, np.ndarray]) -> bool:
    """Write the cache atomically (temp file, then rename). False, with a warning, if it can't."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".fastcifar-cache-", suffix=".tmp", dir=folder)
    except OSError as err:
        warnings.warn(f"not caching CIFAR-10 in {folder} ({err}); loads stay slow", stacklevel=3)
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, fingerprint=np.array(fingerprint(files)), **arrays)
        os.replace(tmp, folder / CACHE_NAME)
        return True
    except OSError as err:
        warnings.warn(f"not caching CIFAR-10 in {folder} ({err}); loads stay slow", stacklevel=3)
        return False
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
