#!/usr/bin/env bash
# One command for a machine with a CUDA GPU (target: under 8 minutes):
#   1. the gpu-marked tests (AMP, a real CUDA out-of-memory fallback, CPU/GPU agreement on the sample case:
#      Dice >= 0.99 and risk within 1e-3),
#   2. the paper-scale head-and-neck case on the GPU (benchmarks/paper_scale.py --device cuda),
#   3. `hmvnet predict` throughput on a few generated cases,
#   4. peak GPU memory of steps 2-3 (torch.cuda.max_memory_allocated in the child, nvidia-smi sampling).
# Figures go to ${GPU_CHECK_OUT:-gpu_check_out}/. Without a GPU it stops after printing that (exit 3), unless
# GPU_CHECK_ALLOW_CPU=1, which runs every step on the CPU (the tests then skip) to check the script itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
OUT=${GPU_CHECK_OUT:-gpu_check_out}
CASES=${GPU_CHECK_CASES:-4}
mkdir -p "$OUT"
DEVICE=cuda
if ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  if [[ "${GPU_CHECK_ALLOW_CPU:-0}" != 1 ]]; then
    echo "gpu_check: no CUDA GPU visible to torch; nothing to check (set GPU_CHECK_ALLOW_CPU=1 to dry-run)" >&2
    exit 3
  fi
  DEVICE=cpu
fi
"$PY" - <<'PYEOF' | tee "$OUT/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("gpu", p.name, f"{p.total_memory / 1024**3:.1f} GiB", "bf16", torch.cuda.is_bf16_supported())
PYEOF
SMI_PID=""
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader -lms 500 > "$OUT/nvidia_smi.csv" &
  SMI_PID=$!
fi
cleanup() { if [[ -n "$SMI_PID" ]]; then kill "$SMI_PID" 2>/dev/null || true; fi; }
trap cleanup EXIT

echo "== 1. gpu-marked tests"
"$PY" -m pytest -q -p no:cacheprovider -m gpu tests 2>&1 | tee "$OUT/pytest_gpu.txt" || TESTS_FAILED=1

echo "== 2. paper-scale head-and-neck case on $DEVICE"
PAPER_ARGS=${GPU_CHECK_PAPER_ARGS:-}
# shellcheck disable=SC2086  # word splitting of the extra arguments is intended
"$PY" benchmarks/paper_scale.py --cases hn --device "$DEVICE" --out "$OUT/paper_scale.md" $PAPER_ARGS \
  2>&1 | tail -n 20

echo "== 3. hmvnet predict throughput ($CASES cases, $DEVICE)"
WORK=$(mktemp -d)
for k in $(seq 1 "$CASES"); do
  "$PY" -m hmvnet synth --gc-case --out "$WORK/in/case$k" --seed $((600 + k)) >/dev/null
done
START=$(date +%s.%N)
"$PY" -m hmvnet predict --input "$WORK/in" --output "$WORK/out" --device "$DEVICE" > "$OUT/predict.log" 2>&1
END=$(date +%s.%N)
"$PY" - "$START" "$END" "$CASES" <<'PYEOF' | tee "$OUT/predict.txt"
import sys
start, end, n = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
print(f"hmvnet predict: {n} cases in {end - start:.1f} s = {3600 * n / (end - start):.0f} cases/hour")
PYEOF
rm -rf "$WORK"

echo "== 4. peak GPU memory"
if [[ -s "$OUT/nvidia_smi.csv" ]]; then
  awk -F', ' '{gsub(/ MiB/, "", $2); if ($2 > m) m = $2} END {print "nvidia-smi peak memory.used:", m, "MiB"}' \
    "$OUT/nvidia_smi.csv" | tee "$OUT/peak_gpu.txt"
else
  echo "no nvidia-smi: see max_memory_allocated in $OUT/paper_scale.json" | tee "$OUT/peak_gpu.txt"
fi
if [[ -n "${TESTS_FAILED:-}" ]]; then
  echo "gpu_check: gpu-marked tests FAILED (see $OUT/pytest_gpu.txt)" >&2
  exit 1
fi
echo "gpu_check: done; figures in $OUT/"
