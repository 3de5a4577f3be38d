"""The real CIFAR-10 (JPEG q75 copy) when it is unpacked; skipped when absent."""

import hashlib

import numpy as np
import pytest

from conftest import REAL_DATA
from fastcifar.data import load_cifar10
from fastcifar.data.layouts import find_layout

pytestmark = pytest.mark.skipif(
    find_layout(REAL_DATA) is None,
    reason=f"no CIFAR-10 at {REAL_DATA} (set FASTCIFAR_DATA or unpack it into ./data)",
)


def test_official_sizes_and_class_balance():
    data = load_cifar10(REAL_DATA, download=False)
    assert data.train_images.shape == (50_000, 32, 32, 3) and data.train_images.dtype == np.uint8
    assert data.test_images.shape == (10_000, 32, 32, 3)
    assert np.bincount(data.train_labels).tolist() == [5000] * 10
    assert np.bincount(data.test_labels).tolist() == [1000] * 10
    # the official order, which every faithful copy keeps
    assert data.train_labels[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert data.test_labels[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


# the SHA256 of the NHWC uint8 arrays that the reference decode of the JPEG q75 copy produced
JPEG_Q75_SHA256 = {
    "train": "5aaf8a2cf2e577ff4dbb15e4f368840fab5aca1812bcc69682005f8dc661d466",
    "test": "b7018a062865e9348a704e72416eb53c816b43cc8ac42ab43276a2b967508ab6",
}


def test_pixels_match_the_reference_decode():
    # the JPEG q75 copy names its images cifar10_jpeg75_*; other copies are not checked here
    layout = find_layout(REAL_DATA)
    if layout.kind != "py" or b"cifar10_jpeg75_" not in layout.train_files[0].read_bytes():
        pytest.skip("not the JPEG q75 copy")
    data = load_cifar10(REAL_DATA, download=False)
    assert hashlib.sha256(data.train_images.tobytes()).hexdigest() == JPEG_Q75_SHA256["train"]
    assert hashlib.sha256(data.test_images.tobytes()).hexdigest() == JPEG_Q75_SHA256["test"]
