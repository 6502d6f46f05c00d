"""Accuracy of LMI on the paper's Gaussian benchmark (Alg. 4), full paper settings.

N=2000, k=1, 1 bit, d = 10, 100, 1000, three seeds per d trained as ONE batch through
``estimate_many``; plus the independent case (0 bits, d=100, three seeds). Prints the
estimate-vs-truth table and the median |error| per case; JSON to
jobs/results/benchmark_accuracy.json. Targets: median |error| <= 0.15 bits per d,
<= 0.05 bits for the independent case.

    python jobs/benchmark_accuracy.py                    # the full run (tens of minutes on 2 cores)
    python jobs/benchmark_accuracy.py --d 10 --max-epochs 20 --seeds 2   # a quick smoke run
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from lmi_distributed.estimators.api import estimate_many
from lmi_distributed.synthetic import gaussian_benchmark

ROOT = Path(__file__).resolve().parents[1]
TARGET = {"dependent": 0.15, "independent": 0.05}


def run_case(label: str, n: int, d: int, k: int, bits: float, seeds: list[int], settings: dict) -> dict:
    data = [gaussian_benchmark(n, d, k, bits, seed=s) for s in seeds]
    t0 = time.perf_counter()
    res = estimate_many([(X, Y) for X, Y, _ in data], seeds=seeds, **settings)
    dt = time.perf_counter() - t0
    rows = [{"seed": s, "estimate": r.mi, "truth": t, "error": r.mi - t, "epochs": r.epochs,
             "best_epoch": r.best_epoch} for s, r, (_, _, t) in zip(seeds, res, data)]
    med = float(np.median([abs(r["error"]) for r in rows]))
    kind = "independent" if bits == 0 else "dependent"
    out = {"case": label, "n": n, "d": d, "k": k, "truth_bits": bits, "rows": rows, "median_abs_error": med,
           "target": TARGET[kind], "pass": med <= TARGET[kind], "seconds": dt}
    for r in rows:
        print(f"{label:>14} {d:>5} {r['seed']:>5} {r['truth']:>6.3f} {r['estimate']:>9.3f} {r['error']:>+7.3f} "
              f"{r['epochs']:>6} {r['best_epoch']:>5}", flush=True)
    print(f"{label:>14} {d:>5}  median |error| {med:.3f} bits (target <= {TARGET[kind]}) "
          f"{'PASS' if out['pass'] else 'FAIL'}  [{dt:.0f} s]", flush=True)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--d", type=int, nargs="+", default=[10, 100, 1000])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--no-independent", action="store_true")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--restore-last", action="store_true",
                    help="ablation: keep last-epoch weights (latentmi's effective behaviour) instead of the best")
    ap.add_argument("--out", default=str(ROOT / "jobs" / "results" / "benchmark_accuracy.json"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    settings = dict(max_epochs=a.max_epochs, patience=a.patience, num_threads=a.threads, device=a.device,
                    restore_best=not a.restore_last)
    seeds = list(range(a.seeds))
    print(f"{'case':>14} {'d':>5} {'seed':>5} {'truth':>6} {'estimate':>9} {'error':>7} {'epochs':>6} {'best':>5}")
    cases = [run_case("gaussian 1 bit", a.n, d, 1, 1.0, seeds, settings) for d in a.d]
    if not a.no_independent:
        cases.append(run_case("independent", a.n, 100, 1, 0.0, seeds, settings))
    print("\nsummary (median |estimate - truth|, bits):")
    for c in cases:
        print(f"  {c['case']:>14} d={c['d']:<5} {c['median_abs_error']:.3f}  target {c['target']}  "
              f"{'PASS' if c['pass'] else 'FAIL'}")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"settings": settings, "cases": cases}, indent=2))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
