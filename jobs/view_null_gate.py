"""How often the canonical view clears its noise gate on independent pairs, with and without the
radial candidates (``canonical.RADIAL_ALL`` and ``RADIAL_ALL_ICA`` are offered at 2-8 columns a side;
session 13).

For each d and kind: independent pairs X, Y (N rows, d columns each; ``gauss`` standard normal,
``t2`` Student-t with 2 degrees of freedom), prepared as the view sees them (z-scores, the raw rows'
squared norms); the view is chosen on all N rows as if they were the training rows
(``canonical.select_view``, KSG k = 3 with the default jitter), once with the radial candidates and
once without. Counts the pairs where a view cleared the gate (it would then compete with the latents)
and where the radial view was the one chosen; the median best cross-fitted score. No training: CPU
seconds. Prints a table and writes JSON (``jobs/results/view_null_gate.json`` unless ``--out``).

    OMP_NUM_THREADS=1 python jobs/view_null_gate.py --dims 2,4,8 --pairs 100
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lmi_distributed.estimators import canonical  # noqa: E402
from lmi_distributed.estimators.ksg import ksg_mi  # noqa: E402
from lmi_distributed.estimators.preprocess import zscore_clip  # noqa: E402


def one_kind(d: int, kind: str, pairs: int, n: int) -> dict:
    """Gate passes with / without the radial candidates over ``pairs`` independent pairs (seeds 1000+)."""
    passes = {True: 0, False: 0}
    radial_chosen = 0
    best: dict[bool, list[float]] = {True: [], False: []}
    for i in range(pairs):
        rng = np.random.default_rng(1000 + i)
        if kind == "gauss":
            X, Y = rng.standard_normal((n, d)), rng.standard_normal((n, d))
        else:
            X, Y = rng.standard_t(2, (n, d)), rng.standard_t(2, (n, d))
        zx, zy = zscore_clip(X).astype(np.float64), zscore_clip(Y).astype(np.float64)
        qx, qy = canonical.square_norms(X)[0], canonical.square_norms(Y)[0]
        for radial in (True, False):
            cands = canonical.view_candidates(d, d, n, 8, radial=radial)
            choice, scores, _, _ = canonical.select_view(
                zx, zy, candidates=cands, k=3, seed=i, x_sq=qx, y_sq=qy,
                ksg_mi=lambda u, v: ksg_mi(u, v, k=3, noise=1e-10, seed=0))
            best[radial].append(max(scores.values()))
            if choice is not None:
                passes[radial] += 1
                radial_chosen += int(radial and choice[0] in canonical.RADIAL_SPECS)
    return {"d": d, "kind": kind, "pairs": pairs, "n": n, "gate_passes_radial": passes[True],
            "gate_passes_no_radial": passes[False], "radial_chosen": radial_chosen,
            "median_best_score_radial": float(np.median(best[True])),
            "median_best_score_no_radial": float(np.median(best[False]))}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dims", default="2,4,8", help="comma list of columns per side")
    ap.add_argument("--kinds", default="gauss,t2", help="comma list of gauss, t2")
    ap.add_argument("--pairs", type=int, default=100, help="independent pairs per (d, kind)")
    ap.add_argument("--n", type=int, default=1000, help="rows per pair (the training rows of N = 2n)")
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "view_null_gate.json")
    a = ap.parse_args(argv)
    kinds = a.kinds.split(",")
    if not set(kinds) <= {"gauss", "t2"}:
        ap.error(f"--kinds: gauss or t2, got {a.kinds!r}")
    rows = []
    print(f"{'d':>3} {'kind':>5} {'pairs':>5} {'gate radial':>11} {'gate none':>9} {'radial chosen':>13} "
          f"{'best score radial':>17} {'best score none':>15}", flush=True)
    for d in (int(v) for v in a.dims.split(",")):
        for kind in kinds:
            r = one_kind(d, kind, a.pairs, a.n)
            rows.append(r)
            print(f"{d:>3} {kind:>5} {a.pairs:>5} {r['gate_passes_radial']:>11} {r['gate_passes_no_radial']:>9} "
                  f"{r['radial_chosen']:>13} {r['median_best_score_radial']:>17.4f} "
                  f"{r['median_best_score_no_radial']:>15.4f}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": {"gate": f"{canonical.GATE_Z} / sqrt(rows of a half)"}, "rows": rows},
                                indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
