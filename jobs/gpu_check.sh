#!/usr/bin/env bash
# One prepared check for the GPU device machine (Python 3.12, torch CUDA, cupy-cuda13x, numpy,
# scipy; no network, no ray/dask/zarr). Run from the repository root:
#     bash jobs/gpu_check.sh            # writes into $OUT (or ./gpu_check_out when unset)
# Uses PYTHONPATH=. instead of `pip install -e .` (no network there).
set -u
OUT="${OUT:-$(pwd)/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
{
  echo "== environment"
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>&1 | head -5
  python -c "import sys, numpy, scipy; print(sys.version); print('numpy', numpy.__version__, 'scipy', scipy.__version__)"
  python -c "import cupy; print('cupy', cupy.__version__, 'devices', cupy.cuda.runtime.getDeviceCount())" 2>&1
  python -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

echo "== GPU kernel tests"
# -o addopts="": no plugin options needed; the test files import no ray/dask/zarr
timeout 240 python -m pytest -m gpu tests/estimators/test_gpu_kernels.py tests/estimators/test_gpu_training.py -q -p no:cacheprovider \
  -o addopts="" -rs 2>&1 | tee "$OUT/gpu_tests.txt"
TEST_RC=${PIPESTATUS[0]}

echo "== GPU benchmark"
timeout 300 python jobs/benchmark_gpu.py --out "$OUT/benchmark_gpu.json" 2>&1 | tee "$OUT/benchmark_gpu.txt"
BENCH_RC=${PIPESTATUS[0]}

echo "tests rc=$TEST_RC benchmark rc=$BENCH_RC" | tee "$OUT/status.txt"
[ "$TEST_RC" = 0 ] && [ "$BENCH_RC" = 0 ]
