#!/usr/bin/env bash
# The public MI yardstick, BMI (PyPI ``benchmark-mi``, Czyz et al. 2023, "Beyond Normal"), in its own
# venv (.venv-bmi): it needs JAX, pinned here to 0.4.30 (newer JAX breaks its samplers), and must not
# share our venv. Used only to SAMPLE its tasks to .npz files (jobs/bmi_sample.py); our estimator and
# latentmi then run on those files in their own venvs (jobs/benchmark_accuracy.py --bmi).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-bmi
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import bmi" 2>/dev/null; then
  exit 0
fi
"${PYTHON:-python3}" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "benchmark-mi" "jax==0.4.30" "jaxlib==0.4.30"
"$VENV/bin/python" -c "import bmi, jax; print('bmi', getattr(bmi, '__version__', '?'), 'jax', jax.__version__, 'in', '$VENV')"
