#!/usr/bin/env bash
# gpu_check.sh - the one-shot check of the CUDA path on a machine with a GPU
# (not run by CI, which has none). In one go: configure and build the CUDA
# targets for this machine's GPU, run the parity tests (ctest -L cuda), then
# time the pipeline's pieces at 392 x 392 (tests/cuda_timing.c). Everything
# is written to $OUT (or <build>/gpu_check) as ctest.txt, timing.txt,
# device.txt and summary.txt. Meant to finish well within 5 minutes on an
# H200.
#
#   tests/gpu_check.sh [build-dir]        (default: build-gpu in the tree)
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build-gpu}
out=${OUT:-$build/gpu_check}
mkdir -p "$out"
t0=$(date +%s)

# The device and its architecture (compute capability 9.0 -> "90"), so that
# nvcc compiles for this GPU only.
if ! nvidia-smi -L > "$out/device.txt" 2>&1; then
  echo "gpu_check: no GPU visible (nvidia-smi -L failed); nothing to check"
  exit 77
fi
nvidia-smi >> "$out/device.txt" 2>&1 || true
archs="80;90"
cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1)
[[ $cap =~ ^[0-9]+\.[0-9]+$ ]] && archs=${cap/./}
echo "gpu_check: building for sm_$archs in $build" | tee "$out/summary.txt"

# Configure and build only what the check runs.
cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release -DSNARM_CUDA=ON \
      -DSNARM_CUDA_ARCHS="$archs" > "$out/configure.txt" 2>&1
grep -q "CUDA path ON" "$out/configure.txt" || {
  echo "gpu_check: CMake did not enable the CUDA path (see configure.txt)" |
    tee -a "$out/summary.txt"
  exit 1
}
cmake --build "$build" -j "$(nproc)" --target test_cuda_ops test_cuda_knn \
      test_cuda_scan test_cuda_layers test_cuda_nccl cuda_timing > "$out/build.txt" 2>&1
echo "gpu_check: built in $(( $(date +%s) - t0 )) s" | tee -a "$out/summary.txt"

# The parity tests; a failure is reported but the timings still run.
status=0
(cd "$build" && ctest -L cuda --output-on-failure --timeout 300) > "$out/ctest.txt" 2>&1 ||
  status=1
grep -E "tests passed|FAIL|Skipped" "$out/ctest.txt" | tee -a "$out/summary.txt" || true

# Timings at the method's sizes.
rm -f "$out/timing.txt"
"$build/tests/cuda_timing" --out "$out/timing.txt" > "$out/timing_log.txt" 2>&1 ||
  status=1
grep RESULT "$out/timing.txt" | tee -a "$out/summary.txt" || true
echo "gpu_check: done in $(( $(date +%s) - t0 )) s, status $status" |
  tee -a "$out/summary.txt"
exit $status
