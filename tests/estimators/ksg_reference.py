"""The tests' one reference KSG: plain O(N^2) Chebyshev distances, strict counts, in bits.

Written straight from Kraskov et al. (2004), algorithm 1, independently of the package's
neighbour backends, so every backend and the API are checked against the same formula:

    eps_i = k-th smallest max(|x_j - x_i|_inf, |y_j - y_i|_inf) over j != i
    n_x,i = #{j != i : |x_j - x_i|_inf < eps_i}   (strict), n_y,i likewise
    pmi_i = (psi(k) + psi(N) - psi(n_x,i + 1) - psi(n_y,i + 1)) / ln 2
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import digamma


def brute_counts(rx, ry, qx=None, qy=None, kth: int = 3):
    """(eps, n_x, n_y) of each query against the reference (in-sample when ``qx`` is None:
    the point itself is excluded by index). Arrays (M,)."""
    rx, ry = np.asarray(rx, np.float64), np.asarray(ry, np.float64)
    insample = qx is None
    if insample:
        qx, qy = rx, ry
    dx = np.abs(rx[None] - np.asarray(qx, np.float64)[:, None]).max(-1)
    dy = np.abs(ry[None] - np.asarray(qy, np.float64)[:, None]).max(-1)
    if insample:
        np.fill_diagonal(dx, np.inf)
        np.fill_diagonal(dy, np.inf)
    eps = np.sort(np.maximum(dx, dy), 1)[:, kth - 1]
    return eps, (dx < eps[:, None]).sum(1), (dy < eps[:, None]).sum(1)


def pmi_from_counts(k: int, n: int, nx, ny) -> np.ndarray:
    """KSG-1 pointwise terms in bits from strict neighbour counts (not +1-shifted)."""
    nx, ny = np.asarray(nx, np.float64), np.asarray(ny, np.float64)
    return (digamma(k) + digamma(n) - digamma(nx + 1.0) - digamma(ny + 1.0)) / math.log(2)


def reference_pmi(x, y, k: int = 3) -> np.ndarray:
    """In-sample KSG-1 pMI (N,) in bits."""
    _, nx, ny = brute_counts(x, y, kth=k)
    return pmi_from_counts(k, len(np.asarray(x)), nx, ny)
