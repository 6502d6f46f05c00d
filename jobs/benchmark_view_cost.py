"""What the canonical view (``view="select"``, estimators/canonical.py) adds to one estimate, in CPU
seconds, against the training it follows.

For each (N, d): one pair of the paper's Gaussian (Algorithm 4, k = 2, 1 bit), prepared as the
estimator prepares it; times the canonical view alone (choice of principal components and width on
the training rows, refit, held-out KSG) and one training + latent KSG at the given budget
(``view="latents"``), on one thread, after one untimed warm-up (numba's compile). Prints a table
and saves JSON.

    OMP_NUM_THREADS=1 python jobs/benchmark_view_cost.py                      # quick budget
    OMP_NUM_THREADS=1 python jobs/benchmark_view_cost.py --sizes 2000x100,5000x25 --repeats 3

Each size is timed with the default ``view_bias="gaussian"``, with ``view_bias="none"`` (session 7's
view), so the table shows what the bias estimate (8-32 simulated KSG runs,
``canonical.bias_repeats``) adds, and without the screened candidate (session 11:
``canonical.SCREENED`` left out, ``_canonical_view(..., screen=False)``; on the paper's Gaussian the
screen keeps half the columns, so it only costs its cross-correlations, d_x * d_y * rows per training
half). ``--k 4``: the wider view. Since session 13 also without the radial candidate
(``canonical.RADIAL``, ``_canonical_view(..., radial=False)``); it is computed only where the screen is
valid, which it is not on the paper's Gaussian: ``--family sparse`` times a sparse dependence instead
(``synthetic.sparse_columns_dependence``, 2 of d columns, 1 bit), and ``--family spiral`` columns 0
and 1 dependent (1 bit), unwarped, turned by BMI's spiral (``synthetic.spiral``), where the radial view
is chosen.
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
    ap.add_argument("--k", type=int, default=2, help="dependent dims of the paper's Gaussian (the view's width)")
    ap.add_argument("--family", choices=("gauss", "sparse", "spiral"), default="gauss",
                    help="gauss: the paper's Gaussian; sparse: 2 of d columns dependent; spiral: those turned")
    a = ap.parse_args()
    s = LMISettings(num_threads=1)
    s_none = s.replace(view_bias="none")         # session 7's view: no Gaussian-reference bias
    quick = dict(hidden=128, lr=1e-3, max_epochs=60, patience=10, num_threads=1, view="latents")
    rows = []
    warm = synthetic.gaussian_benchmark(400, 6, 2, 1.0, 0)       # numba compiles KSG once, untimed
    _canonical_view(_prepare(warm[0].astype(np.float32), warm[1].astype(np.float32), 0, s), s)
    print(f"{'N':>6} {'d':>5} {'view s':>8} {'no-bias s':>9} {'no-screen s':>11} {'no-radial s':>11} {'pcs':>4} "
          f"{'width':>5} {'bias':>7} {'view MI':>8} {'train s':>8}", flush=True)
    for spec in a.sizes.split(","):
        n, d = (int(v) for v in spec.lower().split("x"))
        if a.family == "gauss":
            X, Y, truth = synthetic.gaussian_benchmark(n, d, a.k, 1.0, 0)
        elif a.family == "sparse":
            X, Y, truth = synthetic.sparse_columns_dependence(n, d, 2, 1.0, 0)
        else:            # columns 0 and 1 dependent (1 bit), turned in BMI's planes: X (0, 1), Y (1, 2)
            rng = np.random.default_rng(0)
            X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
            r = synthetic.pair_correlation(1.0, 2)
            Y[:, :2] = r * X[:, :2] + np.sqrt(1 - r * r) * Y[:, :2]
            X, Y, truth = synthetic.spiral(X), synthetic.spiral(Y, (1, 2)), 1.0
        t = time.perf_counter()
        prep = _prepare(X.astype(np.float32), Y.astype(np.float32), 0, s)
        prepare_s = time.perf_counter() - t
        times, times_none, times_noscreen, times_noradial, out = [], [], [], [], {}
        for _ in range(a.repeats):
            t = time.perf_counter()
            out = _canonical_view(prep, s)
            times.append(time.perf_counter() - t)
            t = time.perf_counter()
            _canonical_view(prep, s_none)
            times_none.append(time.perf_counter() - t)
            t = time.perf_counter()
            _canonical_view(prep, s, screen=False)
            times_noscreen.append(time.perf_counter() - t)
            t = time.perf_counter()
            _canonical_view(prep, s, radial=False)
            times_noradial.append(time.perf_counter() - t)
        train_s = float("nan")
        if a.train:
            t = time.perf_counter()
            estimate(X, Y, seed=0, **quick)
            train_s = time.perf_counter() - t
        row = {"n": n, "d": d, "k": a.k, "view_seconds": float(np.median(times)), "view_seconds_all": times,
               "view_seconds_no_bias": float(np.median(times_none)), "view_seconds_no_bias_all": times_none,
               "view_seconds_no_screen": float(np.median(times_noscreen)), "view_seconds_no_screen_all": times_noscreen,
               "view_seconds_no_radial": float(np.median(times_noradial)), "view_seconds_no_radial_all": times_noradial,
               "prepare_seconds": prepare_s, "family": a.family,
               "pcs": out.get("canonical_pcs"), "width": out["cx"].shape[1] if "cx" in out else None,
               "canonical_bias": out.get("canonical_bias"),
               "mi_canonical": out.get("mi_canonical"), "truth_bits": truth, "train_seconds": train_s}
        rows.append(row)
        bias = row["canonical_bias"] if row["canonical_bias"] is not None else float("nan")
        print(f"{n:>6} {d:>5} {row['view_seconds']:>8.2f} {row['view_seconds_no_bias']:>9.2f} "
              f"{row['view_seconds_no_screen']:>11.2f} {row['view_seconds_no_radial']:>11.2f} {str(row['pcs']):>4} "
              f"{str(row['width']):>5} {bias:>7.3f} "
              f"{row['mi_canonical'] if row['mi_canonical'] is not None else float('nan'):>8.3f} {train_s:>8.1f}",
              flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": {"repeats": a.repeats, "threads": 1, "quick_budget": quick,
                                          "family": a.family},
                                 "rows": rows}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
