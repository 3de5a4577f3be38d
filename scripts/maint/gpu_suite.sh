#!/usr/bin/env bash
# Every GPU check and benchmark the project has, in two calls on a GPU machine.
#
#   bash scripts/maint/gpu_suite.sh --rehearse OUT   # on the CPU: every step, tiny sizes, < 5 minutes
#   bash scripts/maint/gpu_suite.sh --stage          # dev machine: data + airbench + commit -> .stage/
#   bash scripts/maint/gpu_suite.sh --call 1 OUT     # on the GPU machine (then --call 2 OUT)
#   bash scripts/maint/gpu_suite.sh --plan           # print the plan below
#
# Runs from the source tree (PYTHONPATH=.) with the machine's own python3 and torch; installs
# nothing but what .stage/restore.sh unpacks. OUT receives four files (a remote call brings
# back at most 8): suite.log (everything printed), summary.txt (step, exit code, seconds),
# summary.json (every headline figure with hardware, versions and timing convention) and
# results.tar.gz (every step's log and JSON; no checkpoints). Every step writes its JSON as it
# goes, and a step killed at its limit leaves what it measured; one that would pass the call's
# deadline is skipped and says so. `restore` and `environment` always run. GPU_SUITE_ONLY="a b"
# runs only the steps named (besides those two).
#
# THE PLAN for a 15-minute slot on a GPU machine (the machine's start, 1-2 minutes, is
# counted; it goes cold 30 s after a call returns, so the next call must follow at once):
#   0. dev machine: bash scripts/maint/gpu_suite.sh --rehearse /tmp/rehearsal  (every step rc=0)
#                   bash scripts/maint/gpu_suite.sh --stage     (.stage/: data 56 MB, airbench, COMMIT)
#   1. run(timeout_s=540, carry=[".stage/restore.sh", ".stage/data", ".stage/COMMIT"],
#          command="bash scripts/maint/gpu_suite.sh --call 1 $OUT")                       ~500 s
#      restore, environment, doctor (what every auto switch picks on this GPU and why, the
#      kernel check per dtype and layout, an epoch's estimate; ~60-150 s: each
#      candidate's compile counts), data_check, gpu_tests (kernels + gpu-marked, no -x; 90 s), the
#      train_throughput ladder (75 s), vs_airbench_fast (airbench94, then the fast recipe once
#      with its time to 86-94 %; 240 s), kernel_bn_relu (bf16 channels_last first, a JSON row
#      per configuration; whatever is left, up to 55 s): the headline figures, complete even if
#      this is the only call. The kernel benchmark goes last because it loses least when cut.
#   2. at once, run(timeout_s=200, carry=the same (a cold machine restores again, a warm one
#          skips it), command="bash scripts/maint/gpu_suite.sh --call 2 $OUT")          ~170 s
#      loader_throughput, speedrun_vs_airbench (muon8, the recipe we race airbench94 with),
#      torchrun_overhead, train_row6_3ep, loader_torchvision, fast_seeds (seeds 1 and 2 beside
#      call 1's seed 0), cpu_tests: in that order until its 170 s are spent (expect the first
#      three; a later slot runs the rest with GPU_SUITE_ONLY).
#   3. give_back; unpack both calls' results.tar.gz and summary.json under
#      benchmarks/results/gpu-<card>-<date>/ and commit them with the card, versions, command.
#   Start 90 s + 540 s + 200 s = 830 s of 900: no call only transfers files.
#   DALI is not in these 15 minutes: its wheel is 190 MiB, four 58 MiB parts at one part a
#   call (64 MiB carried a call, the data's 56 MB already fills call 1). A slot given to
#   DALI alone: "$GPU_SUITE_STAGE_TOOL" dali, then four calls, each carrying one part and
#   running GPU_SUITE_ONLY steps that need no data, the fourth with loader_throughput (restore.sh
#   installs DALI once every part is there; DALI then joins the torch backend in its table).
set -uo pipefail
cd "$(dirname "$0")/../.."

