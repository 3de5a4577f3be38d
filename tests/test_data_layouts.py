"""Reading the official layouts: both pickle key styles, the binary layout, and every error."""

import pickle

import numpy as np
import pytest

from fastcifar.data import DataError, load_cifar10
from fastcifar.data.layouts import find_layout, read_binary_batch, read_python_batch
from fastcifar.data.synthetic import make_arrays, write_synthetic_cifar


@pytest.mark.parametrize("key_style", ["str", "bytes"])
def test_python_layout_both_key_styles(tmp_path, key_style):
    write_synthetic_cifar(tmp_path, n_train=203, n_test=51, seed=3, key_style=key_style)
    data = load_cifar10(tmp_path, download=False, cache=False)
    want_x, want_y = make_arrays(203, seed=3)
    np.testing.assert_array_equal(data.train_images, want_x)
    np.testing.assert_array_equal(data.train_labels, want_y)
    assert data.train_images.dtype == np.uint8 and data.train_images.shape == (203, 32, 32, 3)
    assert data.train_labels.dtype == np.int64 and data.test_labels.shape == (51,)
    assert data.layout == "py"


def test_binary_layout_matches_python_layout(tmp_path):
    write_synthetic_cifar(tmp_path / "py", n_train=120, n_test=30, seed=5, layout="py")
    write_synthetic_cifar(tmp_path / "bin", n_train=120, n_test=30, seed=5, layout="bin")
    a = load_cifar10(tmp_path / "py", download=False, cache=False)
    b = load_cifar10(tmp_path / "bin", download=False, cache=False)
    assert b.layout == "bin"
    for name in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_pixels_are_nhwc(tmp_path):
    # one image whose channels are distinguishable: R = row index, G = column index, B = 7
    image = np.zeros((32, 32, 3), np.uint8)
    image[..., 0] = np.arange(32)[:, None]
    image[..., 1] = np.arange(32)[None, :]
    image[..., 2] = 7
    rows = image.transpose(2, 0, 1).reshape(1, -1)  # the official row order: R plane, G, B
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": rows, "labels": [4]}, protocol=2))
    images, labels = read_python_batch(path)
    np.testing.assert_array_equal(images[0], image)
    assert labels.tolist() == [4]


def test_finds_root_itself_or_inside(tmp_path):
    folder = write_synthetic_cifar(tmp_path, n_train=50, n_test=10)
    assert find_layout(tmp_path).folder == folder
    assert find_layout(folder).folder == folder
    assert find_layout(tmp_path / "elsewhere") is None
    assert load_cifar10(folder, download=False).train_images.shape[0] == 50


def _bad_batch(tmp_path, content: bytes):
    folder = write_synthetic_cifar(tmp_path, n_train=50, n_test=10)
    (folder / "data_batch_3").write_bytes(content)
    return folder / "data_batch_3"


def _good_batch_bytes(**changes) -> bytes:
    x, y = make_arrays(10)
    batch = {"data": x.transpose(0, 3, 1, 2).reshape(10, -1), "labels": y.tolist(), **changes}
    return pickle.dumps(batch, protocol=2)


@pytest.mark.parametrize(
    "content, message",
    [
        (_good_batch_bytes()[:5000], "cannot be unpickled"),  # truncated
        (b"\x00" * 100 + b"garbage", "cannot be unpickled"),
        (pickle.dumps([1, 2, 3]), "not a dict"),
        (pickle.dumps({"labels": [1]}), "no 'data' and 'labels'"),
        (_good_batch_bytes(data=np.zeros((10, 100), np.uint8)), "expected uint8"),
        (_good_batch_bytes(data=np.zeros((10, 3072), np.float32)), "expected uint8"),
        (_good_batch_bytes(labels=[0] * 9), "9 labels for 10 images"),
        (_good_batch_bytes(labels=[0] * 9 + [10]), "label 10, outside 0..9"),
        (_good_batch_bytes(labels=[-1] + [0] * 9), "label -1"),
    ],
)
def test_bad_python_batch_names_the_file(tmp_path, content, message):
    path = _bad_batch(tmp_path, content)
    with pytest.raises(DataError, match=message) as err:
        load_cifar10(tmp_path, download=False)
    assert str(path) in str(err.value)


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickle_with_foreign_objects_is_refused(tmp_path, capsys):
    path = _bad_batch(tmp_path, pickle.dumps({"data": _Evil(), "labels": []}))
    with pytest.raises(DataError, match="unexpected object builtins.print"):
        read_python_batch(path)
    assert "never run" not in capsys.readouterr().out


def test_missing_batch_file_is_named(tmp_path):
    folder = write_synthetic_cifar(tmp_path, n_train=50, n_test=10)
    (folder / "data_batch_5").unlink()
    with pytest.raises(DataError, match="data_batch_5: file missing"):
        load_cifar10(tmp_path, download=False)


def test_truncated_binary_batch(tmp_path):
    folder = write_synthetic_cifar(tmp_path, n_train=50, n_test=10, layout="bin")
    path = folder / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="test_batch.bin: is 30720 bytes, not a whole number"):
        load_cifar10(tmp_path, download=False)
    with pytest.raises(DataError, match="out of|outside"):
        bad = bytearray((folder / "data_batch_1.bin").read_bytes())
        bad[0] = 200  # a label byte
        (folder / "data_batch_1.bin").write_bytes(bytes(bad))
        read_binary_batch(folder / "data_batch_1.bin")
