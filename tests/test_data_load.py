"""Where data is looked for, the cache and its invalidation, and the no-data message."""

import os
from pathlib import Path

import numpy as np
import pytest

from fastcifar.data import DataError, load_cifar10, resolve_data_dir
from fastcifar.data.cache import CACHE_NAME
from fastcifar.data.synthetic import write_synthetic_cifar


def test_data_dir_precedence(tmp_path, monkeypatch):
    assert resolve_data_dir(None) == Path("data")
    monkeypatch.setenv("FASTCIFAR_DATA", str(tmp_path / "env"))
    assert resolve_data_dir(None) == tmp_path / "env"
    assert resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


def test_env_var_is_used_for_loading(synthetic_root, monkeypatch):
    monkeypatch.setenv("FASTCIFAR_DATA", str(synthetic_root))
    assert load_cifar10(download=False).train_images.shape == (500, 32, 32, 3)


def test_second_load_comes_from_cache_and_is_identical(synthetic_root):
    first = load_cifar10(synthetic_root, download=False)
    assert not first.from_cache
    assert (first.folder / CACHE_NAME).is_file()
    second = load_cifar10(synthetic_root, download=False)
    assert second.from_cache
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
        assert getattr(first, name).dtype == getattr(second, name).dtype


def test_cache_invalidated_when_a_source_changes(tmp_path):
    folder = write_synthetic_cifar(tmp_path, n_train=100, n_test=20, seed=1)
    old = load_cifar10(tmp_path, download=False)
    load_cifar10(tmp_path, download=False)  # cached now
    write_synthetic_cifar(tmp_path, n_train=100, n_test=20, seed=2)  # same sizes, new pixels
    stat = (folder / "test_batch").stat()  # force a visible mtime change even on coarse clocks
    os.utime(folder / "test_batch", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    new = load_cifar10(tmp_path, download=False)
    assert not new.from_cache
    assert not np.array_equal(old.test_images, new.test_images)
    assert load_cifar10(tmp_path, download=False).from_cache


def test_corrupt_cache_is_rebuilt(synthetic_root):
    first = load_cifar10(synthetic_root, download=False)
    (first.folder / CACHE_NAME).write_bytes(b"not a zip file")
    again = load_cifar10(synthetic_root, download=False)
    assert not again.from_cache
    np.testing.assert_array_equal(first.train_images, again.train_images)
    assert load_cifar10(synthetic_root, download=False).from_cache


def test_unwritable_folder_still_loads(synthetic_root, monkeypatch):
    # a chmod would not stop root (CI runs as root), so make the cache's temp file fail instead
    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr("fastcifar.data.cache.tempfile.mkstemp", refuse)
    with pytest.warns(UserWarning, match="not caching"):
        data = load_cifar10(synthetic_root, download=False)
    assert data.train_images.shape[0] == 500 and not data.from_cache
    assert not (data.folder / CACHE_NAME).exists()


def test_no_data_and_no_download_says_where_and_how(tmp_path):
    with pytest.raises(DataError) as err:
        load_cifar10(tmp_path / "empty", download=False)
    message = str(err.value)
    assert str(tmp_path / "empty" / "cifar-10-batches-py") in message
    assert "--data-dir" in message and "FASTCIFAR_DATA" in message and "--no-download" in message
