"""What the canonical view (``view="select"``, estimators/canonical.py) adds to one estimate, in CPU
seconds, against the training it follows.

For each (N, d): one pair of the paper's Gaussian (Algorithm 4, k = 2, 1 bit), prepared as the
estimator prepares it; times the canonical view alone (choice of principal components and width on
the training rows, refit, held-out KSG) and one training + latent KSG at the given budget
(``view="latents"``), on one thread, after one untimed warm-up (numba's compile). Prints a table
and saves JSON.

    OMP_NUM_THREADS=1 python jobs/benchmark_view_cost.py                      # quick budget
    OMP_NUM_THREADS=1 python jobs/benchmark_view_cost.py --sizes 2000x100,5000x25 --repeats 3
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmi_distributed import synthetic  # noqa: E402
from lmi_distributed.estimators.api import _canonical_view, _prepare, estimate  # noqa: E402
from lmi_distributed.estimators.settings import LMISettings  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000x10,2000x100,5000x25,2000x1000,10000x500",
                    help="comma list of NxD")
    ap.add_argument("--repeats", type=int, default=2, help="timings per size (the median is reported)")
    ap.add_argument("--train", action="store_true", help="also time one training at the quick budget")
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "benchmark_view_cost.json")
    a = ap.parse_args()
    s = LMISettings(num_threads=1)
    quick = dict(hidden=128, lr=1e-3, max_epochs=60, patience=10, num_threads=1, view="latents")
    rows = []
    warm = synthetic.gaussian_benchmark(400, 6, 2, 1.0, 0)       # numba compiles KSG once, untimed
    _canonical_view(_prepare(warm[0].astype(np.float32), warm[1].astype(np.float32), 0, s), s)
    print(f"{'N':>6} {'d':>5} {'view s':>8} {'pcs':>4} {'width':>5} {'view MI':>8} {'train s':>8}", flush=True)
    for spec in a.sizes.split(","):
        n, d = (int(v) for v in spec.lower().split("x"))
        X, Y, truth = synthetic.gaussian_benchmark(n, d, 2, 1.0, 0)
        prep = _prepare(X.astype(np.float32), Y.astype(np.float32), 0, s)
        times, out = [], {}
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = _canonical_view(prep, s)
            times.append(time.perf_counter() - t)
        train_s = float("nan")
        if a.train:
            t = time.perf_counter()
            estimate(X, Y, seed=0, **quick)
            train_s = time.perf_counter() - t
        row = {"n": n, "d": d, "view_seconds": float(np.median(times)), "view_seconds_all": times,
               "pcs": out.get("canonical_pcs"), "width": out["cx"].shape[1] if "cx" in out else None,
               "mi_canonical": out.get("mi_canonical"), "truth_bits": truth, "train_seconds": train_s}
        rows.append(row)
        print(f"{n:>6} {d:>5} {row['view_seconds']:>8.2f} {str(row['pcs']):>4} {str(row['width']):>5} "
              f"{row['mi_canonical'] if row['mi_canonical'] is not None else float('nan'):>8.3f} {train_s:>8.1f}",
              flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": {"repeats": a.repeats, "threads": 1, "quick_budget": quick},
                                 "rows": rows}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
