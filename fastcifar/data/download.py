"""Fetch the official CIFAR-10 archive, check its MD5, and unpack it safely."""

import hashlib
import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from .constants import ARCHIVE_MD5, ARCHIVE_NAME, ARCHIVE_URL
from .errors import DataError

_CHUNK = 1 << 20


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download_archive(
    dest: Path, url: str = ARCHIVE_URL, md5: str = ARCHIVE_MD5, progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` to ``dest`` (via a ``.part`` file), verifying its length and MD5.

    On any failure nothing is left at ``dest`` and the error names the URL and the fix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest, received = hashlib.md5(), 0
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(part, "wb") as out:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            with tqdm(total=total, unit="B", unit_scale=True, desc=f"download {dest.name}",
                      disable=not progress, leave=False) as bar:
                for block in iter(lambda: response.read(_CHUNK), b""):
                    out.write(block)
                    digest.update(block)
                    received += len(block)
                    bar.update(len(block))
        if total is not None and received != total:
            raise DataError(f"download of {url} was cut short: got {received} of {total} bytes. "
                            "Check the connection and run again.")
    except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
        part.unlink(missing_ok=True)
        if isinstance(err, http.client.IncompleteRead):
            raise DataError(f"download of {url} was cut short ({err!r}). Check the connection "
                            "and run again.") from None
        raise DataError(f"could not download {url}: {err}") from None
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if md5 and digest.hexdigest() != md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{dest.name} downloaded from {url} is corrupt: MD5 {digest.hexdigest()}, "
                        f"expected {md5}. Run again; if it persists, download it by hand.")
    os.replace(part, dest)
    return dest


def _check_member(member: tarfile.TarInfo, dest: Path) -> None:
    """Refuse anything that could land outside ``dest`` or is not a plain file or folder."""
    target = (dest / member.name).resolve()
    if os.path.isabs(member.name) or ".." in Path(member.name).parts or not (
        target == dest or dest in target.parents
    ):
        raise DataError(f"archive member {member.name!r} would escape {dest}; refusing to unpack")
    if not (member.isfile() or member.isdir()):
        raise DataError(f"archive member {member.name!r} is a link or device; refusing to unpack")


def extract_archive(archive: Path, dest: Path) -> None:
    """Unpack a .tar.gz into ``dest``, all members checked first; atomic per top-level folder."""
    archive, dest = Path(archive), Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=dest))
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, staging.resolve())
            tar.extractall(staging, members=members, **_tar_filter())
        for item in staging.iterdir():
            target = dest / item.name
            if target.is_dir():  # an incomplete earlier copy: the verified archive replaces it
                shutil.rmtree(target)
            os.replace(item, target)
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{archive} is truncated or corrupt ({err}). Delete it and download "
                        "again.") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tar_filter() -> dict:
    # Python >= 3.12 (and 3.10.12 / 3.11.4) has extraction filters; "data" is the safe one.
    return {"filter": "data"} if hasattr(tarfile, "data_filter") else {}


def fetch_cifar10(
    root: Path, url: str = ARCHIVE_URL, md5: str = ARCHIVE_MD5, progress: bool = True
) -> None:
    """Put ``cifar-10-batches-py`` into ``root``: reuse a verified archive there, else download."""
    root = Path(root)
    archive = root / ARCHIVE_NAME
    if archive.is_file() and md5 and md5sum(archive) != md5:
        archive.unlink()  # a stale or broken earlier download: fetch it again
    if not archive.is_file():
        download_archive(archive, url=url, md5=md5, progress=progress)
    extract_archive(archive, root)
