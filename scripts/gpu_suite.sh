#!/usr/bin/env bash
# Every GPU check and benchmark the project has, in one run of at most 9 minutes.
#   bash scripts/gpu_suite.sh OUT_DIR
# Runs from the source tree (PYTHONPATH=.) with the machine's own python3 and torch; never
# installs torch. For the lent GPU machine, stage first (on the dev machine):
#   ../shared/tools/device-stage data      (and: device-stage dali, in the calls it prints)
# then run on the device, carrying .stage:   bash scripts/gpu_suite.sh $OUT
# Each step logs to its own file; a failing step does not stop the others. OUT_DIR receives only
# three files (the device tool brings back at most 8): suite.log (everything printed),
# summary.txt (step, exit code, seconds) and results.tar.gz (every step's log and JSON).
set -uo pipefail
out=${1:?usage: scripts/gpu_suite.sh OUT_DIR}
cd "$(dirname "$0")/.."
mkdir -p "$out"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/gpu_suite.XXXXXX)
export PYTHONPATH=".:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
exec > >(tee "$out/suite.log") 2>&1
: > "$out/summary.txt"

deadline=$((SECONDS + ${GPU_SUITE_SECONDS:-530}))  # the whole suite stays within 9 minutes

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to WORK/NAME.log
  local name=$1 limit=$2; shift 2
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "== $name: skipped, the suite's time is spent"
    printf '%-24s skipped (suite time spent)\n' "$name" >> "$out/summary.txt"
    return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout "$limit" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  tail -n 30 "$work/$name.log"
  echo "== $name: rc=$rc in $((SECONDS - start))s"
  printf '%-24s rc=%-4s %4ss\n' "$name" "$rc" "$((SECONDS - start))" >> "$out/summary.txt"
}

finish() {
  tar -czf "$out/results.tar.gz" -C "$work" .
  echo "== summary"; cat "$out/summary.txt"
}
trap finish EXIT

[ -f .stage/restore.sh ] && step restore 180 bash .stage/restore.sh
step environment 60 bash -c "nvidia-smi || true; $py -c 'import torch, triton; print(torch.__version__, triton.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no CUDA\")'"
if ! $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "no CUDA device here: the GPU suite needs one" >&2
  exit 2
fi

# In order of what is most worth the GPU's minutes; each step gets at most its own limit and what
# is left of the suite's time.
# 1. the data layer on the real copy (when staged)
step data_check 30 $py -m fastcifar.data --no-download
# 2. every test on a machine with a GPU: gpu-marked tests run here and nowhere else
step tests 180 $py -m pytest -q -x -p no:cacheprovider tests
# 3. fused BatchNorm+ReLU kernels (issue 5): fwd+bwd at resnet_final's shapes (batch 512, bf16 +
#    fp32, both layouts) vs eager and torch.compile, GB/s and % of copy bandwidth
step kernel_bn_relu 150 env -u TRITON_INTERPRET $py benchmarks/kernel_bn_relu.py --out "$work"
# 4. augmenting loaders (issue 3): both backends (dali only when restore.sh installed it), every
#    preset, batch 512 and 1024, fp32, on the real data when staged. Goal: well over 100k images/s.
loader_data=(); [ -f data/cifar-10-batches-py/test_batch ] && loader_data=(--data-dir data)
step loader_throughput 100 $py benchmarks/loader_throughput.py --device cuda --images 50000 \
  --backends torch dali --batch-sizes 512 1024 "${loader_data[@]}" --out "$work"
# 5. training step throughput of every model, eager fp32, batch 100 and 512
step train_throughput 60 $py benchmarks/train_throughput.py --device cuda --steps 20 --warmup 5 --out "$work"
# 6. a short real run of the report's row 6 (3 epochs): the engine end to end on the GPU
step train_row6_3ep 120 $py -m fastcifar.train --recipe row6_resnet_final --epochs 3 --no-download \
  --no-figures --out "$work/row6_3ep"
# 7. the seed's way, torchvision per-image transforms in a DataLoader (8 workers), for the ratio
step loader_torchvision 60 $py benchmarks/loader_throughput.py --device cuda --images 5000 \
  --backends torchvision --batch-sizes 512 --workers 8 "${loader_data[@]}" --out "$work/torchvision"
