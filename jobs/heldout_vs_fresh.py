"""Is a fit's held-out read typical of fresh rows of the same law? (paper Algorithm 4, ``gauss``)

Asked by ``gauss d=5000 k=1`` at the quick budget, where the latents read 1.12 bits for a truth of 1
on two seeds of five and 0.88 on a third. For each seed this job fits ``lmi.LMI`` on
``gaussian_benchmark(n, d, k, bits, seed)`` and reads the latents' KSG (the estimator's own
read: held-out ECDF normal scores, k = 3, the seeded jitter) on

- **held**: the fit's held-out rows, the rows its estimate is read on;
- **blocks**: ``--blocks`` fresh samples of as many rows of the same law (the same copy columns),
  encoded by the same fitted encoders;
- **refits**: ``--refits`` new fits with the held-out rows replaced by fresh rows (training rows
  and seed kept), each read on its new held-out rows.

Every read is set against its rows' **oracle**: the Gaussian MI (bits) of the sample correlation
matrix of the k dependent columns of X and of Y (for k = 1, ``-1/2 log2(1 - r^2)``). The oracle
carries the sample's own luck (its sd at 1000 rows and 1 bit is about 0.04 bits); the residual ``read - oracle`` is what the
latents and KSG add. If the held-out residuals spread like the blocks' and the refits', the held-out
rows are one more sample to the fit; if they spread wider, the fit depends on them (early stopping
chose its epoch on them; the z-scores use all N rows).

Prints a table; writes JSON (``jobs/results/heldout_vs_fresh.json`` unless ``--out``).

    OMP_NUM_THREADS=1 python jobs/heldout_vs_fresh.py --d 5000 --k 1 --seeds 5 --blocks 8 --refits 2
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def law_rows(n_orig: int, n: int, d: int, k: int, bits: float, law_seed: int,
             row_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` new rows (n, d) of the law of ``gaussian_benchmark(n_orig, d, k, bits, law_seed)``: new
    dependent and nuisance columns (``row_seed``), copy columns copying the law's own picks."""
    from lmi_distributed.synthetic import gaussian_benchmark

    rng = np.random.default_rng(law_seed)          # replay the generator's draws up to its picks
    rng.standard_normal((n_orig, k, 2))
    n_copy = d - k - (d - k) // 2
    picks = rng.integers(0, k, size=n_copy)
    X, Y, _ = gaussian_benchmark(n, d, k, bits, row_seed)
    X[:, k:k + n_copy], Y[:, k:k + n_copy] = X[:, picks], Y[:, picks]
    return X, Y


def oracle_bits(x: np.ndarray, y: np.ndarray, k: int) -> float:
    """Gaussian MI (bits) of the sample correlation matrix of the k dependent columns of x and of y
    (n, d): :func:`canonical.gaussian_mi_bits` of the (2k, 2k) matrix."""
    from lmi_distributed.estimators.canonical import gaussian_mi_bits

    return gaussian_mi_bits(np.corrcoef(np.hstack([x[:, :k], y[:, :k]]), rowvar=False), k)


def latent_read(est, x: np.ndarray, y: np.ndarray) -> float:
    """The latents' KSG (bits) on rows x, y as the estimator reads its held-out rows."""
    from lmi_distributed.estimators.gaussianize import gaussianize
    from lmi_distributed.estimators.ksg import ksg_mi
    from lmi_distributed.estimators.seeding import derive_seed

    zx, zy = est.transform(x, y)
    s = est.result_.settings
    return ksg_mi(gaussianize(zx.astype(np.float64)), gaussianize(zy.astype(np.float64)), k=s.k,
                  noise=s.ksg_noise, seed=derive_seed(est.seed_, "ksg"))


