"""The package layout: kernels/ installs as fastcifar.kernels, never as top-level `kernels`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO


def test_kernels_import_as_fastcifar_kernels():
    import fastcifar.kernels

    assert Path(fastcifar.kernels.__file__).resolve().parent == (REPO / "kernels").resolve()


def _installed_fastcifar() -> bool:
    """Whether ``fastcifar`` imports without this source tree on the path (pip-installed)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import fastcifar"
    return subprocess.run([sys.executable, "-c", code], cwd=Path("/"), env=env,
                          capture_output=True).returncode == 0


def test_top_level_kernels_is_not_ours(tmp_path):
    # run from elsewhere: an installed fastcifar must not put a top-level `kernels` on the path
    if not _installed_fastcifar():
        pytest.skip("fastcifar is not installed (a source-tree run, PYTHONPATH=.); "
                    "test_source_tree_maps_kernels_without_a_top_level_import covers it")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = "import importlib.util, fastcifar.kernels; print(importlib.util.find_spec('kernels'))"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "None" or str(REPO / "kernels") not in out


def test_source_tree_maps_kernels_without_a_top_level_import(tmp_path):
    # the GPU machine runs the tree with PYTHONPATH=<repo> and nothing installed: there
    # fastcifar maps kernels/ in as fastcifar.kernels and nothing imports a top-level `kernels`
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    code = ("import sys, fastcifar.kernels.bn_relu as k; "
            "print(k.__name__, 'kernels' in sys.modules, "
            "any(m == 'kernels' or m.startswith('kernels.') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == ["fastcifar.kernels.bn_relu", "False", "False"]


def test_pyproject_lists_every_package():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = set()
    for top, name in (("fastcifar", "fastcifar"), ("kernels", "fastcifar.kernels")):
        for init in (REPO / top).rglob("__init__.py"):
            found.add(".".join([name, *init.relative_to(REPO / top).parts[:-1]]))
    assert found == set(config["packages"])
    assert config["package-dir"] == {"fastcifar.kernels": "kernels"}


def test_kernels_import_nothing_of_fastcifar():
    # kernels/ is a leaf: models -> kernels, never back (the drop-in modules live in
    # fastcifar.models.fused). Every import statement, at any depth of any kernels/*.py.
    import ast

    for path in sorted((REPO / "kernels").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                # a relative import stays inside kernels/ only at level 1
                assert node.level <= 1, f"{path.name}:{node.lineno} imports above kernels/"
                names = [node.module or ""] if node.level == 0 else []
            else:
                continue
            for name in names:
                assert name.split(".")[0] != "fastcifar", f"{path.name}:{node.lineno} {name}"


def test_importing_the_kernels_loads_no_other_fastcifar_module():
    pytest.importorskip("triton")
    code = ("import sys, {}; print(sorted(m for m in sys.modules "
            "if m.startswith('fastcifar') and not m.startswith('fastcifar.kernels')))")
    loaded = [subprocess.run([sys.executable, "-c", code.format(module)], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
              for module in ("fastcifar", "fastcifar.kernels.autograd")]
    # the package itself (which maps kernels/ in) and nothing more: kernels/ is a leaf
    assert loaded[1] == loaded[0] and "fastcifar.models" not in loaded[1]
