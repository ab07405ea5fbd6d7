#!/usr/bin/env bash
# The GPU checks of lossbook, as one script for a lent GPU machine (the `device` tool):
# CPU/GPU parity, the SSIM benchmark, training throughput, and the gpu budget of the
# named experiments given as arguments (default: denoise-losses). Results go to $OUT
# (or ./gpu_out). Python packages the machine lacks travel as wheels in .whl/.
#
#   bash benchmarks/run_gpu_checks.sh denoise-losses despeckle-domains
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
log="$OUT/gpu_checks.log"
step() { echo "=== [$(date +%T)] $*" | tee -a "$log"; }
step "machine"; { nvidia-smi -L; python3 -c "import torch; print(torch.__version__)"; } 2>&1 | tee -a "$log"
step "parity"; timeout 90 python3 benchmarks/gpu_parity.py 2>&1 | tee -a "$log"
step "bench_ssim"; timeout "${SSIM_TIMEOUT:-150}" python3 benchmarks/bench_ssim.py 2>&1 | tee -a "$log"
step "bench_train"; timeout "${TRAIN_TIMEOUT:-150}" python3 benchmarks/bench_train.py \
  --budgets cpu,gpu --device cuda --compile --json "$OUT/bench_train.json" 2>&1 | tee -a "$log"
for name in "${@:-denoise-losses}"; do
  step "experiment $name at the gpu budget"
  timeout "${EXP_TIMEOUT:-240}" python3 -m lossbook run "$name" --budget gpu --out /tmp/runs \
    --quiet 2>&1 | tee -a "$log"
done
tar czf "$OUT/runs.tgz" --exclude='*.pt' -C /tmp runs 2>/dev/null || true
step "done"
