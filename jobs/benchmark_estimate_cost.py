"""Cost of one estimate with today's defaults against the paper's estimator (``lmi.PAPER``).

Issue 11 allows the new default at most 2x the cost of an estimate before it. The difference is
the InfoNCE term (a B x B cosine-similarity matrix per minibatch on latents the loss already
computes, and one more encoder pass over the held-out half per epoch for early stopping) and the
Gaussianisation of the latents before KSG (a sort per latent dim). Both estimators run the SAME
number of epochs in the first table (patience = max_epochs: no early stop), so its ratio is the
cost per estimate at equal training length. ``--early-stop`` adds a second table: estimates with
early stopping at the accuracy suite's quick budget on a few of its cases, seconds and epochs, since
the InfoNCE term also changes how long training runs. Runs alternate (paper, default, paper, ...) so that drift of
this shared machine hits both; the median of each and the median of the per-pair ratios are
reported.

    OMP_NUM_THREADS=1 python jobs/benchmark_estimate_cost.py --early-stop --out jobs/results/benchmark_estimate_cost.json

Paper network width (1024) by default; seconds are wall time of ``lmi.estimate`` (training,
encoding, Gaussianisation, KSG), one torch thread.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="rows (half train, half held out)")
    ap.add_argument("--dims", type=int, nargs="+", default=[100, 1000], help="d of X and of Y")
    ap.add_argument("--epochs", type=int, default=5, help="epochs of every estimate (no early stop)")
    ap.add_argument("--hidden", type=int, default=None, help="hidden width (default: the paper's 1024)")
    ap.add_argument("--repeats", type=int, default=5, help="alternating runs of each estimator")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--early-stop", action="store_true",
                    help="also: estimates with early stopping at the accuracy suite's quick budget (seconds and epochs)")
    ap.add_argument("--early-stop-cases", nargs="+",
                    default=["gauss d=10 k=1 1b", "gauss d=100 k=2 1b", "rotwarp d=100 k=2 1b",
                             "markov d=20 k=2 rho=0.8 lag=1"], help="quick-suite case names (--early-stop)")
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "benchmark_estimate_cost.json")
    a = ap.parse_args(argv)

    import torch

    import lmi_distributed as lmi
    from lmi_distributed.synthetic import gaussian_benchmark

    torch.set_num_threads(a.threads)
    common = dict(max_epochs=a.epochs, patience=a.epochs, hidden=a.hidden, num_threads=a.threads)
    rows = []
    print(f"N={a.n}, {a.epochs} epochs each (no early stop), hidden {a.hidden or 'paper (1024)'}, "
          f"{a.threads} thread(s), {a.repeats} alternating repeats", flush=True)
    print("| d | paper s (median) | default s (median) | default / paper (median of pairs) |")
    print("|---|---|---|---|")
    for d in a.dims:
        X, Y, _ = gaussian_benchmark(a.n, d, 2, 1.0, seed=0)
        lmi.estimate(X, Y, seed=0, **{**common, "max_epochs": 1, "patience": 1})   # warm-up
        t = {"paper": [], "default": []}
        for r in range(a.repeats):
            for name, extra in (("paper", lmi.PAPER), ("default", {})):
                t0 = time.perf_counter()
                res = lmi.estimate(X, Y, seed=r, **common, **extra)
                t[name].append(time.perf_counter() - t0)
                if res.epochs != a.epochs:
                    raise SystemExit(f"{name} ran {res.epochs} epochs, expected {a.epochs}")
        ratio = [b / p for p, b in zip(t["paper"], t["default"])]
        row = {"d": d, "paper_s": t["paper"], "default_s": t["default"], "ratio": ratio,
               "paper_median_s": float(np.median(t["paper"])), "default_median_s": float(np.median(t["default"])),
               "ratio_median": float(np.median(ratio))}
        rows.append(row)
        print(f"| {d} | {row['paper_median_s']:.2f} | {row['default_median_s']:.2f} | {row['ratio_median']:.2f}x |",
              flush=True)
    # (b) with early stopping, at the accuracy suite's quick budget: the InfoNCE term changes how
    # long training runs, so the whole estimate's cost is seconds AND epochs
    stop_rows = []
    if a.early_stop:
        sys.path.insert(0, str(ROOT / "jobs"))
        import benchmark_accuracy as B

        quick = dict(max_epochs=60, patience=10, hidden=128, lr=1e-3, num_threads=a.threads)
        cases = [c for c in B.QUICK_CASES if B.case_name(*c) in a.early_stop_cases]
        print(f"\nwith early stopping (quick budget: hidden 128, lr 1e-3, <= 60 epochs, patience 10), "
              f"seeds 0..{a.repeats - 1}, alternating:")
        print("| case | paper s | default s | paper epochs | default epochs | default / paper s |")
        print("|---|---|---|---|---|---|")
        for fam, p in cases:
            t = {"paper": [], "default": []}
            ep = {"paper": [], "default": []}
            for seed in range(a.repeats):
                X, Y, _ = B.make(fam, p, a.n, seed)
                for name, extra in (("paper", lmi.PAPER), ("default", {})):
                    t0 = time.perf_counter()
                    res = lmi.estimate(X, Y, seed=seed, **quick, **extra)
                    t[name].append(time.perf_counter() - t0)
                    ep[name].append(int(res.epochs))
            row = {"case": B.case_name(fam, p), "paper_s": t["paper"], "default_s": t["default"],
                   "paper_epochs": ep["paper"], "default_epochs": ep["default"],
                   "ratio_of_sums": sum(t["default"]) / sum(t["paper"])}
            stop_rows.append(row)
            print(f"| {row['case']} | {sum(t['paper']):.1f} | {sum(t['default']):.1f} | "
                  f"{' '.join(map(str, ep['paper']))} | {' '.join(map(str, ep['default']))} | "
                  f"{row['ratio_of_sums']:.2f}x |", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": {"n": a.n, "epochs": a.epochs, "hidden": a.hidden, "threads": a.threads,
                                          "repeats": a.repeats, "paper": lmi.PAPER,
                                          "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())},
                                 "rows": rows, "early_stop": stop_rows}, indent=1))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
