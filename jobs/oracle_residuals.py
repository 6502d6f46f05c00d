"""How far each estimator's read sits from what its own held-out rows allow, on the paper's Gaussian.

For the paper's Gaussian (Algorithm 4) the most any estimator can read on a set of rows is the
Gaussian MI of the sample correlations of the k dependent columns there (the *oracle*,
``heldout_vs_fresh.oracle_bits``). Reads taken on different held-out rows of the same sample differ
by their rows' luck; the residual read - oracle removes it, so estimators with different splits can
be compared seed by seed. Here: our estimator under several settings (the same seeds, hence the same
split), and latentmi's reads from a ``benchmark_accuracy.py --methods latentmi`` result file (its
held-out rows rebuilt as latentmi draws them: ``np.random.seed(seed)`` then ``np.random.shuffle`` of
``arange(N)``, the second half; the job that ran it seeds numpy so), or latentmi run here on the same
samples (``--latentmi-probes``: stock, or with one behaviour changed), at the same width as ours.
Widths: ``--hidden`` (the quick budget's 128) holds for both libraries at every d; latentmi's own rule
would make it 4096 wide at d = 5000 (session 11's latentmi files were run so).

Prints a table (per method: mean and sd of the residual, median |error| against the truth) and
writes JSON (``jobs/results/oracle_residuals.json`` unless ``--out``). Bits throughout.

    OMP_NUM_THREADS=1 python jobs/oracle_residuals.py --d 5000 --k 1 --seeds 5 \\
        --latentmi-probes stock,eval_validation
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
sys.path.insert(0, str(ROOT / "jobs"))

from benchmark_accuracy import LATENTMI_PROBES, run_latentmi  # noqa: E402
from heldout_vs_fresh import oracle_bits  # noqa: E402
from lmi_distributed import synthetic  # noqa: E402
from lmi_distributed.estimators.settings import PAPER  # noqa: E402

#: the settings compared, each on top of the quick budget: the default, then one default beyond the
#: paper switched off at a time, then the paper's estimator
VARIANTS = {
    "default": {},
    "latents": {"view": "latents"},
    "no_infonce": {"view": "latents", "contrastive_weight": 0.0},
    "no_gaussianize": {"view": "latents", "ksg_gaussianize": False},
    "paper": dict(PAPER),
    "paper_last": {**PAPER, "restore_best": False},      # latentmi's effective behaviour: the last weights
    # the whole default (the view competing) with one or both of its latent-side additions off
    "default_no_infonce": {"contrastive_weight": 0.0},
    "default_no_gaussianize": {"ksg_gaussianize": False},
    "default_plain_latents": {"contrastive_weight": 0.0, "ksg_gaussianize": False},
}


def latentmi_heldout(n: int, seed: int) -> np.ndarray:
    """latentmi's held-out rows of an N-row sample when numpy was seeded with ``seed`` just before
    ``lmi.estimate`` (its ``np.random.shuffle(arange(N))``, second half)."""
    np.random.seed(seed)
    idx = np.arange(n)
    np.random.shuffle(idx)
    return idx[n // 2:]


def latentmi_rows(path: Path, n: int, d: int, k: int, bits: float) -> list[dict]:
    """latentmi's reads in a result file, each with the oracle of latentmi's own held-out rows."""
    case = json.loads(path.read_text())["cases"][0]
    out = []
    for row in case["methods"]["latentmi"]["rows"]:
        s = int(row["seed"])
        X, Y, _ = synthetic.gaussian_benchmark(n, d, k, bits, s)
        te = latentmi_heldout(n, s)
        out.append(dict(seed=s, read=row["estimate"], oracle=oracle_bits(X[te], Y[te], k)))
    return out


def latentmi_probe_rows(probe: str, data: list, seeds: list[int], k: int, hidden: int, budget: dict) -> list[dict]:
    """latentmi's reads under ``probe`` (one of ``benchmark_accuracy.LATENTMI_PROBES``), run in its venv
    at width ``hidden`` (0: its own widths), each with the oracle of latentmi's own held-out rows."""
    reads, _, _ = run_latentmi(data, seeds, budget["max_epochs"], budget["patience"], hidden, budget["lr"], probe)
    rows = []
    for s, read, (X, Y, _) in zip(seeds, reads, data):
        te = latentmi_heldout(len(X), s)
        rows.append(dict(seed=s, read=read, oracle=oracle_bits(X[te], Y[te], k)))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--d", type=int, default=5000)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--bits", type=float, default=1.0)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--hidden", type=int, default=128,
                    help="hidden width of our variants (the quick budget's 128; 0: the package's rule, "
                         "1024 or 2**floor(log2 d) when d > 2048, as latentmi at its own width)")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    ap.add_argument("--latentmi", type=Path, nargs="*", default=[],
                    help="benchmark_accuracy.py latentmi results of this case (their seeds pooled)")
    ap.add_argument("--latentmi-probes", default="",
                    help="comma list of " + ", ".join(LATENTMI_PROBES) + ": also run latentmi (its venv) on "
                         "these seeds at --hidden, stock or with that behaviour changed")
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "oracle_residuals.json")
    a = ap.parse_args(argv)
    variants = [v for v in a.variants.split(",") if v]       # --variants "": latentmi's rows only
    probes = [p for p in a.latentmi_probes.split(",") if p]
    for given, known, flag in ((variants, VARIANTS, "--variants"), (probes, LATENTMI_PROBES, "--latentmi-probes")):
        unknown = [v for v in given if v not in known]
        if unknown:
            ap.error(f"{flag}: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    from lmi_distributed.estimators.api import estimate_many

    budget = dict(hidden=a.hidden or None, lr=1e-3, max_epochs=60, patience=10, num_threads=1)
    seeds = list(range(a.seeds))
    data = [synthetic.gaussian_benchmark(a.n, a.d, a.k, a.bits, s) for s in seeds]
    rows: dict[str, list[dict]] = {}
    for name in variants:
        t0 = time.perf_counter()
        res = estimate_many([(X, Y) for X, Y, _ in data], seeds=seeds, validate=False, **budget, **VARIANTS[name])
        rows[name] = [dict(seed=s, read=r.mi, oracle=oracle_bits(X[r.test_idx], Y[r.test_idx], a.k))
                      for s, r, (X, Y, _) in zip(seeds, res, data)]
        print(f"{name}: {time.perf_counter() - t0:.0f} s", flush=True)
    for probe in probes:
        t0 = time.perf_counter()
        rows[f"latentmi_{probe}"] = latentmi_probe_rows(probe, data, seeds, a.k, a.hidden, budget)
        print(f"latentmi_{probe}: {time.perf_counter() - t0:.0f} s", flush=True)
    if a.latentmi:
        rows["latentmi"] = [r for f in a.latentmi for r in latentmi_rows(f, a.n, a.d, a.k, a.bits)]
    summary = {}
    print(f"\ngauss d={a.d} k={a.k} {a.bits:g}b, N={a.n}: read - oracle of its own held-out rows (bits)")
    print(f"{'method':<24} {'seeds':>5} {'resid mean':>10} {'resid sd':>9} {'median|err|':>12}  reads")
    for name, rs in rows.items():
        resid = np.array([r["read"] - r["oracle"] for r in rs])
        err = np.abs(np.array([r["read"] for r in rs]) - a.bits)
        summary[name] = dict(seeds=len(rs), resid_mean=float(resid.mean()),
                             resid_sd=float(resid.std(ddof=1)) if len(rs) > 1 else float("nan"),
                             median_abs_error=float(np.median(err)))
        print(f"{name:<24} {len(rs):>5} {resid.mean():>10.3f} {summary[name]['resid_sd']:>9.3f} "
              f"{np.median(err):>12.3f}  " + " ".join(f"{r['read']:.3f}" for r in rs))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(dict(meta=dict(vars(a), out=str(a.out), latentmi=[str(f) for f in a.latentmi],
                                               budget=budget),
                                     summary=summary, rows=rows), indent=1))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
