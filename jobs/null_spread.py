"""How far an estimate of independent inputs can sit from 0: KSG's own spread, and whether subtracting
the permutation null's mean (a "shuffle correction") narrows it.

Two measurements, printed as tables and saved as JSON (``jobs/results/null_spread.json`` unless
``--out``):

1. KSG (k = 3, the estimator's) on independent standard Gaussians of ``--rows`` rows at several
   widths (1 + 1 to 8 + 8 dims, the latents' width), ``--samples`` draws each: mean, sd and median
   |estimate| in bits. This is the floor for any estimate read by KSG on that many held-out rows.
2. From a null-calibration run (``benchmark_accuracy.py --fpr``; its per-pair ``estimate`` and
   ``null_mean``): the sd of the estimates, the sd of the null means, their correlation, and the
   median |estimate| with and without the null mean subtracted. The correction can only narrow the
   spread if the null mean moves with the estimate from pair to pair.

    OMP_NUM_THREADS=1 python jobs/null_spread.py --fpr jobs/results/benchmark_accuracy_fpr_quick_default_s9.json \
        jobs/results/benchmark_accuracy_fpr_quick_default_more_s9.json
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmi_distributed.estimators.ksg import ksg_mi  # noqa: E402


def ksg_floor(rows: int, widths: list[int], samples: int, seed: int = 0) -> list[dict]:
    """KSG (k 3) of ``samples`` independent (rows, w) / (rows, w) standard Gaussian pairs per width w."""
    rng = np.random.default_rng(seed)
    out = []
    for w in widths:
        r = np.array([ksg_mi(rng.standard_normal((rows, w)), rng.standard_normal((rows, w)), k=3)
                      for _ in range(samples)])
        out.append(dict(width=w, rows=rows, samples=samples, mean=float(r.mean()), sd=float(r.std(ddof=1)),
                        median_abs=float(np.median(np.abs(r)))))
    return out


def shuffle_correction(path: Path) -> dict:
    """The per-pair estimates and null means of one ``--fpr`` result file, with and without the correction."""
    fpr = json.loads(path.read_text())["fpr"][0]
    rows = [r for r in fpr["rows"] if r["status"] == "ok"]
    e = np.array([r["estimate"] for r in rows])
    m = np.array([r["null_mean"] for r in rows])
    return dict(file=path.name, n=fpr["n"], pairs=len(rows), sd_estimate=float(e.std(ddof=1)),
                sd_null_mean=float(m.std(ddof=1)), corr=float(np.corrcoef(e, m)[0, 1]),
                median_abs=float(np.median(np.abs(e))), median_abs_corrected=float(np.median(np.abs(e - m))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1000, help="held-out rows KSG reads (N = 2000: 1000)")
    ap.add_argument("--widths", default="1,2,8", help="dims per side, comma list")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--fpr", type=Path, nargs="*", default=[], help="benchmark_accuracy.py --fpr result files")
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "null_spread.json")
    a = ap.parse_args(argv)
    floor = ksg_floor(a.rows, [int(w) for w in a.widths.split(",")], a.samples)
    print(f"KSG (k 3) on independent Gaussians, {a.rows} rows, {a.samples} samples (bits)")
    print(f"{'width':>7} {'mean':>8} {'sd':>7} {'median|est|':>12}")
    for r in floor:
        print(f"{r['width']:>3}+{r['width']:<3} {r['mean']:>8.4f} {r['sd']:>7.4f} {r['median_abs']:>12.4f}")
    corr = [shuffle_correction(p) for p in a.fpr]
    if corr:
        print("\nnull pairs: the estimate against the estimate minus its permutation null's mean (bits)")
        print(f"{'file':<50} {'N':>5} {'pairs':>5} {'sd est':>7} {'sd null':>8} {'corr':>6} {'med|est|':>9} {'med|corr|':>9}")
        for r in corr:
            print(f"{r['file']:<50} {r['n']:>5} {r['pairs']:>5} {r['sd_estimate']:>7.4f} {r['sd_null_mean']:>8.4f} "
                  f"{r['corr']:>6.2f} {r['median_abs']:>9.4f} {r['median_abs_corrected']:>9.4f}")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(dict(ksg_floor=floor, shuffle_correction=corr), indent=1))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
