"""Benchmarks of the paper's workflows with a known answer (one function per workflow).

Attribution (paper A.2.3): ``attribution`` trains LMI with ``attribution=True`` on
``synthetic_attribution.attribution_benchmark`` (k of d_x X dims share a latent with Y, the rest
noise, one constant) for several seeds, and reports per seed how many of the top-k dims by
held-out R^2 are the informative ones, the R^2 of the informative / noise dims, and whether the
constant dim is NaN. JSON to jobs/results/benchmark_workflows_attribution.json.

    python jobs/benchmark_workflows.py attribution                      # 5 seeds, d_x=24 and 48
    python jobs/benchmark_workflows.py attribution --seeds 3 --dx 24    # quicker
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: small settings that train these benchmarks in seconds on one CPU thread (not the paper's)
ATTRIBUTION_SETTINGS = dict(hidden=128, batch_size=128, lr=3e-3, max_epochs=300, patience=30, num_threads=1)


def attribution(seeds: list[int], dxs: list[int], n: int = 1000, k: int = 4, rho: float = 0.8) -> dict:
    """Top-k recovery of the informative dims by held-out R^2, per seed and d_x."""
    from lmi_distributed import estimate
    from lmi_distributed.synthetic_attribution import attribution_benchmark

    cases = []
    for dx in dxs:
        rows = []
        for seed in seeds:
            b = attribution_benchmark(n=n, d_x=dx, d_y=8, k=k, rho=rho, seed=seed)
            t0 = time.perf_counter()
            r = estimate(b.X, b.Y, seed=seed, attribution=True, **ATTRIBUTION_SETTINGS)
            dt = time.perf_counter() - t0
            top = np.argsort(-np.where(np.isnan(r.r2_x), -np.inf, r.r2_x))[:k]
            noise = np.setdiff1d(np.arange(dx), np.r_[b.x_informative, b.x_constant])
            rows.append({"seed": seed, "status": r.status, "mi_bits": r.mi, "truth_bits": b.mi_bits,
                         "top_k_hits": int(len(set(top) & set(b.x_informative))),
                         "r2_informative_mean": float(np.mean(r.r2_x[b.x_informative])),
                         "r2_noise_max": float(np.max(r.r2_x[noise])),
                         "constant_is_nan": bool(np.isnan(r.r2_x[b.x_constant])),
                         "max_possible_r2": b.max_r2, "epochs": r.epochs, "seconds": dt})
            print(f"d_x={dx} seed={seed}: top-{k} hits {rows[-1]['top_k_hits']}/{k}, R2 informative "
                  f"{rows[-1]['r2_informative_mean']:.3f} (max possible {b.max_r2:.2f}), noise max "
                  f"{rows[-1]['r2_noise_max']:.3f}, constant NaN {rows[-1]['constant_is_nan']}, "
                  f"MI {r.mi:.2f} bits (truth {b.mi_bits:.2f}), {dt:.1f} s", flush=True)
        hits = sum(r["top_k_hits"] for r in rows)
        cases.append({"d_x": dx, "k": k, "n": n, "rho": rho, "rows": rows,
                      "top_k_recovery": hits / (k * len(rows)), "target": 0.9,
                      "pass": hits / (k * len(rows)) >= 0.9 and all(r["constant_is_nan"] for r in rows)})
        print(f"d_x={dx}: top-{k} recovery {cases[-1]['top_k_recovery']:.0%} over {len(rows)} seeds")
    return {"workflow": "attribution", "settings": ATTRIBUTION_SETTINGS, "cases": cases}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="workflow", required=True)
    a = sub.add_parser("attribution")
    a.add_argument("--seeds", type=int, default=5)
    a.add_argument("--dx", type=int, nargs="+", default=[24, 48])
    args = p.parse_args(argv)
    if args.workflow == "attribution":
        import torch

        torch.set_num_threads(1)
        out = attribution(list(range(args.seeds)), args.dx)
        path = ROOT / "jobs" / "results" / "benchmark_workflows_attribution.json"
        path.write_text(json.dumps(out, indent=2))
        print(f"wrote {path}")
        return 0 if all(c["pass"] for c in out["cases"]) else 1
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
