"""Attribution benchmark (paper A.2.3) with a known answer: which dimensions carry the MI.

X has ``d_x`` dims, of which ``k`` (at seeded random positions) share a latent with Y; the
other dims are independent N(0, 1) noise of the same variance, and one is constant (it must
come out NaN, not "well explained"). Y has ``k`` informative dims (its first k) and
``d_y - k`` noise dims. Per informative pair of dims, with s ~ N(0, 1) shared and e, e'
independent N(0, 1):

    x_j = sqrt(rho) s + sqrt(1 - rho) e,    y_i = sqrt(rho) s + sqrt(1 - rho) e'

so Corr(x_j, y_i) = rho and the true MI is ``-(k/2) log2(1 - rho^2)`` bits. The best possible
R^2 of x_j from Y is rho^2; noise dims have R^2 0 in expectation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["AttributionBenchmark", "attribution_benchmark"]


@dataclass
class AttributionBenchmark:
    """Data and answer of :func:`attribution_benchmark`."""

    X: np.ndarray               # (n, d_x) float64
    Y: np.ndarray               # (n, d_y) float64
    x_informative: np.ndarray   # (k,) int64, sorted: X dims that share a latent with Y
    y_informative: np.ndarray   # (k,) int64: Y dims that share a latent with X (0..k-1)
    x_constant: int             # the constant X dim (R^2 must be NaN)
    mi_bits: float              # true I(X; Y) in bits
    max_r2: float               # best possible R^2 of an informative dim (rho^2)


def attribution_benchmark(n: int = 2000, d_x: int = 24, d_y: int = 8, k: int = 4, rho: float = 0.8,
                          seed: int = 0) -> AttributionBenchmark:
    """X (n, d_x), Y (n, d_y) with k informative dims each (see the module docstring).

    ``rho``: correlation of each informative (x_j, y_i) pair, in (0, 1). Needs
    ``1 <= k <= d_x - 1`` (one X dim is the constant one) and ``k <= d_y``.
    """
    if not (1 <= k <= d_x - 1 and k <= d_y):
        raise ValueError(f"need 1 <= k <= d_x - 1 and k <= d_y, got k={k}, d_x={d_x}, d_y={d_y}")
    if not (0.0 < rho < 1.0):
        raise ValueError(f"need 0 < rho < 1, got {rho}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(d_x)
    x_inf, x_const = np.sort(perm[:k]).astype(np.int64), int(perm[k])
    s = rng.standard_normal((n, k))
    a, b = math.sqrt(rho), math.sqrt(1.0 - rho)
    X = rng.standard_normal((n, d_x))
    X[:, x_inf] = a * s + b * X[:, x_inf]
    X[:, x_const] = 1.0
    Y = rng.standard_normal((n, d_y))
    Y[:, :k] = a * s + b * Y[:, :k]
    return AttributionBenchmark(X, Y, x_inf, np.arange(k, dtype=np.int64), x_const,
                                -(k / 2.0) * math.log2(1.0 - rho * rho), rho * rho)
