#!/usr/bin/env bash
# Set up fastcifar in ./.venv: torch, then the package (editable) with its test tools, airbench
# (the peer the benchmarks race; pure Python) and DALI
# (the optional "dali" augmentation backend; its CUDA 12 wheel also runs CPU-only).
#   ./scripts/setup.sh                      # torch 2.14.1 (CUDA 13 build; runs on the CPU too)
#   FASTCIFAR_TORCH="torch==2.9.1 torchvision==0.24.1" ./scripts/setup.sh   # another build
#   FASTCIFAR_TORCH="torch==2.9.1 torchvision==0.24.1 --index-url https://download.pytorch.org/whl/cu126" \
#     FASTCIFAR_DALI_EXTRA=dali ./scripts/setup.sh   # a CUDA 12.6 build, for older drivers
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_spec=${FASTCIFAR_TORCH:-"torch==2.14.1 torchvision==0.29.1"}

[ -x .venv/bin/python ] || "$python" -m venv .venv
# torch first, pinned, so that nothing later pulls a different build
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  # a CUDA build of torch takes about 7 GB; pip's own "No space left on device" comes only after
  # the download and does not say how much was needed
  free_gb=$(df -Pk . | awk 'NR == 2 {print int($4 / 1048576)}')
  if [ -z "${FASTCIFAR_TORCH:-}" ] && [ "${free_gb:-0}" -lt 8 ]; then
    echo "error: ${free_gb} GB free under $(pwd); setting up needs about 8 GB (torch's CUDA" \
      "build): free some space, or set FASTCIFAR_TORCH to a CPU build" >&2
    exit 2
  fi
  # no wheel cache: it would hold a second copy of the multi-GB download
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q --no-cache-dir $torch_spec
fi
.venv/bin/python -m pip install -q -e ".[dev,compare,${FASTCIFAR_DALI_EXTRA:-dali}]"  # dali-cu13 for CUDA 13
.venv/bin/python -c "import torch, fastcifar; print(f'fastcifar {fastcifar.__version__} ready: torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}')"
# a GPU that nvidia-smi lists but torch cannot use: usually a driver older than the CUDA build;
# the note says how to pick another build (FASTCIFAR_TORCH with a cu12x index)
.venv/bin/python -c "from fastcifar.env import gpu_hint; h = gpu_hint(); h and print(h)" >&2
