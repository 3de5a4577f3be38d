"""Checkpoints written atomically (temp file, then rename) and read with weights_only=True."""

import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch


class CheckpointError(Exception):
    """A checkpoint missing or unreadable; the message names the file and the fix."""


def save_checkpoint(state: dict, path: Path) -> None:
    """Write ``state`` to ``path`` so that a crash at any moment leaves the old file or the new
    one, never half of one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    """Read a checkpoint (tensors, numbers, strings, lists and dicts only)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError) as err:
        lines = str(err).splitlines()
        reason = next((ln.strip() for ln in lines if "Unsupported global" in ln), lines[0])
        raise CheckpointError(f"{path} is truncated or corrupt, or holds more than tensors and "
                              f"plain data ({reason}); use another checkpoint or start the run "
                              "again") from None
