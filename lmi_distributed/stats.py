"""Significance helpers for MI studies: permutation p-values, Benjamini–Hochberg, SEM, z-scores.

Pure numpy. MI values are in bits, but nothing here depends on the unit.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

__all__ = ["permutation_pvalue", "benjamini_hochberg", "sem", "zscore", "null_of_means", "null_summary",
           "bh_over_ok", "welch_difference_ci"]


def permutation_pvalue(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """Permutation p-value ``(1 + #{null >= observed}) / (1 + n_null)``; never 0.

    ``observed``: a scalar statistic (e.g. MI in bits). ``null``: (n_null,) statistics under
    the null; NaN entries are dropped. With an empty null the p-value is 1 (no evidence).
    A NaN observed value gives NaN.
    """
    obs = float(observed)
    if np.isnan(obs):
        return float("nan")
    null_arr = np.asarray(null, dtype=np.float64).ravel()
    null_arr = null_arr[~np.isnan(null_arr)]
    n = null_arr.size
    return float((1 + np.count_nonzero(null_arr >= obs)) / (1 + n))


def benjamini_hochberg(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values), same order as the input.

    ``pvalues``: (m,) in [0, 1]; NaN entries stay NaN and do not count towards m.
    q_(i) = min_{j >= i} (m / j) p_(j), capped at 1 (the step-up procedure, as R's
    ``p.adjust(method="BH")``).
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    q = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    pv = p[ok]
    m = pv.size
    if m == 0:
        return q
    order = np.argsort(pv, kind="stable")
    ranked = pv[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(ranked, 1.0)
    q[ok] = out
    return q


def sem(values: Sequence[float] | np.ndarray) -> float:
    """Standard error of the mean, ``std(ddof=1) / sqrt(n)``; NaN when fewer than 2 values."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size < 2:
        return float("nan")
    return float(np.std(v, ddof=1) / np.sqrt(v.size))


def zscore(observed: float, null: Sequence[float] | np.ndarray) -> float:
    """``(observed - mean(null)) / std(null, ddof=1)``; NaN with < 2 null values or zero spread."""
    v = np.asarray(null, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size < 2:
        return float("nan")
    sd = float(np.std(v, ddof=1))
    if sd == 0.0:
        return float("nan")
    return float((float(observed) - float(np.mean(v))) / sd)


def null_of_means(null_by_replicate: np.ndarray) -> np.ndarray:
    """Null distribution of a replicate-mean statistic.

    ``null_by_replicate``: (R, n_null) — draw j of replicate r. Draws are independent across
    replicates, so ``mean_r null[r, j]`` is a draw of the replicate mean under the null.
    Returns (n_null,). Columns with NaN in every replicate are NaN.
    """
    a = np.asarray(null_by_replicate, dtype=np.float64)
    if a.ndim == 1:
        return a.copy()
    if a.size == 0:
        return np.zeros((a.shape[-1] if a.ndim else 0,))
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanmean(a, axis=0)


def null_summary(observed: float, null: Sequence[float] | np.ndarray) -> tuple[float, float, float]:
    """``(mean, sd, p)`` of a null distribution against ``observed`` (bits in, bits out).

    NaN draws are dropped; sd has ddof=1 (NaN with < 2 draws); p is
    :func:`permutation_pvalue`. A null without a finite draw gives ``(nan, nan, nan)``: no null,
    no p-value (rather than p = 1)."""
    v = np.asarray(null, dtype=np.float64).ravel()
    v = v[~np.isnan(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    sd = float(np.std(v, ddof=1)) if v.size >= 2 else float("nan")
    return float(np.mean(v)), sd, permutation_pvalue(observed, v)


def chosen_null(observed: float, p_null: str, shuffle_null: np.ndarray | None,
                latent_null: np.ndarray | None) -> dict[str, Any]:
    """The null behind a pair's ``p``: ``{"null", "null_mean", "null_sd", "p", "z"}`` (bits).

    ``p_null``: "retrain_shuffles", "latent_permutations", or "auto" (the retrain shuffles when
    there are draws, else the latent permutations). ``shuffle_null``/``latent_null``: null draws
    of replicate means (bits) or None when not drawn. No draws: ``null = "none"`` and NaNs."""
    if p_null == "auto":
        which = "retrain_shuffles" if shuffle_null is not None and shuffle_null.size else (
            "latent_permutations" if latent_null is not None else "none")
    else:
        which = p_null
    null = shuffle_null if which == "retrain_shuffles" else (latent_null if which == "latent_permutations" else None)
    if null is None or null.size == 0:
        nan = float("nan")
        return {"null": "none", "null_mean": nan, "null_sd": nan, "p": nan, "z": nan}
    m, sd, p = null_summary(observed, null)
    return {"null": which, "null_mean": m, "null_sd": sd, "p": p, "z": zscore(observed, null)}


def bh_over_ok(pvalues: Sequence[float] | np.ndarray, ok: Sequence[bool] | np.ndarray,
               alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``(q, significant)`` of a screen: Benjamini–Hochberg over the pairs whose ``ok`` is True
    only (a flagged pair never enters the correction: its q is NaN, it is never significant)."""
    ok = np.asarray(ok, dtype=bool)
    p = np.asarray(pvalues, dtype=np.float64).copy()
    p[~ok] = np.nan
    q = benjamini_hochberg(p)
    with np.errstate(invalid="ignore"):
        return q, (q <= alpha) & ok


def welch_difference_ci(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray,
                        confidence: float = 0.95) -> tuple[float, float, float, float, str]:
    """``(difference, low, high, df, why)``: mean(a) - mean(b) with a two-sided Welch t-interval.

    ``a``, ``b``: (R_a,), (R_b,) independent replicate estimates (e.g. MI in bits of two pairs,
    each replicate a fresh random pairing and training); NaN entries are dropped. The interval is
    scipy's ``ttest_ind(a, b, equal_var=False).confidence_interval(confidence)`` (unequal
    variances, Welch–Satterthwaite df). ``why`` is "" when the interval is computed; otherwise
    low/high/df are NaN and ``why`` says why (fewer than 2 values on a side, or no spread on
    either side, where a t-interval would claim a certainty the replicates cannot give)."""
    from scipy import stats as sps

    x = np.asarray(a, dtype=np.float64).ravel()
    y = np.asarray(b, dtype=np.float64).ravel()
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    nan = float("nan")
    diff = float(np.mean(x) - np.mean(y)) if x.size and y.size else nan
    if x.size < 2 or y.size < 2:
        return diff, nan, nan, nan, f"needs >= 2 replicates on each side (got {x.size} and {y.size})"
    if np.std(x, ddof=1) == 0 and np.std(y, ddof=1) == 0:
        return diff, nan, nan, nan, "replicates have no spread on either side"
    res = sps.ttest_ind(x, y, equal_var=False)
    ci = res.confidence_interval(confidence)
    return diff, float(ci.low), float(ci.high), float(res.df), ""
