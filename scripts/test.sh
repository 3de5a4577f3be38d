#!/usr/bin/env bash
# Run the tests (and the linter) on the CPU; sets up .venv first if it is missing.
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -k data    # extra arguments go to pytest
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/pytest ] || ./scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q "$@"
