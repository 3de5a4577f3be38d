"""Benchmarks of fastcifar, each a module run as ``python -m benchmarks.NAME`` from the repository
root (the package is not installed; the root is on the path as the current directory)."""