usage() { sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'; }
mode=gpu call=all out=""
while [ $# -gt 0 ]; do
  case $1 in
    --rehearse) mode=rehearse ;;
    --call) call=${2:-}; shift ;;
    --plan) sed -n '/^# THE PLAN/,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --stage)
      stage=${GPU_SUITE_STAGE_TOOL:-}
      [ -x "$stage" ] || { echo "error: GPU_SUITE_STAGE_TOOL names no staging tool: --stage runs on the dev machine" >&2; exit 2; }
      "$stage" data && "$stage" airbench || exit 1
      commit=$(git rev-parse --short HEAD)
      git diff --quiet HEAD -- . ':!benchmarks/results' || commit="$commit-dirty"
      echo "$commit" > .stage/COMMIT
      echo "staged for commit $commit: $(du -sh .stage | cut -f1) in .stage/"; exit 0 ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "error: unknown option $1; see: bash scripts/maint/gpu_suite.sh --help" >&2; exit 2 ;;
    *) out=$1 ;;
  esac
  shift
done
[ -n "$out" ] || { echo "error: say where the results go: bash scripts/maint/gpu_suite.sh [--rehearse] [--call 1|2] OUT" >&2; exit 2; }
case $call in 1|2|all) ;; *) echo "error: --call takes 1, 2 or all, not '$call'" >&2; exit 2 ;; esac

CALL1="doctor data_check gpu_tests train_throughput vs_airbench_fast kernel_bn_relu"
CALL2="speedrun_vs_airbench loader_throughput train_row6_3ep fast_seeds torchrun_overhead loader_torchvision cpu_tests"
case $call in 1) steps=$CALL1 ;; 2) steps=$CALL2 ;; all) steps="$CALL1 $CALL2" ;; esac
slower=1
if [ "$mode" = rehearse ]; then
  seconds=${GPU_SUITE_SECONDS:-330} slower=2
else
  seconds=${GPU_SUITE_SECONDS:-$(case $call in 1) echo 500 ;; 2) echo 170 ;; *) echo 670 ;; esac)}
fi

