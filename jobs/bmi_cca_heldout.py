"""Why BMI's CCA estimator reads closer than ours on some sparse 25 x 25 BMI tasks: it is fitted and
read on the same rows.

BMI's ``CCAMutualInformationEstimator`` fits scikit-learn's CCA on all rows and sums
``-1/2 log(1 - rho_i^2)`` over the canonical correlations of those same rows (in-sample). This job
reads that formula both ways on the BMI task samples (``jobs/bmi_sample.py``):

- ``in_sample``: CCA (closed form: whitened cross-covariance, SVD) fitted on all N rows, the formula
  on the same rows: BMI's CCA up to scikit-learn's iterative solver;
- ``held_out``: CCA fitted on a random half, the formula on the other half's variates (negative
  correlations clipped to 0): the same Gaussian formula without the in-sample fit, the way our
  estimator reads its canonical view (fit on training rows, read on held-out rows).

Values in bits, median over the seeds' files. Prints a table and writes JSON
(``jobs/results/bmi_cca_heldout.json`` unless ``--out``). Runs in our venv; CPU seconds.

    python jobs/bmi_cca_heldout.py --bmi runs/bmi_tasks
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    # not canonical._inv_sqrt: that one adds the view's ridge (RIDGE); BMI's CCA has none
    w, v = np.linalg.eigh(c)
    return (v / np.sqrt(np.maximum(w, 1e-12 * w.max()))) @ v.T


def cca_fit(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CCA of x (n, d_x), y (n, d_y): column means (d_x,), (d_y,) and weights a (d_x, r), b (d_y, r)."""
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    n = len(x)
    wx, wy = _inv_sqrt(xc.T @ xc / n), _inv_sqrt(yc.T @ yc / n)
    u, _, vt = np.linalg.svd(wx @ (xc.T @ yc / n) @ wy, full_matrices=False)
    return mx, my, wx @ u, wy @ vt.T


def gaussian_bits(x: np.ndarray, y: np.ndarray, fit) -> float:
    """-1/2 sum log2(1 - rho_i^2) over the canonical pairs of (x, y) under ``fit`` (rho < 0 -> 0)."""
    mx, my, a, b = fit
    u, v = (x - mx) @ a, (y - my) @ b
    rho = np.array([np.corrcoef(u[:, i], v[:, i])[0, 1] for i in range(a.shape[1])])
    rho = np.clip(rho, 0.0, 1.0 - 1e-12)
    return float(-0.5 * np.log2(1.0 - rho ** 2).sum())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bmi", type=Path, required=True, help="folder of BMI task samples (jobs/bmi_sample.py)")
    ap.add_argument("--only", default="", help="only tasks whose id contains this text")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "bmi_cca_heldout.json")
    a = ap.parse_args(argv)
    files = sorted(a.bmi.glob("*__seed*.npz"))
    if not files:
        raise SystemExit(f"no BMI samples (*__seed*.npz) in {a.bmi}; run jobs/bmi_sample.py first")
    tasks: dict[str, list[Path]] = {}
    for f in files:
        task = re.sub(r"__seed\d+\.npz$", "", f.name)
        if a.only in task:
            tasks.setdefault(task, []).append(f)
    rows = []
    print(f"{'task':<52} {'truth':>6} {'in-sample':>9} {'held-out':>9} {'gap':>6}  seeds")
    for task, fs in tasks.items():
        ins, held, truth = [], [], None
        for f in fs:
            d = np.load(f)
            x, y, truth = d["X"].astype(np.float64), d["Y"].astype(np.float64), float(d["truth_bits"])
            seed = int(d["seed"])
            ins.append(gaussian_bits(x, y, cca_fit(x, y)))
            perm = np.random.default_rng(seed).permutation(len(x))
            tr, te = perm[: len(x) // 2], perm[len(x) // 2:]
            held.append(gaussian_bits(x[te], y[te], cca_fit(x[tr], y[tr])))
        r = dict(task=task, truth_bits=truth, n=int(len(x)), seeds=len(fs), in_sample=ins, held_out=held,
                 in_sample_median=float(np.median(ins)), held_out_median=float(np.median(held)))
        rows.append(r)
        print(f"{task:<52} {truth:6.3f} {r['in_sample_median']:9.3f} {r['held_out_median']:9.3f} "
              f"{r['in_sample_median'] - r['held_out_median']:6.3f}  {len(fs)}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(dict(meta=dict(bmi=str(a.bmi)), tasks=rows), indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
