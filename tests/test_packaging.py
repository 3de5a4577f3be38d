"""The package layout: kernels/ installs as fastcifar.kernels, never as top-level `kernels`."""

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_kernels_import_as_fastcifar_kernels():
    import fastcifar.kernels

    assert Path(fastcifar.kernels.__file__).resolve().parent == (REPO / "kernels").resolve()


def test_top_level_kernels_is_not_ours(tmp_path):
    # run from elsewhere: an installed fastcifar must not put a top-level `kernels` on the path
    code = "import importlib.util, fastcifar.kernels; print(importlib.util.find_spec('kernels'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    assert out.strip() == "None" or str(REPO / "kernels") not in out


def test_pyproject_lists_every_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for top, name in (("fastcifar", "fastcifar"), ("kernels", "fastcifar.kernels")):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join([name, *init.relative_to(REPO / top).parts[:-1]]))
    assert found == set(config["packages"])
    assert config["package-dir"] == {"fastcifar.kernels": "kernels"}