def spread(res: list[float]) -> dict:
    """n, mean and sd (ddof 1) of a list of bits."""
    a = np.asarray(res, dtype=float)
    return {"n": int(a.size), "mean": float(a.mean()), "sd": float(a.std(ddof=1)) if a.size > 1 else float("nan")}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--d", type=int, default=5000)
    ap.add_argument("--k", type=int, default=1)
    ap.add_argument("--bits", type=float, default=1.0)
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--blocks", type=int, default=8, help="fresh blocks per seed, read by the same fit")
    ap.add_argument("--refits", type=int, default=2, help="fits per seed with the held-out rows replaced")
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--max-epochs", type=int, default=60)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=ROOT / "jobs" / "results" / "heldout_vs_fresh.json")
    a = ap.parse_args(argv)

    import torch

    import lmi_distributed as lmi
    from lmi_distributed.synthetic import gaussian_benchmark

    torch.set_num_threads(a.threads)
    kw = dict(hidden=a.hidden, lr=a.lr, max_epochs=a.max_epochs, patience=a.patience, num_threads=a.threads,
              view="latents")
    t0 = time.perf_counter()
    rows = []
    print(f"gauss d={a.d} k={a.k} {a.bits} bits, N={a.n}; residual = latents' KSG - oracle (bits)")
    print(f"{'seed':>4} {'held':>7} {'oracle':>7} {'resid':>7} | {'blocks resid mean (sd)':>22} | refits resid")
    for s in range(a.seeds):
        X, Y, truth = gaussian_benchmark(a.n, a.d, a.k, a.bits, s)
        if s == 0:     # law_rows keeps the law: with the law's own row seed it gives the sample back
            xs, ys = law_rows(a.n, a.n, a.d, a.k, a.bits, s, s)
            assert np.array_equal(xs, X) and np.array_equal(ys, Y)
        est = lmi.LMI(random_state=s, **kw).fit(X, Y)
        te = est.test_idx_
        n_te = len(te)
        held = latent_read(est, X[te], Y[te])
        assert held == est.result_.mi_latents       # the estimator's own read, recomputed
        blocks = []
        for b in range(a.blocks):
            xf, yf = law_rows(a.n, n_te, a.d, a.k, a.bits, s, 10_000 + 100 * s + b)
            blocks.append({"read": latent_read(est, xf, yf), "oracle": oracle_bits(xf, yf, a.k)})
        refits = []
        for r in range(a.refits):
            xf, yf = law_rows(a.n, n_te, a.d, a.k, a.bits, s, 20_000 + 100 * s + r)
            X2, Y2 = X.copy(), Y.copy()
            X2[te], Y2[te] = xf, yf
            e2 = lmi.LMI(random_state=s, **kw).fit(X2, Y2)
            refits.append({"read": float(e2.mi_), "oracle": oracle_bits(xf, yf, a.k), "best_epoch": e2.best_epoch_})
        row = {"seed": s, "truth": truth, "held": held, "held_oracle": oracle_bits(X[te], Y[te], a.k),
               "best_epoch": est.best_epoch_, "blocks": blocks, "refits": refits}
        rows.append(row)
        br = [b["read"] - b["oracle"] for b in blocks]
        print(f"{s:>4} {held:7.3f} {row['held_oracle']:7.3f} {held - row['held_oracle']:+7.3f} | "
              f"{np.mean(br):+13.3f} ({np.std(br, ddof=1) if len(br) > 1 else float('nan'):.3f}) | "
              + " ".join(f"{f['read'] - f['oracle']:+.3f}" for f in refits), flush=True)
    summary = {
        "held_resid": spread([r["held"] - r["held_oracle"] for r in rows]),
        "blocks_resid": spread([b["read"] - b["oracle"] for r in rows for b in r["blocks"]]),
        "refits_resid": spread([f["read"] - f["oracle"] for r in rows for f in r["refits"]]),
        "held_abs_err": spread([abs(r["held"] - r["truth"]) for r in rows]),
        "oracle_err": spread([r["held_oracle"] - r["truth"] for r in rows]),
    }
    for key, v in summary.items():
        print(f"{key:>13}: n {v['n']:3d}  mean {v['mean']:+.3f}  sd {v['sd']:.3f}")
    meta = {k2: v for k2, v in vars(a).items() if k2 != "out"}
    meta["seconds"] = time.perf_counter() - t0
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"meta": meta, "summary": summary, "seeds": rows}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
