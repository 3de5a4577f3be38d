"""fastcifar: a fast, honest CIFAR-10 trainer."""

import importlib.util
import sys
from pathlib import Path

from ._version import __version__

__all__ = ["FitResult", "RunOptions", "__version__", "fit"]


def __getattr__(name: str):
    """``fastcifar.fit`` and its types, imported on first use: ``import fastcifar`` (and every
    ``python -m fastcifar.X``) stays free of torch until training is asked for."""
    if name in ("fit", "FitResult", "RunOptions"):
        from . import run

        return getattr(run, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _map_source_tree_kernels() -> None:
    """Make ``fastcifar.kernels`` importable from a source checkout (``PYTHONPATH=.``).

    Installed, ``kernels/`` is packaged as ``fastcifar.kernels`` (see pyproject.toml). In a source
    tree it sits beside ``fastcifar/``, so we register it under its installed name: nothing ever
    imports it as top-level ``kernels``, which would collide with PyPI's package of that name.
    """
    name = f"{__name__}.kernels"
    if name in sys.modules or (Path(__file__).parent / "kernels").is_dir():
        return
    source = Path(__file__).resolve().parent.parent / "kernels" / "__init__.py"
    if importlib.util.find_spec(name) is not None or not source.is_file():
        return
    spec = importlib.util.spec_from_file_location(
        name, source, submodule_search_locations=[str(source.parent)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    globals()["kernels"] = module  # as the import system does for a submodule


_map_source_tree_kernels()
