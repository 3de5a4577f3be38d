"""The real CIFAR-10 (JPEG q75 copy) when it is unpacked; skipped when absent."""

import hashlib
import importlib.util

import numpy as np
import pytest

from conftest import REAL_DATA, REPO
from fastcifar.data import load_cifar10
from fastcifar.data.layouts import find_layout

pytestmark = pytest.mark.skipif(
    find_layout(REAL_DATA) is None,
    reason=f"no CIFAR-10 at {REAL_DATA} (python3 ../shared/cifar10/unpack.py data)",
)


def test_official_sizes_and_class_balance():
    data = load_cifar10(REAL_DATA, download=False)
    assert data.train_images.shape == (50_000, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10_000, 32, 32, 3)
    assert np.bincount(data.train_labels).tolist() == [5000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    # the official order (../shared/cifar10/README.md)
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_pixels_match_the_reference_decode():
    unpack = REPO.parent / "shared" / "cifar10" / "unpack.py"
    if not unpack.is_file():
        pytest.skip("../shared/cifar10/unpack.py not here")
    spec = importlib.util.spec_from_file_location("unpack", unpack)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    data = load_cifar10(REAL_DATA, download=False)
    # unpack.py's SHA256 is of the NHWC uint8 arrays its reference decoder produced
    assert hashlib.sha256(data.train_images.tobytes()).hexdigest() == module.SHA256["x_train"]
    assert hashlib.sha256(data.test_images.tobytes()).hexdigest() == module.SHA256["x_test"]
