"""DALI installed beside a regular ``nvidia`` package (the GPU machine's layout) still imports."""

import subprocess
import sys

from conftest import REPO


def _layout(tmp_path):
    """torch's nvidia-* wheels (a regular package) and DALI in another folder (pip --target)."""
    wheels, site = tmp_path / "site-packages", tmp_path / "site"
    (wheels / "nvidia" / "cudnn").mkdir(parents=True)
    (wheels / "nvidia" / "__init__.py").write_text("")
    (site / "nvidia" / "dali").mkdir(parents=True)
    (site / "nvidia" / "dali" / "__init__.py").write_text("__version__ = 'planted'\n")
    return site, wheels


def _run(code, site, wheels):
    # DALI's folder first, as PYTHONPATH=/tmp/site puts it; both ahead of the venv's own nvidia/
    prelude = f"import sys; sys.path[:0] = [{str(site)!r}, {str(wheels)!r}, {str(REPO)!r}]; "
    return subprocess.run([sys.executable, "-c", prelude + code], capture_output=True, text=True)


def test_plain_import_fails_in_that_layout(tmp_path):
    # the finding itself: without the join, the regular package hides DALI
    out = _run("import nvidia.dali", *_layout(tmp_path))
    assert out.returncode != 0 and "nvidia.dali" in out.stderr


def test_require_dali_joins_the_nvidia_folders(tmp_path):
    code = ("from fastcifar.augment.dali import require_dali; d = require_dali(); "
            "print(d.__version__, d.__file__)")
    out = _run(code, *_layout(tmp_path))
    assert out.returncode == 0, out.stderr
    version, path = out.stdout.split()
    assert version == "planted" and path.startswith(str(tmp_path / "site"))

