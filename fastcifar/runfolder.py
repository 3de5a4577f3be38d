"""A run folder belongs to one run: an exclusive lock while a run writes it, names that never
collide, no writing into a folder of the user's, no temporary files left from a crashed write.

The lock is ``flock`` on ``DIR/.lock``: the kernel drops it when its process ends however it
ends, so a crashed run's folder is simply taken over by the next one; the file names its
holder, so a refused second run can say whose folder it is.
"""

import errno
import os
import socket
import sys
import time
from pathlib import Path

from .checkpoint import CheckpointError
from .recipes import ConfigError

try:
    import fcntl
except ImportError:  # Windows: no flock; the folder checks still hold, the lock does not
    fcntl = None

LOCK = ".lock"
# what a run (and a sweep, train.log) writes into its folder; anything else is the user's
RUN_FILES = {"config.json", "metrics.jsonl", "summary.json", "best.pt", "last.pt", "curves.png",
             "confusion.png", "per_class.png", "train.log", LOCK}
RESUMABLE = "last.pt"


class FolderInUse(ConfigError):
    """Another live process holds the run folder."""


def is_litter(name: str) -> bool:
    """A temporary file of a write that a crash cut short (checkpoint.save_checkpoint,
    report._replace, and the write probe of earlier fastcifar versions)."""
    return (name.startswith(".") and name.endswith(".tmp")) or name.endswith(".json.tmp") \
        or name.endswith(".jsonl.tmp") or name.startswith(".write-check.")


def default_out(recipe_name: str, root: Path = Path("runs")) -> Path:
    """A new folder ``root/<recipe>-<time>``, made here (mkdir is atomic, so two runs started
    in the same second get ``...-2`` and so on, never the same folder)."""
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{recipe_name}-{time.strftime('%Y%m%d-%H%M%S')}"
    for n in range(1, 10_000):
        out = root / (stem if n == 1 else f"{stem}-{n}")
        try:
            out.mkdir()
            return out
        except FileExistsError:
            continue
    raise ConfigError(f"{root} holds 10000 runs named {stem}-*; pick a folder with --out DIR")


class RunFolder:
    """The held folder of one run: ``open`` it, ``close`` it when the run ends."""

    def __init__(self, path: Path, fd: int, made: bool):
        self.path, self._fd, self.made = path, fd, made
        self.new = False  # a new run's folder, once checked: its files are this run's

    @classmethod
    def open(cls, path: Path, resume: bool = False, made: bool = False) -> "RunFolder":
        """Lock ``path`` (made unless resuming; ``made``: the caller made it) and clear its
        litter. A new run refuses a folder that holds a run or files of the user's."""
        path = Path(path)
        if resume and path.is_file():
            raise CheckpointError(f"{path} is a file; --resume takes the run folder: "
                                  f"--resume {path.parent}")
        if resume and not path.is_dir():
            raise CheckpointError(f"no checkpoint at {path / RESUMABLE}: {path} is no folder")
        if not resume and not path.exists():
            made = _make(path) or made
        try:
            fd = _lock(path, create=not resume)
        except BaseException:
            if made:
                _remove_if_empty(path)
            raise
        folder = cls(path, fd, made)
        try:
            folder._check(resume)
        except BaseException:
            folder.close()
            raise
        folder.new = not resume
        return folder

    def _check(self, resume: bool) -> None:
        names = [p.name for p in self.path.iterdir()]
        for name in filter(is_litter, names):
            (self.path / name).unlink(missing_ok=True)
        if resume:
            return
        if RESUMABLE in names:
            raise ConfigError(f"{self.path} already holds a run; --resume {self.path} to "
                              "continue it, or pick another --out")
        foreign = sorted(n for n in names if n not in RUN_FILES and not is_litter(n))
        if foreign:
            shown = ", ".join(foreign[:3]) + (", ..." if len(foreign) > 3 else "")
            raise ConfigError(f"--out {self.path} is a folder that is not a run (it holds "
                              f"{shown}); give a new or empty folder with --out DIR")

    def close(self) -> None:
        """Release the lock. A folder that holds nothing to resume is not left behind: the
        run's own files go, and the folder too if this run made it."""
        if self._fd is None:
            return
        try:
            if self.new and not (self.path / RESUMABLE).exists():
                _clear(self.path, self.made)
            (self.path / LOCK).unlink(missing_ok=True)  # while held: see _lock
        finally:
            os.close(self._fd)
            self._fd = None
        if self.made:
            _remove_if_empty(self.path)


def _make(path: Path) -> bool:
    try:
        path.mkdir(parents=True)
        return True
    except FileExistsError:
        return False  # another run made it a moment ago: the lock decides
    except OSError as err:
        raise _unwritable(path, err) from None


def _unwritable(path: Path, err: OSError) -> ConfigError:
    return ConfigError(f"--out {path} cannot be written ({err.strerror}); pick a folder you "
                       "can write to with --out DIR")


def _lock(path: Path, create: bool) -> int:
    """Hold ``path/.lock``; FolderInUse if a live process holds it. The holder unlinks the file
    before it lets go, so a lock taken on an unlinked file is retried on the new one."""
    for _ in range(100):
        try:
            fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except FileNotFoundError:  # the folder's last run removed it a moment ago
            if not create:
                raise CheckpointError(f"no checkpoint at {path / RESUMABLE}") from None
            _make(path)
            continue
        except OSError as err:
            raise _unwritable(path, err) from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise _unwritable(path, err) from None
            raise FolderInUse(f"{path} is in use by another run ({_holder(path)}); wait for it "
                              "to end, or pick another --out") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path / LOCK).st_ino
        except FileNotFoundError:
            same = False
        if same:
            _write_holder(fd)
            return fd
        os.close(fd)
    raise ConfigError(f"could not lock {path}: it keeps changing; try again")


def _write_holder(fd: int) -> None:
    who = (f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}: "
           f"{' '.join(sys.argv)[:300]}")
    os.ftruncate(fd, 0)
    os.pwrite(fd, who.encode(errors="replace"), 0)


def _holder(path: Path) -> str:
    try:
        return (path / LOCK).read_text(errors="replace").strip() or "starting up"
    except OSError:
        return "starting up"


def _clear(path: Path, made: bool) -> None:
    """A run's own files, in a folder that holds nothing to resume (a start that failed or was
    stopped before its first checkpoint); a folder this run made goes whole, but for a
    sweep's train.log."""
    if made:
        for entry in path.iterdir():
            if entry.name in RUN_FILES - {LOCK, "train.log"} or is_litter(entry.name):
                entry.unlink(missing_ok=True)
        return
    for name in ("config.json", "metrics.jsonl"):
        (path / name).unlink(missing_ok=True)


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:
        pass  # not empty (a sweep's train.log, a file of the user's): it stays

