#!/usr/bin/env bash
# Run the tests (and the linter) on the CPU; sets up .venv first if it is missing.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k data    # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || ./scripts/setup.sh
.venv/bin/ruff check .
# Triton's interpreter runs the kernel tests (tests/kernels) on CPU tensors. It must be set before
# triton is imported; it changes nothing else (the GPU suite does not set it).
export TRITON_INTERPRET=${TRITON_INTERPRET:-1}
exec .venv/bin/python -m pytest -q "$@"
