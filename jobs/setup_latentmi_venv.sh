#!/usr/bin/env bash
# The reference library, latentmi 0.1.3, in its own venv (.venv-latentmi): it pins numpy<2, so it
# cannot share ours. Used by the latentmi agreement test (tests/estimators/test_ksg.py) and by the
# benchmarks that compare against it (jobs/benchmark_ksg.py, jobs/benchmark_training.py).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-latentmi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import latentmi" 2>/dev/null; then
  exit 0
fi
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"      # the CPU wheel, pinned (design.md)
"$VENV/bin/python" -m pip install -q "latentmi==0.1.3"
"$VENV/bin/python" -c "import latentmi; print('latentmi', latentmi.__version__, 'in', '$VENV')"
