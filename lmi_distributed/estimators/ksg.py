"""KSG mutual information (Kraskov et al. 2004, algorithm 1), pointwise, in bits.

For joint samples (x_i, y_i), i = 1..N, with max-norm distances:

    eps_i  = Chebyshev distance from (x_i, y_i) to its k-th nearest neighbour (self excluded)
             in the joint space, i.e. the k-th smallest of max(‖x_j − x_i‖∞, ‖y_j − y_i‖∞);
    n_x,i  = #{j ≠ i : ‖x_j − x_i‖∞ < eps_i}     (strict), n_y,i likewise;
    pmi_i  = (ψ(k) + ψ(N) − ψ(n_x,i + 1) − ψ(n_y,i + 1)) / ln 2      [bits]

and MI = mean_i pmi_i. Strictness is exact: counts compare the exact float distances with
``<`` (equivalently ``<= nextafter(eps, 0)``), never ``eps - 1e-15`` as latentmi does.

Noise: ``noise > 0`` adds seeded uniform [0, noise) jitter to every coordinate (drawn with
``numpy.random.default_rng(seed)``: first the x block, then the y block); ``noise = 0`` (the
default) adds none. latentmi adds unseeded 1e-10 uniform noise to break ties.

Out-of-sample pMI (paper Algorithm 2, latentmi's ``out_of_sample_pmi``) is ``oos_pmi``; see
``docs/ksg.md`` for the two conventions ("insert", the default, and "latentmi").

All inputs are computed on in float64; every backend gives identical neighbour counts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.special import digamma

from lmi_distributed.errors import InputError
from lmi_distributed.estimators.neighbors import array_namespace, knn_counts

__all__ = ["ksg_pmi", "ksg_mi", "oos_pmi", "add_noise", "pmi_from_counts", "OOS_CONVENTIONS", "TIES"]

LN2 = math.log(2.0)
OOS_CONVENTIONS = ("insert", "latentmi")
#: what to do with points whose k-th joint neighbour is at distance 0 (k or more exact copies)
TIES = ("raise", "allow")


def _check_ties(ties: Any) -> str:
    if ties not in TIES:
        raise InputError(f"ties must be one of {TIES}, got {ties!r}")
    return ties


def _refuse_ties(eps: np.ndarray, k: int, what: str) -> None:
    """InputError when some k-th joint neighbour distance is 0: those points' strict counts are
    0 and their pMI is the maximum psi(k) + psi(N) - 2 psi(1), which inflates MI silently."""
    tied = int(np.count_nonzero(np.asarray(eps) == 0))
    if tied:
        raise InputError(
            f"{tied} of {len(eps)} {what} have their k-th (k={k}) joint neighbour at distance 0 "
            f"(exact duplicate rows): KSG would inflate MI there. Remove or merge the duplicate rows "
            f"(noise > 0 only hides them: the copies stay each other's nearest neighbours and MI is "
            f"inflated just the same), or ties='allow' for the textbook sum")


def _check_k(k: Any) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _check_array(a: Any, name: str):
    """2-D finite float array (numpy or cupy), else InputError naming ``name``."""
    xp = array_namespace(a)
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        a = np.asarray(a)
        xp = np
    if a.ndim != 2:
        raise InputError(f"{name} must be a 2-D array (n_samples, n_features), got shape "
                         f"{tuple(a.shape)}; reshape a single feature with .reshape(-1, 1)")
    if a.shape[1] < 1:
        raise InputError(f"{name} has no features (shape {tuple(a.shape)})")
    if a.dtype.kind not in "fiub":
        raise InputError(f"{name} must be numeric, got dtype {a.dtype}")
    a = xp.asarray(a, dtype=xp.float64)
    if a.size and not bool(xp.isfinite(a).all()):
        raise InputError(f"{name} contains NaN or infinite values")
    return a


def _check_pair(x: Any, y: Any, nx: str, ny: str):
    x = _check_array(x, nx)
    y = _check_array(y, ny)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{nx} and {ny} must have the same number of rows, got "
                         f"{x.shape[0]} and {y.shape[0]}")
    if array_namespace(x) is not array_namespace(y):
        raise InputError(f"{nx} and {ny} must both be numpy or both be cupy arrays")
    return x, y


def add_noise(arrays: list, noise: float, seed: int | None) -> list:
    """Add uniform [0, noise) jitter to each array in order, from ``default_rng(seed)``.

    ``noise == 0`` returns the arrays unchanged. The jitter is drawn in numpy (so it is the same
    whatever device the arrays live on) and added in float64.
    """
    if not (isinstance(noise, (int, float, np.floating)) and math.isfinite(noise) and noise >= 0):
        raise InputError(f"noise must be a finite number >= 0, got {noise!r}")
    if noise == 0:
        return list(arrays)
    rng = np.random.default_rng(seed)
    out = []
    for a in arrays:
        xp = array_namespace(a)
        jitter = noise * rng.random(tuple(a.shape))
        out.append(a + xp.asarray(jitter, dtype=xp.float64))
    return out


def pmi_from_counts(k: int, n: int, nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """(ψ(k) + ψ(n) − ψ(nx) − ψ(ny)) / ln 2 in bits; ``nx``/``ny`` are the digamma arguments."""
    nx = np.asarray(nx, dtype=np.float64)
    ny = np.asarray(ny, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (digamma(k) + digamma(n) - digamma(nx) - digamma(ny)) / LN2


def ksg_pmi(zx, zy, *, k: int = 3, noise: float = 0.0, seed: int | None = None,
            backend: str = "auto", ties: str = "raise") -> np.ndarray:
    """Pointwise KSG mutual information, in bits.

    zx (N, dx), zy (N, dy): paired samples (numpy or cupy arrays; computed in float64).
    k: neighbour order (default 3; N must exceed k). noise/seed: optional seeded uniform
    [0, noise) jitter (default none). backend: "auto", "tree", "tiled" or "cupy".
    ties: "raise" (default) refuses points whose k-th joint neighbour is at distance 0 (k or
    more exact duplicates, after the noise) with an InputError; "allow" returns the textbook
    sum for them (strict counts 0, the maximal pMI).
    Returns pmi (N,) float64 in bits; its mean is the KSG-1 MI estimate.
    """
    k = _check_k(k)
    ties = _check_ties(ties)
    x, y = _check_pair(zx, zy, "zx", "zy")
    n = x.shape[0]
    if n <= k:
        raise InputError(f"KSG needs more samples than k: got N={n} with k={k}")
    x, y = add_noise([x, y], noise, seed)
    eps, nx, ny = knn_counts(x, y, kth=k, backend=backend)
    if ties == "raise":
        _refuse_ties(eps, k, "points")
    return pmi_from_counts(k, n, nx + 1, ny + 1)


def ksg_mi(zx, zy, **kwargs) -> float:
    """KSG-1 mutual information in bits: the mean of ``ksg_pmi(zx, zy, **kwargs)``."""
    return float(np.mean(ksg_pmi(zx, zy, **kwargs)))


def oos_pmi(ref_x, ref_y, query_x, query_y, *, k: int = 3, noise: float = 0.0,
            seed: int | None = None, backend: str = "auto",
            convention: str = "insert", ties: str = "raise") -> np.ndarray:
    """Out-of-sample pointwise MI (log density ratio, paper Algorithm 2), in bits.

    ref_x (N, dx), ref_y (N, dy): reference sample. query_x (M, dx), query_y (M, dy): query
    pairs (not part of the reference). Returns (M,) float64 bits.

    convention="insert" (default): each query is treated as if inserted into the reference:
      eps = k-th nearest joint distance among the N reference points, m_x = #{ref j:
      ‖x_j − q_x‖∞ < eps} (strict), pmi = (ψ(k) + ψ(N+1) − ψ(m_x+1) − ψ(m_y+1)) / ln 2.
      Leave-one-out identity: query = point i, reference = the other N−1 points gives exactly
      the in-sample ``ksg_pmi`` value of point i.
    convention="latentmi": latentmi's ``out_of_sample_pmi``: eps = (k+1)-th nearest among the
      reference, pmi = (ψ(k) + ψ(N) − ψ(m_x) − ψ(m_y)) / ln 2. With query == reference it
      equals the in-sample ``ksg_pmi``; with noise off it equals latentmi's function.
    noise/seed: jitter drawn in the order ref_x, ref_y, query_x, query_y.
    ties: "raise" (default): InputError for a query whose neighbour radius is 0 (it has enough
    exact copies among the reference to make it so); "allow": the textbook sum.
    """
    k = _check_k(k)
    ties = _check_ties(ties)
    if convention not in OOS_CONVENTIONS:
        raise InputError(f"unknown out-of-sample convention {convention!r}; "
                         f"expected one of {OOS_CONVENTIONS}")
    rx, ry = _check_pair(ref_x, ref_y, "ref_x", "ref_y")
    qx, qy = _check_pair(query_x, query_y, "query_x", "query_y")
    if array_namespace(rx) is not array_namespace(qx):
        raise InputError("reference and query arrays must both be numpy or both be cupy")
    if rx.shape[1] != qx.shape[1] or ry.shape[1] != qy.shape[1]:
        raise InputError(f"query feature counts ({qx.shape[1]}, {qy.shape[1]}) differ from "
                         f"reference feature counts ({rx.shape[1]}, {ry.shape[1]})")
    n = rx.shape[0]
    kth = k if convention == "insert" else k + 1
    if n < kth:
        raise InputError(f"out-of-sample KSG ({convention}) needs at least {kth} reference "
                         f"samples for k={k}, got {n}")
    rx, ry, qx, qy = add_noise([rx, ry, qx, qy], noise, seed)
    if qx.shape[0] == 0:
        return np.zeros(0, dtype=np.float64)
    eps, mx, my = knn_counts(rx, ry, qx, qy, kth=kth, backend=backend)
    if ties == "raise":
        _refuse_ties(eps, k, "queries")
    if convention == "insert":
        return pmi_from_counts(k, n + 1, mx + 1, my + 1)
    return pmi_from_counts(k, n, mx, my)
