"""Is an estimate trustworthy? Checks kept apart from the math (ennemi's split of validation
from estimation).

Each check returns a reason string ("" when fine) or a ``(status, detail)`` pair, so the API can
raise it (``InputError`` before any training) and the engine's path can record it as a pair's
``status`` without failing the batch. Statuses (``api.STATUSES``):

- ``"degenerate"``: the data or the latents cannot carry an estimate --
  a variable with at most k distinct held-out rows (:func:`check_variable`), k or more exact
  duplicates of a joint held-out row (:func:`joint_ties`), a latent side collapsed to (nearly)
  one point (:func:`collapsed_side`).
- ``"diverged"``: training produced non-finite losses or latents, or its held-out loss never
  improved on the initial weights (:func:`training_status`).

Thresholds and why:

- ``k + 1`` distinct rows: KSG needs, for every point, k neighbours that are not copies of it
  in each marginal space; with at most k distinct values that is impossible for every point,
  the variable is discrete at the resolution KSG works at, and its ψ(n_x) terms measure
  multiplicities, not a density.
- ties: a point with k or more exact duplicates of its joint (x, y) row has its k-th joint
  neighbour at distance 0, so its strict counts n_x = n_y = 0 and its pMI is the maximum
  ψ(k) + ψ(N) − 2ψ(1) (≈ 9.6 bits at N = 150): MI is inflated, silently. We flag it rather than
  redefine the estimator, whatever ``ksg_noise``: tie-breaking jitter (latentmi's 1e-10) does NOT
  help here -- the copies stay each other's nearest neighbours at distance ~1e-10, their marginal
  counts are the copies only, and MI is inflated just the same (independent data with every row
  repeated 4 times: 1.76 bits from ``estimate(..., ksg_noise=1e-10)``, 8.2 bits from KSG alone, truth 0).
  The check runs on the rows before any jitter.
- marginal ties (a caution, not a status): when at least :data:`MARGINAL_TIE_FRACTION` = 5% of the
  held-out rows share their X latent or their Y latent exactly with another row (discrete or
  duplicated input: resampled digit images, repeated sequences), strict counts leave out every
  point tied at exactly the k-th joint distance and MI comes out too high: on the digits benchmark
  (paper 3.2; ~95% of the held-out latent rows tied) 0.63-0.65 bits against a truth of 0.53, and
  0.55-0.57 with ``ksg_noise=1e-10``. The estimate stays "ok" with the caution in ``detail``
  (:func:`marginal_ties`) and an ``LMIWarning``.
- collapse: a latent dimension is collapsed when its held-out standard deviation is at most
  :data:`COLLAPSE_RTOL` = 1e-5 of its largest |value| -- about 84 float32 ulps (eps 1.19e-7), so
  its values span only a few hundred representable numbers and its neighbour structure is
  rounding, not data; a side is collapsed when all its dims are.
"""
from __future__ import annotations

import numpy as np

__all__ = ["COLLAPSE_RTOL", "MARGINAL_TIE_FRACTION", "marginal_ties", "row_multiplicity", "distinct_rows", "check_variable", "joint_ties",
           "collapsed_side", "latent_status", "training_status"]

#: a latent dim is collapsed when held-out std <= COLLAPSE_RTOL * max |value| (~84 float32 ulps)
COLLAPSE_RTOL = 1e-5
#: share of held-out rows whose X or Y latent has an exact duplicate above which an ok estimate
#: carries a tie caution (continuous latents have none; the digits benchmark has ~95%)
MARGINAL_TIE_FRACTION = 0.05


def _row_keys(a: np.ndarray) -> np.ndarray:
    """One opaque bytes key per row of ``a`` (n, d): equal keys <=> equal rows (-0.0 == 0.0)."""
    a = np.ascontiguousarray(a) + 0                 # -0.0 + 0 == +0.0: equal values, equal bytes
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    return a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()


def row_multiplicity(a: np.ndarray) -> np.ndarray:
    """For each row of ``a`` (n, d), how many rows equal it exactly (itself included). (n,) int64."""
    if a.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    _, inverse, counts = np.unique(_row_keys(a), return_inverse=True, return_counts=True)
    return counts[inverse.ravel()].astype(np.int64)


def distinct_rows(a: np.ndarray) -> int:
    """Number of distinct rows of ``a`` (n, d)."""
    return 0 if a.shape[0] == 0 else int(np.unique(_row_keys(a)).size)


def check_variable(z: np.ndarray, name: str, k: int) -> str:
    """Why variable ``name`` cannot be estimated on, or "".

    ``z``: (n, d) its held-out rows as the network sees them (z-scored, clipped, float32).
    Fewer than k + 1 distinct rows (constant included) is degenerate (see the module notes).
    """
    m = distinct_rows(z)
    if m > k:
        return ""
    what = "is constant (1 distinct row" if m == 1 else f"has only {m} distinct rows"
    sep = " " if m == 1 else " ("
    return (f"{name} {what}{sep}among its {z.shape[0]} held-out rows); KSG with k={k} needs at least "
            f"k+1={k + 1} distinct rows per variable")


