"""Benchmarks of fastcifar, each a module run as ``python -m benchmarks.NAME`` from the repository
root (the package is not installed; the root is on the path as the current directory). Two
modules are no benchmarks: harness.py (timing, table, JSON) and workloads.py (what is timed)."""
