#!/usr/bin/env bash
# Every GPU check of plgraph in one command, within 8 minutes, and one report.
#
# With CUDA: bf16 and fp16 training with an interrupt and a resume (against fp32), training
# throughput against PyG's ViSNet at the small and the large size, screening throughput, the
# trainer's loader against the GPU step with 0, 2 and 4 workers, and the peak GPU memory of each.
# Without CUDA, or with --dry-run: the same checks at tiny sizes on CPU, a proof (run by
# tests/test_gpu_check.py) that this script and the benchmarks it drives still work; its figures
# measure nothing.
#
# Usage: bench/gpu_check.sh [--dry-run] [--out DIR]
#   DIR (default: $OUT if set, else outputs/gpu_check) receives report.md and one log per check
#   (stdout and stderr); the report holds each check's stdout, or the end of its log if it failed.
# Environment: PYTHON (default: .venv/bin/python where it exists, else python3); PLGRAPH_FEP,
# the FEP benchmark if it is not beside the checkout (../shared/data/fep-benchmark).
# Exit status: 0 when every check passed, 1 when one failed or ran out of its time (the report is
# complete either way), 2 on a bad argument.
set -uo pipefail  # not -e: a failed check is reported and the next one still runs

cd "$(dirname "$0")/.." || exit 2
repo=$(pwd)
dry_run=0
out=${OUT:-outputs/gpu_check}
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --out) [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a directory" >&2; exit 2; }
           out=$2; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument '$1' (--dry-run, --out DIR)" >&2; exit 2 ;;
  esac
  shift
done

python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
export PYTHONPATH="$repo/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export PLGRAPH_FEP=${PLGRAPH_FEP:-$repo/../shared/data/fep-benchmark}
mkdir -p "$out" || exit 2
report="$out/report.md"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
started_all=$SECONDS

torch_line=$("$python" -c 'import torch
cuda = torch.cuda.is_available()
name = torch.cuda.get_device_name() if cuda else "no CUDA device"
print(int(cuda), f"torch {torch.__version__}, CUDA {torch.version.cuda}, {name}")') || {
  echo "gpu_check.sh: $python cannot import torch" >&2; exit 1; }
cuda=${torch_line%% *}
torch_info=${torch_line#* }
if [ "$dry_run" = 1 ]; then
  mode="dry run (--dry-run): tiny sizes on CPU, the figures measure nothing"
elif [ "$cuda" = 1 ]; then
  mode="GPU"
else
  dry_run=1
  mode="dry run (no CUDA device here): tiny sizes on CPU, the figures measure nothing"
fi

# Sizes and time limits (s). On a GPU the limits add up to 420 s (470 s with timeout's 10 s of
# grace each), so the whole run stays within 8 minutes even if every check runs out of its time.
if [ "$dry_run" = 1 ]; then
  device=cpu
  precision_args=(--model tiny --complexes 12 --epochs 1 --batch-size 4)
  small_args=(--model tiny --steps 1 --warmup 1 --rounds 1 --batch-size 2); large_args=()
  large_skipped="a dry run has no large model: check 2 ran the same script"
  predict_args=(--model tiny --systems 1 --batch-size 8)
  loader_args=(--model tiny --copies 1 --fep-limit 4 --build-workers 1 --batch-size 4
               --loader-batches 2 --steps 1 --warmup 1)
  limits=(240 240 240 240 240)
else
  device=cuda
  precision_args=(--model small --complexes 48 --epochs 2 --batch-size 4)
  small_args=(--model small); large_args=(--model large); large_skipped=""
  predict_args=(--model small)
  loader_args=(--model small --copies 10 --loader-batches 1000)
  limits=(90 55 80 70 125)
fi

titles=(
  "1. Mixed precision: bf16 and fp16 training, interrupted and resumed, against fp32"
  "2. Training throughput against PyG ViSNet, small model"
  "3. Training throughput against PyG ViSNet, large model"
  "4. Screening throughput (predict)"
  "5. The loader against the training step, 0, 2 and 4 workers"
)
names=(precision train_small train_large predict loader)
statuses=()
seconds=()

fep_missing=""
[ -d "$PLGRAPH_FEP" ] || fep_missing="the FEP benchmark is not at $PLGRAPH_FEP (set PLGRAPH_FEP)"

# run_check INDEX SKIP_REASON COMMAND...: run one check under its time limit (unless a reason to
# skip it is given); its stdout goes to the report, stdout and stderr to its log.
run_check() {
  local index=$1 skip=$2; shift 2
  local name=${names[$index]} limit=${limits[$index]} started=$SECONDS status
  local log="$out/$name.log"
  {
    echo; echo "## ${titles[$index]}"; echo
    echo "\`$*\` (limit ${limit} s)"; echo
  } >>"$report"
  if [ -n "$skip" ]; then
    statuses[index]="skipped"; seconds[index]=0
    echo "**skipped**: $skip" >>"$report"
    return
  fi
  echo "gpu_check: ${titles[$index]} ..." >&2
  timeout --kill-after=10 "$limit" "$@" >"$scratch/stdout" 2>"$scratch/stderr"
  status=$?
  seconds[index]=$((SECONDS - started))
  { cat "$scratch/stdout"; echo "--- stderr ---"; cat "$scratch/stderr"; } >"$log"
  if [ $status = 0 ]; then
    statuses[index]="ok"
    { echo "**ok** in ${seconds[$index]} s"; echo; echo '```'; cat "$scratch/stdout"
      echo '```'; } >>"$report"
  else
    if [ $status = 124 ] || [ $status = 137 ]; then
      statuses[index]="TIMED OUT"
    else
      statuses[index]="FAILED (exit $status)"
    fi
    { echo "**${statuses[$index]}** after ${seconds[$index]} s; the end of $log:"; echo
      echo '```'; tr '\r' '\n' <"$log" | grep -v '^\s*$' | tail -n 25; echo '```'; } >>"$report"
  fi
}

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && commit="$commit-dirty"
{
  echo "# plgraph GPU check"
  echo
  echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); git commit: $commit"
  echo "- mode: $mode"
  echo "- $torch_info; $(nproc) CPU cores; python: $python"
  echo
  echo "## Machine"
  echo
  echo '```'
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1
  else
    echo "no nvidia-smi"
  fi
  grep -m1 'model name' /proc/cpuinfo 2>/dev/null
  echo '```'
} >"$report"

bench="$repo/bench"
run_check 0 "" "$python" "$bench/precision_resume.py" --device "$device" "${precision_args[@]}"
run_check 1 "" "$python" "$bench/train_throughput.py" --device "$device" "${small_args[@]}"
run_check 2 "$large_skipped" "$python" "$bench/train_throughput.py" --device "$device" \
  "${large_args[@]}"
run_check 3 "$fep_missing" "$python" "$bench/predict_throughput.py" --device "$device" \
  "${predict_args[@]}"
run_check 4 "$fep_missing" "$python" "$bench/large_data.py" --device "$device" --workers 0,2,4 \
  "${loader_args[@]}"

{
  echo; echo "## 6. Peak GPU memory"; echo
  if [ "$device" = cuda ]; then
    echo '```'
    for name in "${names[@]}"; do
      [ -f "$out/$name.log" ] && grep -h "peak GPU memory" "$out/$name.log" | sed "s/^/$name: /"
    done
    echo '```'
  else
    echo "not measured: no GPU in a dry run (the checks above report it on CUDA)"
  fi
  echo; echo "## Summary"; echo
  echo "| check | status | seconds |"
  echo "|---|---|---:|"
  for i in "${!names[@]}"; do
    echo "| ${titles[$i]} | ${statuses[$i]} | ${seconds[$i]} |"
  done
  echo
  echo "Total: $((SECONDS - started_all)) s (a GPU run must stay within 480 s)."
} >>"$report"

echo "gpu_check: report in $report" >&2
for status in "${statuses[@]}"; do
  case $status in ok|skipped) ;; *) exit 1 ;; esac
done
exit 0
