"""Marginal Gaussianisation of the latents before KSG (``ksg_gaussianize=True``): every latent
dimension is mapped through its empirical CDF on the held-out rows, then through the standard
normal quantile, and multiplied by that dimension's robust scale on the held-out rows (IQR / 1.349,
the standard deviation of a normal with the same interquartile range).

Why: mutual information is unchanged by an invertible map of each latent dimension, but KSG's
bias is not. KSG counts neighbours in the max-norm: a dimension with long tails or a folded,
curved marginal (what nonlinear encoders, and the InfoNCE term, produce) wastes the neighbour
radius, and KSG underestimates. Normal scores give every marginal the shape KSG handles with the
least bias (the "Gaussian copula" transform; e.g. Ince et al. 2017, Hum. Brain Mapp.). Keeping
each dimension's robust scale keeps the encoder's weighting of the dimensions: a latent that
barely varies (it carries little) stays small in the max-norm instead of being blown up to unit
scale (unit scale measured worse on independent and d = 100 cases: docs/estimator.md).

What it keeps:

* ties: equal values get the same (average) rank, so duplicated latents stay duplicated and the
  tie caution still fires;
* the latent permutation null stays exact: the map of X's latents depends on X's held-out
  latents alone (a permutation of the rows does not change it), likewise for Y;
* out-of-sample rows (training rows, ``LMI.transform`` / ``score_samples`` on new rows) are
  mapped with the held-out rows as reference, continuously: the rank is interpolated linearly
  between the reference values' average ranks (a value equal to a reference value gets exactly
  its rank; beyond the reference range, the extreme rank). Continuity matters: the same row
  encoded in another batch layout differs by float32 rounding (~1e-7 relative, measured) and
  must land on (nearly) the same score, not a rank step away.

Units: latents (n, latent) in any float; output float64 in the latents' units (normal scores
times the scale), bounded by the normal quantile of 0.5 / (n_ref + 1) (|score| < 3.9 at 10^4
reference rows) times the scale.
"""
from __future__ import annotations

import numpy as np
from scipy.special import ndtri
from scipy.stats import rankdata

__all__ = ["gaussianize", "robust_scale"]

#: interquartile range of the standard normal: IQR / this is a normal's standard deviation
_NORMAL_IQR = 1.3489795003921634



def robust_scale(ref: np.ndarray) -> np.ndarray:
    """Per column of ``ref`` (n, latent): IQR / 1.349; a column whose IQR is 0 (over half its
    values tied) falls back to its standard deviation, a constant column to 1. (latent,) float64."""
    ref = np.asarray(ref, dtype=np.float64)
    q1, q3 = np.percentile(ref, [25.0, 75.0], axis=0)
    scale = (q3 - q1) / _NORMAL_IQR
    std = ref.std(axis=0)
    scale = np.where(scale > 0, scale, std)
    return np.where(scale > 0, scale, 1.0)


def gaussianize(ref: np.ndarray, z: np.ndarray | None = None) -> np.ndarray:
    """Gaussianised ``z`` (m, latent) by the held-out reference ``ref`` (n, latent), column by
    column: the rank r of each value, linear interpolation between the distinct reference values'
    1-based average ranks (clamped at the ends), then ``ndtri(r / (n + 1))`` times
    :func:`robust_scale` of the reference column. ``z=None``: the reference rows themselves
    (exactly their average ranks, ties kept).
    Returns (m, latent) float64. ``ref`` must be finite with at least one row (the caller checks
    the latents first)."""
    ref = np.asarray(ref, dtype=np.float64)
    if ref.ndim != 2 or ref.shape[0] < 1:
        raise ValueError(f"ref must be (n >= 1, latent), got shape {ref.shape}")
    z = ref if z is None else np.asarray(z, dtype=np.float64)
    if z.ndim != 2 or z.shape[1] != ref.shape[1]:
        raise ValueError(f"z must be (m, {ref.shape[1]}), got shape {z.shape}")
    n = ref.shape[0]
    scale = robust_scale(ref)
    if z is ref:        # the reference rows themselves: their average ranks, all columns at once
        return ndtri(rankdata(ref, method="average", axis=0) / (n + 1)) * scale
    out = np.empty(z.shape, dtype=np.float64)
    for j in range(ref.shape[1]):
        knots, counts = np.unique(ref[:, j], return_counts=True)
        avg_rank = np.cumsum(counts) - 0.5 * (counts - 1)      # 1-based average rank of each knot
        rank = np.interp(z[:, j], knots, avg_rank)
        out[:, j] = ndtri(rank / (n + 1)) * scale[j]
    return out