def joint_ties(zx: np.ndarray, zy: np.ndarray, k: int, what: str = "rows") -> str:
    """Why the joint rows tie, or "": points with k or more exact duplicates of their
    (x, y) row (their k-th joint neighbour is at distance 0). ``zx`` (n, dx), ``zy`` (n, dy)."""
    both = np.hstack([np.asarray(zx, np.float64), np.asarray(zy, np.float64)])
    tied = int(np.count_nonzero(row_multiplicity(both) > k))
    if tied == 0:
        return ""
    return (f"{tied} of {both.shape[0]} held-out {what} have k={k} or more exact duplicates of their "
            f"(X, Y) row, so their k-th neighbour is at distance 0 and KSG would inflate MI; remove "
            f"or merge the duplicate rows (tie-breaking jitter, ksg_noise > 0, does not help: the "
            f"copies stay each other's nearest neighbours)")


def marginal_ties(zx: np.ndarray, zy: np.ndarray) -> str:
    """A caution for an ok estimate, or "": the share of the held-out latent rows ``zx`` (n, dx),
    ``zy`` (n, dy) (as KSG sees them, jitter included) that equal another row exactly, when it
    reaches :data:`MARGINAL_TIE_FRACTION` on either side (see the module notes)."""
    n = np.asarray(zx).shape[0]
    if n == 0:
        return ""
    parts = []
    for name, z in (("X", zx), ("Y", zy)):
        tied = int(np.count_nonzero(row_multiplicity(np.asarray(z, np.float64)) > 1))
        if tied >= MARGINAL_TIE_FRACTION * n:
            parts.append(f"{tied} of {n} held-out {name} latent rows")
    if not parts:
        return ""
    return (f"caution: {' and '.join(parts)} equal another row exactly (discrete or duplicated "
            f"input?); KSG's strict counts then overestimate MI (digits benchmark: 0.64 vs truth "
            f"0.53 bits); ksg_noise=1e-10 breaks the ties (0.56 bits there)")


def collapsed_side(z: np.ndarray) -> bool:
    """True when every dim of the latents ``z`` (n, latent) has std <= COLLAPSE_RTOL * max|value|."""
    z = np.asarray(z, np.float64)
    std = z.std(axis=0)
    peak = np.abs(z).max(axis=0)
    return bool(np.all(std <= COLLAPSE_RTOL * peak))


def latent_status(zx: np.ndarray, zy: np.ndarray, k: int) -> tuple[str, str]:
    """``(status, detail)`` of one pair's held-out latents ``zx`` (n, latent), ``zy`` (n, latent).

    Non-finite latents -> "diverged"; a collapsed side -> "degenerate"; k or more exact duplicates
    of a joint latent row (before any KSG jitter, which would only hide them) -> "degenerate";
    else "ok".
    """
    for name, z in (("X", zx), ("Y", zy)):
        bad = ~np.isfinite(z).all(axis=1)
        if bad.any():
            return "diverged", (f"non-finite {name} latents in {int(bad.sum())} of {len(bad)} "
                                f"held-out rows (training diverged)")
    for name, z in (("X", zx), ("Y", zy)):
        if collapsed_side(z):
            return "degenerate", (f"the {name} latents collapsed to a point: every latent dim has "
                                  f"held-out std <= {COLLAPSE_RTOL:g} x its max |value|")
    ties = joint_ties(zx, zy, k, "latent rows")
    return ("degenerate", ties) if ties else ("ok", "")


def training_status(train_loss: np.ndarray, val_loss: np.ndarray, best_epoch: int,
                    init_val_loss: float) -> tuple[str, str]:
    """``(status, detail)`` of one pair's training: ``train_loss``/``val_loss`` (epochs,) per-epoch
    histories, ``best_epoch`` (0-based; -1: none improved), ``init_val_loss`` the held-out loss
    of the initial weights. Epochs in the detail are 0-based, like ``best_epoch``."""
    for label, hist in (("training", train_loss), ("held-out", val_loss)):
        bad = np.flatnonzero(~np.isfinite(np.asarray(hist, np.float64)))
        if bad.size:
            return "diverged", f"non-finite {label} loss at epoch {int(bad[0])} (0-based)"
    if best_epoch < 0 or len(val_loss) == 0:
        return "diverged", "no epoch's held-out loss improved on the initial weights"
    best = float(np.min(val_loss))
    if np.isfinite(init_val_loss) and not best < init_val_loss:
        return "diverged", (f"held-out loss never improved on the initial weights "
                            f"(initial {init_val_loss:.6g}, best {best:.6g})")
    return "ok", ""
