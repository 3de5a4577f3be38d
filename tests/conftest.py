"""Shared fixtures: small synthetic CIFAR folders, the real copy when present, fixed seeds."""

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from fastcifar.data.synthetic import write_synthetic_cifar

REPO = Path(__file__).resolve().parent.parent
# a real CIFAR-10 on disk ($FASTCIFAR_DATA, else ./data), used only by tests that skip without it
REAL_DATA = Path(os.environ.get("FASTCIFAR_DATA", REPO / "data"))


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    """A 400/100-image synthetic CIFAR folder shared by a test module's runs."""
    root = tmp_path_factory.mktemp("cifar")
    write_synthetic_cifar(root, n_train=400, n_test=100, seed=0)
    return root


@pytest.fixture
def synthetic_root(tmp_path) -> Path:
    """A folder holding a 500/100-image synthetic cifar-10-batches-py."""
    write_synthetic_cifar(tmp_path, n_train=500, n_test=100, seed=0)
    return tmp_path


@pytest.fixture(autouse=True, scope="session")
def _auto_cache_of_the_session(tmp_path_factory):
    # measured auto decisions go to a cache of this test session's own, never the user's; runs of
    # the same shape share it, as a user's runs would (tests of the cache point elsewhere)
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("FASTCIFAR_AUTO_CACHE", None)


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch):
    # tests choose their data folder explicitly; a user's FASTCIFAR_DATA must not leak in
    monkeypatch.delenv("FASTCIFAR_DATA", raising=False)
    monkeypatch.delenv("FASTCIFAR_DATA_URL", raising=False)


def pytest_collection_modifyitems(config, items):
    # the GPU suite selects the kernel tests by marker (-m "gpu or kernel"), wherever they live
    kernels = REPO / "tests" / "kernels"
    for item in items:
        if kernels in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.kernel)
