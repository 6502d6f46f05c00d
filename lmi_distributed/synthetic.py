"""Benchmark generators with known mutual information (pure numpy; sklearn for the digits).

All truths are in bits.
"""
from __future__ import annotations

import math

import numpy as np

_VAR_X, _VAR_Y = 6.0, 3.5          # paper Alg. 4 as coded in the paper's notebooks


def gaussian_rho(mi_bits: float, k: int) -> float:
    """Covariance entry rho of Alg. 4 giving ``mi_bits`` over ``k`` dependent dims:
    ``rho = sqrt(21) * sqrt(1 - 2**(-2 b / k))``."""
    return math.sqrt(_VAR_X * _VAR_Y) * math.sqrt(1.0 - 2.0 ** (-2.0 * mi_bits / k))


def gaussian_benchmark(n: int, d: int, k: int, mi_bits: float, seed: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Paper Algorithm 4: X, Y of shape (n, d) with low-dimensional dependence.

    Columns 0..k-1: k independent bivariate Gaussians (X_i, Y_i) ~ N(0, [[6, rho], [rho, 3.5]]),
    ``rho = sqrt(21) * sqrt(1 - 2**(-2 mi_bits / k))``. Of the other d - k columns the last
    (d - k)//2 are independent N(0, 1) nuisance columns (separately for X and Y) and the
    rest are copies of randomly chosen dependent columns (column j of X and of Y copy the same
    dependent index). Returns (X, Y, truth) with truth = -(k/2) log2(1 - rho^2/21) = mi_bits.
    """
    if not (1 <= k <= d):
        raise ValueError(f"need 1 <= k <= d, got k={k}, d={d}")
    if mi_bits < 0:
        raise ValueError(f"mi_bits must be >= 0, got {mi_bits}")
    rng = np.random.default_rng(seed)
    rho = gaussian_rho(mi_bits, k)
    cov = np.array([[_VAR_X, rho], [rho, _VAR_Y]])
    chol = np.linalg.cholesky(cov)
    xy = rng.standard_normal((n, k, 2)) @ chol.T          # (n, k, 2)
    X = np.empty((n, d))
    Y = np.empty((n, d))
    X[:, :k], Y[:, :k] = xy[..., 0], xy[..., 1]
    n_nuis = (d - k) // 2
    n_copy = d - k - n_nuis
    picks = rng.integers(0, k, size=n_copy)
    X[:, k:k + n_copy] = X[:, picks]
    Y[:, k:k + n_copy] = Y[:, picks]
    X[:, k + n_copy:] = rng.standard_normal((n, n_nuis))
    Y[:, k + n_copy:] = rng.standard_normal((n, n_nuis))
    truth = -(k / 2.0) * math.log2(1.0 - rho * rho / (_VAR_X * _VAR_Y))
    return X, Y, float(truth) + 0.0       # no negative zero at 0 bits


def bernoulli_pair_pmf(rho: float, p: float = 0.5) -> np.ndarray:
    """2x2 joint pmf of (L_x, L_y), both Bernoulli(p), with correlation rho; [i, j] = P(L_x=i, L_y=j)."""
    p11 = p * p + rho * p * (1 - p)
    pmf = np.array([[1 - 2 * p + p11, p - p11], [p - p11, p11]])
    if (pmf < -1e-12).any():
        raise ValueError(f"no bivariate Bernoulli with p={p} and correlation {rho}")
    return np.clip(pmf, 0.0, 1.0)


def discrete_mi_bits(pmf: np.ndarray) -> float:
    """Mutual information in bits of a 2-D joint pmf."""
    px = pmf.sum(1, keepdims=True)
    py = pmf.sum(0, keepdims=True)
    nz = pmf > 0
    return float(np.sum(pmf[nz] * np.log2(pmf[nz] / (px @ py)[nz])))


def digits_label_benchmark(n: int, rho: float, seed: int, digits: tuple[int, int] = (0, 1),
                           p: float = 0.5) -> tuple[np.ndarray, np.ndarray, float]:
    """Paper 3.2 resampling benchmark on sklearn's bundled 8x8 digits (64 dims).

    Draw n labels (L_x, L_y) from a bivariate Bernoulli with P(L=1) = p and correlation
    ``rho``; replace label 0 by a random image of ``digits[0]`` and label 1 by one of
    ``digits[1]``, independently for X and Y. Images of a class are drawn without
    replacement while the class has enough images (about 180 per digit), otherwise WITH
    replacement (then images repeat). Returns (X, Y, truth): X, Y (n, 64) float32 pixel
    values 0..16; truth = I(L_x; L_y) in bits from the 2x2 pmf (= I(X; Y), as each image
    identifies its digit).
    """
    from sklearn.datasets import load_digits

    if len(digits) != 2 or digits[0] == digits[1]:
        raise ValueError(f"digits must be two different digits, got {digits}")
    pmf = bernoulli_pair_pmf(rho, p)
    rng = np.random.default_rng(seed)
    data = load_digits()
    pools = [data.data[data.target == dg].astype(np.float32) for dg in digits]
    cells = rng.choice(4, size=n, p=pmf.ravel())
    lx, ly = cells // 2, cells % 2

    def resample(labels: np.ndarray) -> np.ndarray:
        out = np.empty((n, 64), np.float32)
        for c in (0, 1):
            rows = np.flatnonzero(labels == c)
            pool = pools[c]
            pick = rng.choice(len(pool), size=len(rows), replace=len(rows) > len(pool))
            out[rows] = pool[pick]
        return out

    return resample(lx), resample(ly), discrete_mi_bits(pmf)


def markov_chain_truth(t: int, k: int, rho: float) -> np.ndarray:
    """(t, t) pairwise MI in bits of the chain: -(k/2) log2(1 - rho^(2|s-u|)); diagonal inf."""
    lag = np.abs(np.arange(t)[:, None] - np.arange(t)[None, :])
    with np.errstate(divide="ignore"):
        truth = -(k / 2.0) * np.log2(1.0 - float(rho) ** (2.0 * lag))
    np.fill_diagonal(truth, np.inf)
    return truth + 0.0       # no negative zeros


def gaussian_markov_chain(n: int, t: int, k: int, d: int, rho: float, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """T variables from a k-dim Gaussian AR(1) chain with known pairwise MI.

    Latent z_0 ~ N(0, I_k), z_s = rho z_{s-1} + sqrt(1 - rho^2) eps_s (stationary, unit
    variance, Corr(z_s, z_u) = rho^|s-u| per dim). Variable s is (n, d): columns 0..k-1 are
    z_s, then (as Alg. 4) d-k-(d-k)//2 copies of random latent columns and (d-k)//2 N(0, 1)
    nuisance columns. Returns (variables, truth) with truth (t, t) in bits:
    -(k/2) log2(1 - rho^(2|s-u|)), diagonal inf.
    """
    if not (1 <= k <= d):
        raise ValueError(f"need 1 <= k <= d, got k={k}, d={d}")
    if not (-1.0 < rho < 1.0):
        raise ValueError(f"need |rho| < 1, got {rho}")
    rng = np.random.default_rng(seed)
    n_nuis = (d - k) // 2
    n_copy = d - k - n_nuis
    z = rng.standard_normal((n, k))
    out = []
    for s in range(t):
        if s > 0:
            z = rho * z + math.sqrt(1.0 - rho * rho) * rng.standard_normal((n, k))
        v = np.empty((n, d))
        v[:, :k] = z
        v[:, k:k + n_copy] = z[:, rng.integers(0, k, size=n_copy)]
        v[:, k + n_copy:] = rng.standard_normal((n, n_nuis))
        out.append(v)
    return out, markov_chain_truth(t, k, rho)
