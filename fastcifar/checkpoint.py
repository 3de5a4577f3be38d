"""Checkpoints written atomically (temp file, then rename) and read with weights_only=True, and
the payloads of a run's best.pt and last.pt."""

import io
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
    buffer = io.BytesIO()  # serialised first: a full disk then fails as OSError(ENOSPC),
    torch.save(state, buffer)  # where torch's zip writer would raise a bare RuntimeError
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        err.filename = err.filename or str(path)  # fsync's error names no file
        raise
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
        lines = str(err).splitlines() or [type(err).__name__]
        reason = next((ln.strip() for ln in lines if "Unsupported global" in ln), lines[0])
        if "weights_only" in reason or "Weights only" in reason:  # torch's advice to load
            reason = "not a torch checkpoint"  # unsafely (weights_only=False) does not apply
        reason = reason.split(". ")[0].rstrip(".")
        raise CheckpointError(f"{path} is truncated or corrupt, or holds more than tensors and "
                              f"plain data ({reason})") from None


# ---- what a run's checkpoints hold -----------------------------------------------------------

FORMAT = 1  # bumped when a payload below changes shape; --resume refuses other formats


def best_payload(config: dict, model_state: dict, epoch: int, metrics: dict) -> dict:
    """best.pt: the evaluated weights (the EMA's, if any) of the best epoch so far."""
    return {"format": FORMAT, "config": config, "model": model_state, "epoch": epoch,
            "metrics": metrics}


def last_payload(config: dict, train_state: dict, epoch: int, history: list, best: dict,
                 device: torch.device) -> dict:
    """last.pt: everything --resume needs to go on as if never stopped: the TrainState's
    state_dict, the history, and both RNG states."""
    return {"format": FORMAT, "epoch": epoch, "config": config, **train_state,
            "history": history, "best": best, "rng_torch": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if device.type == "cuda" else []}


def load_resume(run_dir: Path) -> dict:
    """The last.pt of ``run_dir``; CheckpointError if missing, unreadable or another format."""
    path = Path(run_dir) / "last.pt"
    try:
        state = load_checkpoint(path)
    except CheckpointError as err:
        raise CheckpointError(f"{err}; {_best_status(Path(run_dir))}") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state.get('format')}, this "
                              f"fastcifar reads {FORMAT}")
    return state


def _best_status(run_dir: Path) -> str:
    """What a run folder whose last.pt cannot be read still offers."""
    best = run_dir / "best.pt"
    try:
        epoch = load_checkpoint(best)["epoch"]
    except CheckpointError:
        return f"{best} is missing or unreadable too: start the run again with another --out"
    return (f"{best} is intact (epoch {epoch}): evaluate it with python -m fastcifar.evaluate "
            f"{run_dir}, or start the run again with another --out")


def restore_rng(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["rng_torch"])
    if device.type == "cuda" and state.get("rng_cuda"):
        torch.cuda.set_rng_state_all(state["rng_cuda"])
