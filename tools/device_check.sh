#!/usr/bin/env bash
# The checks to run on a lent GPU machine, in one call (device time is scarce): what the machine has, the
# device benchmark (benchmarks/gpu_bench.py, rows for src/fusedloss/gpu_routing.json) and the CUDA tests on the
# GPU instead of the simulator. Wheels in .whl/ are installed first (carry .whl with the call). Runs from the
# source tree (the C++ backend is not needed); writes its logs under $OUT (default /tmp/device_check). Time
# limits per stage: BENCH_S, TESTS_S (seconds); BENCH_ARGS: more options for gpu_bench.py.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/device_check}
mkdir -p "$OUT"
unset NUMBA_ENABLE_CUDASIM

# Wheels carried in .whl/ (a NumPy that the machine's numba-cuda supports, say) go first on the path.
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=/tmp/site:$PYTHONPATH
fi

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv 2>&1 | tee "$OUT/env.txt"
python3 - <<'PY' 2>&1 | tee -a "$OUT/env.txt"
import importlib.metadata as md, sys
names = ["numpy", "numba", "numba-cuda", "torch", "cuda-bindings", "cupy-cuda13x", "pytest", "hypothesis", "mpmath"]
print("python", sys.version.split()[0])
for n in names:
    try:
        print(f"  {n} {md.version(n)}")
    except md.PackageNotFoundError:
        print(f"  {n} missing")
from numba import cuda
print("numba.cuda.is_available():", cuda.is_available())
import fusedloss
print("fusedloss backends:", [(b["name"], b["available"], b.get("reason", "")) for b in fusedloss.backends()])
PY

echo "== benchmark"
timeout "${BENCH_S:-240}" python3 benchmarks/gpu_bench.py --json "$OUT/gpu_bench.json" --profile "$OUT/profile.txt" ${BENCH_ARGS:-} 2>&1 | tee "$OUT/bench.log"
echo "bench rc=${PIPESTATUS[0]}"

echo "== CUDA tests on the GPU"
timeout "${TESTS_S:-240}" python3 -m pytest -m cuda -n "${WORKERS:-8}" -q -p no:cacheprovider --tb=short -rfE \
  tests/test_cuda.py tests/test_cuda_rows.py tests/test_cuda_metrics.py tests/test_cuda_row_rule.py tests/test_cuda_ctc.py \
  tests/test_corpus_cuda.py tests/test_gpu_routing.py tests/test_overlap.py tests/test_pairwise.py \
  tests/test_custom.py tests/test_torch_integration.py tests/test_torch_metrics.py > "$OUT/tests.log" 2>&1
echo "tests rc=$?"
tail -n 60 "$OUT/tests.log"