mkdir -p "$out"
out=$(cd "$out" && pwd)
work=${GPU_SUITE_WORK:-$([ "$mode" = rehearse ] && mktemp -d /tmp/gpu_rehearsal.XXXXXX || echo /tmp/gpu_suite-work)}
mkdir -p "$work"
export PYTHONPATH=".:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
[ "$mode" = rehearse ] && [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && py=.venv/bin/python
if [ -f .stage/COMMIT ]; then export FASTCIFAR_COMMIT; FASTCIFAR_COMMIT=$(cat .stage/COMMIT); fi
exec > >(tee "$out/suite.log") 2>&1
: > "$out/summary.txt"
: > "$work/steps.tsv"
deadline=$((SECONDS + seconds))

record() {  # record NAME RC SECONDS LIMIT NOTE
  printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$work/steps.tsv"
  printf '%-22s rc=%-4s %4ss  %s\n' "$1" "$2" "$3" "$5" >> "$out/summary.txt"
}

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to WORK/NAME.log
  local name=$1 limit=$2; shift 2
  if [ "$name" != restore ] && [ "$name" != environment ]; then
    [[ " $steps " == *" $name "* ]] || return 0
    if [ -n "${GPU_SUITE_ONLY:-}" ] && [[ " $GPU_SUITE_ONLY " != *" $name "* ]]; then return 0; fi
  fi
  local left=$((deadline - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "== $name: skipped, the call's ${seconds}s are spent"
    record "$name" skipped 0 "$limit" "the call's time is spent"
    return 0
  fi
  limit=$((limit * slower))  # the rehearsal's 2 cores get twice the GPU's limits
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s): $*"
  local start=$SECONDS
  timeout -k 10 "$limit" "$@" > "$work/$name.log" 2>&1
  local rc=$?
  tail -n 25 "$work/$name.log"
  local note=""; [ "$rc" -eq 124 ] && note="stopped at its ${limit}s limit"
  echo "== $name: rc=$rc in $((SECONDS - start))s"
  record "$name" "$rc" "$((SECONDS - start))" "$limit" "$note"
}

finish() {
  "$py" scripts/maint/gpu_summary.py "$work" "$out/summary.json" --mode "$mode" --call "$call" \
    || echo "gpu_summary.py failed: summary.json is missing" >&2
  tar -czf "$out/results.tar.gz" --exclude='*.pt' --exclude='*.npz' --exclude='cifar-10-batches-py' \
    --exclude='cifar10' -C "$work" .
  echo "== summary ($mode, call $call)"; cat "$out/summary.txt"
}
trap finish EXIT

# Sizes: the GPU's, or the rehearsal's (the same scripts, flags and output files, smaller counts).
if [ "$mode" = gpu ]; then
  synthetic=(50000 10000); tiny=()
  tt=(--device cuda --models resnet_final --steps 20 --warmup 3)
  kb=(--budget-s 40); lt=(--device cuda --images 50000 --batch-sizes 512 1024)
  tv=(--device cuda --images 5000 --batch-sizes 512 --workers 8)
  tr=(--epochs 3 --images 25000); airbench_runs=2; fast_seeds=(1 2); tests_m="gpu or kernel"
  cpu_tests=(tests); row6=(--epochs 3); doctor_model=resnet_final
  kernel_env=(env -u TRITON_INTERPRET)  # the real kernels, compiled for the GPU
else
  synthetic=(1200 300); tiny=(--epochs 1 --train-subset 128 --test-subset 64 --batch-size 32 --compile off)
  tt=(--device cpu --models cnn --steps 1 --warmup 1 --images 600 --batch-sizes 16 32 --workers 0)
  kb=(--device cpu --quick --budget-s 30); lt=(--device cpu --images 512 --batch-sizes 256 --presets none flip_crop flip_affine)
  tv=(--device cpu --images 128 --batch-sizes 64 --workers 2 --presets flip_crop)
  tr=(--epochs 2 --images 300 --test-images 100 --batch-size 100); airbench_runs=1; fast_seeds=(1)
  tests_m="gpu"  # on the CPU every gpu-marked test skips: this checks collection and markers
  cpu_tests=(tests/test_packaging.py tests/test_dali_import.py); row6=("${tiny[@]}")
  doctor_model=cnn  # resnet_final's timings take minutes on 2 cores; the steps are the same
  kernel_env=(env TRITON_INTERPRET=1)  # Triton's interpreter runs the kernels on CPU tensors
fi
xdist=(); $py -c "import xdist" 2>/dev/null && [ "$mode" = gpu ] && xdist=(-n 4)
data=data

step restore 180 bash -c '
  py=$1 work=$2 n_train=$3 n_test=$4
  if [ -f .stage/restore.sh ]; then bash .stage/restore.sh || exit 1; else echo "nothing staged (.stage/restore.sh)"; fi
  if [ -f data/cifar-10-batches-py/test_batch ]; then touch "$work/REAL_DATA"; echo "data: CIFAR-10 (JPEG q75 copy) in data/"; exit 0; fi
  echo "data: no CIFAR-10 here; a synthetic set of $n_train/$n_test images (accuracies mean nothing)"
  [ -f "$work/synthetic/cifar-10-batches-py/test_batch" ] || $py -c "import sys
from fastcifar.data.synthetic import write_synthetic_cifar as w
w(sys.argv[1], n_train=int(sys.argv[2]), n_test=int(sys.argv[3]))" "$work/synthetic" "$n_train" "$n_test"
' _ "$py" "$work" "${synthetic[@]}"
[ -f data/cifar-10-batches-py/test_batch ] || data=$work/synthetic
step environment 60 bash -c '
  nvidia-smi || echo "nvidia-smi: not here"
  $1 -c "import json, sys; from fastcifar.env import environment
env = environment(); json.dump(env, open(sys.argv[1], \"w\"), indent=2); print(json.dumps(env, indent=2))" "$2/environment.json"
' _ "$py" "$work"
if [ "$mode" = gpu ] && ! $py -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "error: torch sees no CUDA device here: the GPU suite needs one (rehearse on the CPU with --rehearse)" >&2
  record cuda_check 2 0 0 "torch sees no CUDA device"
  exit 2
fi
dali=(); dali_note="DALI not installed: loader_throughput measures the torch backend only"
if $py -c "from fastcifar.augment.dali import require_dali; require_dali()" 2>/dev/null; then
  dali=(dali); dali_note="DALI installed"
fi
echo "$dali_note"

# ---- call 1: the headline figures ----------------------------------------------------------
# first the decision table: what auto picks here (each fast path checked, then timed) and why
step doctor 150 $py -m fastcifar.doctor --model "$doctor_model" --out "$work/doctor.json"
# the data layer on the real copy (when staged)
step data_check 30 $py -m fastcifar.data --no-download --data-dir "$data"
# kernel tests and gpu-marked tests (the sync-free loader epoch, CUDA graphs + TTA, the fused
# kernels under torch.compile, ...): every failure reported, none stops the others
step gpu_tests 90 $py -m pytest -q -p no:cacheprovider -rfEs "${xdist[@]}" \
  --junitxml="$work/gpu_tests.xml" -m "$tests_m" tests
# resnet_final's training throughput from the seed's way to the fast path, one switch at a time
step train_throughput 75 $py -m benchmarks.train_throughput ladder "${tt[@]}" --data-dir "$data" --out "$work"
# airbench94, then the fast recipe (seed 0) with its time to 86-94 %: each in its own process
step vs_airbench_fast 240 $py -m benchmarks.airbench accuracy --data-dir "$data" --recipe fast --runs 1 \
  --name vs_airbench-fast --work "$work/fast" --out "$work" -- "${tiny[@]}"
# the fused BatchNorm+ReLU kernels vs eager and torch.compile, GB/s and % of copy bandwidth
step kernel_bn_relu 55 "${kernel_env[@]}" $py -m benchmarks.kernel_bn_relu "${kb[@]}" --out "$work"

# ---- call 2: the rest, in order of value, until the call's time is spent ------------------
step loader_throughput 45 $py -m benchmarks.loader_throughput augment "${lt[@]}" --backends torch "${dali[@]}" \
  --data-dir "$data" --out "$work"
# muon8 (airbench94_muon's recipe: Muon for the conv filters, 8 epochs) is the recipe we race
# airbench94 with (the torch loader: DALI pads crops with zeros, muon8 mirrors); each run's JSON
# is saved as it finishes
step speedrun_vs_airbench 100 $py -m benchmarks.airbench accuracy --data-dir "$data" --recipe muon8 \
  --runs "$airbench_runs" --name vs_airbench-muon8 --work "$work/muon8" --out "$work" \
  -- "${tiny[@]}"
step torchrun_overhead 40 $py -m benchmarks.torchrun_overhead --data-dir "$data" "${tr[@]}" \
  --work "$work/torchrun" --out "$work"
step train_row6_3ep 60 $py -m fastcifar.train --recipe row6_resnet_final "${row6[@]}" --data-dir "$data" \
  --no-download --no-figures --out "$work/row6_3ep"
step loader_torchvision 30 $py -m benchmarks.loader_throughput augment "${tv[@]}" --backends torchvision \
  --data-dir "$data" --out "$work/torchvision"
step fast_seeds 170 $py -m benchmarks.time_to_accuracy --recipe fast --seeds "${fast_seeds[@]}" \
  --work "$work/fast" --out "$work" -- --data-dir "$data" --no-download "${tiny[@]}"
step cpu_tests 120 $py -m pytest -q -p no:cacheprovider -rfEs "${xdist[@]}" \
  --junitxml="$work/cpu_tests.xml" -m "not gpu and not kernel" "${cpu_tests[@]}"

failed=$(awk -F'\t' '$2 != "0" {print $1}' "$work/steps.tsv" | tr '\n' ' ')
if [ -n "$failed" ]; then echo "steps not rc=0: $failed"; exit 1; fi
exit 0
