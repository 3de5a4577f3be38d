"""The measured decisions' cache: one JSON file per key in ``$XDG_CACHE_HOME/fastcifar`` (else
``~/.cache/fastcifar``), keyed by what a timing depends on: the device, the software versions and
the run's shape. Written atomically; a corrupt entry is ignored (and rewritten by the caller)."""

import contextlib
import hashlib
import importlib.metadata
import json
import os
import sys
import tempfile
from pathlib import Path

import torch

from ..env import cpu_flags, cpu_name, triton_version


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


def device_identity(device: torch.device) -> dict:
    """What a timing depends on besides the software: the CPU (model, flags, threads) or GPU."""
    ident = {"type": device.type, "cpu": cpu_name(), "cpu_flags": cpu_flags(),
             "threads": torch.get_num_threads()}
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        ident |= {"gpu": props.name, "capability": f"{props.major}.{props.minor}"}
    return ident


def dali_version() -> str | None:
    for dist in ("nvidia-dali-cuda130", "nvidia-dali-cuda120", "nvidia-dali-cuda110"):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return None


def software_versions() -> dict:
    return {"torch": str(torch.__version__), "triton": triton_version(), "dali": dali_version(),
            "cuda": torch.version.cuda}


def cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastcifar``, else ``~/.cache/fastcifar``."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "fastcifar"


def cache_enabled() -> bool:
    """False with ``FASTCIFAR_AUTO_CACHE=off`` (or 0, no, false) in the environment."""
    env = os.environ.get("FASTCIFAR_AUTO_CACHE", "on").strip().lower()
    return env not in ("off", "0", "no", "false")


def cache_path(key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"auto-{digest}.json"


def read_cache(key: dict) -> dict | None:
    """The record cached under ``key``, or None: absent, unreadable, corrupt or another key's."""
    path = cache_path(key)
    try:
        entry = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        warn(f"ignored an unreadable auto-decision cache entry {path} ({err}); measuring anew")
        return None
    if not isinstance(entry, dict) or entry.get("key") != key \
            or not isinstance(entry.get("record"), dict):
        return None
    return entry["record"]


def write_cache(key: dict, record: dict) -> None:
    """Write atomically (a temporary file renamed into place): a reader, or a second run
    writing at the same moment, never sees half a file. A cache that cannot be written is
    skipped with a warning; the run goes on."""
    path = cache_path(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"key": key, "record": record}, f, indent=1)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as err:
        warn(f"could not write the auto-decision cache {path} ({err.strerror or err}); "
             "the next run measures again")
