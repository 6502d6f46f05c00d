"""Benchmark generators with known mutual information (pure numpy; sklearn for the digits).

All truths are in bits.
"""
from __future__ import annotations

import math

import numpy as np

_VAR_X, _VAR_Y = 6.0, 3.5          # paper Alg. 4 as coded in the paper's notebooks


def pair_correlation(mi_bits: float, k: int) -> float:
    """The correlation r of each of ``k`` independent bivariate Gaussian pairs that together carry
    ``mi_bits``: -(k/2) log2(1 - r^2) = mi_bits, r = sqrt(1 - 2**(-2 b / k))."""
    return math.sqrt(1.0 - 2.0 ** (-2.0 * mi_bits / k))


def gaussian_rho(mi_bits: float, k: int) -> float:
    """Covariance entry rho of Alg. 4 giving ``mi_bits`` over ``k`` dependent dims:
    ``rho = sqrt(21) * sqrt(1 - 2**(-2 b / k))``."""
    return math.sqrt(_VAR_X * _VAR_Y) * pair_correlation(mi_bits, k)


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


# --- accuracy suite (issue 11): cases beyond the paper's Gaussian, all with known truth in bits ---

#: per-coordinate smooth, strictly increasing (hence invertible) maps used by :func:`warp_columns`
WARPS = ("sinh", "cubic", "tanh_linear", "exp", "asinh")


def _warp(kind: str, v: np.ndarray) -> np.ndarray:
    if kind == "sinh":
        return np.sinh(v)
    if kind == "cubic":
        return v + v ** 3
    if kind == "tanh_linear":
        return np.tanh(2.0 * v) + 0.1 * v
    if kind == "exp":
        return np.exp(v)
    if kind == "asinh":
        return np.arcsinh(4.0 * v)
    raise ValueError(f"unknown warp {kind!r}; expected one of {WARPS}")


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    """A Haar-random orthogonal (d, d) matrix (QR of a Gaussian matrix, signs fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diag(r))


def warp_columns(a: np.ndarray, rng: np.random.Generator, kinds: tuple[str, ...] = WARPS) -> np.ndarray:
    """Each column of ``a`` (n, d) z-scored, then mapped by a smooth strictly increasing function
    drawn at random from ``kinds`` (:data:`WARPS`). Returns (n, d) float64. Every step is an
    invertible map of each coordinate, so the MI of ``a`` with anything is unchanged."""
    sd = a.std(axis=0)
    z = (a - a.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    picks = rng.integers(0, len(kinds), size=a.shape[1])
    out = np.empty_like(z)
    for j, kind in enumerate(kinds):
        cols = picks == j
        if cols.any():
            out[:, cols] = _warp(kind, z[:, cols])
    return out


def rotated_warped_gaussian(n: int, d: int, k: int, mi_bits: float, seed: int, warp: bool = True
                            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Paper Algorithm 4 (:func:`gaussian_benchmark`), then X and Y each multiplied by its own
    Haar-random rotation (d, d) and, with ``warp``, each column warped by a random smooth
    increasing map (:func:`warp_columns`). Rotations and coordinate-wise bijections leave the MI
    unchanged. Returns (X, Y, truth): X, Y (n, d) float64; truth = ``mi_bits`` (bits)."""
    X, Y, truth = gaussian_benchmark(n, d, k, mi_bits, seed)
    rng = np.random.default_rng([seed, 11])
    X, Y = X @ random_rotation(d, rng), Y @ random_rotation(d, rng)
    if warp:
        X, Y = warp_columns(X, rng), warp_columns(Y, rng)
    return X, Y, truth


def low_variance_dependence(n: int, d: int, n_dir: int, mi_bits: float, seed: int,
                            var_fraction: float = 0.01, warp: bool = True
                            ) -> tuple[np.ndarray, np.ndarray, float]:
    """Dependence confined to ``n_dir`` directions that carry ``var_fraction`` of the variance.

    Per side, d coordinates before rotation: ``n_dir`` dependent ones, (X_i, Y_i) jointly Gaussian
    with correlation r = sqrt(1 - 2**(-2 mi_bits / n_dir)) (independent across i), and d - n_dir
    independent Gaussian nuisance coordinates with a power-law spectrum (variance of the j-th
    proportional to 1/(j+1), like the PCA spectrum of an embedding). The dependent coordinates
    are scaled so they carry ``var_fraction`` of the total variance (issue 11: < 2%). Then a
    Haar-random rotation per side and, with ``warp``, a random smooth increasing map per column
    (:func:`warp_columns`). Returns (X, Y, truth): X, Y (n, d) float64, truth =
    -(n_dir/2) log2(1 - r^2) = ``mi_bits`` (bits)."""
    if not (1 <= n_dir < d):
        raise ValueError(f"need 1 <= n_dir < d, got n_dir={n_dir}, d={d}")
    if not (0 < var_fraction < 1) or mi_bits < 0:
        raise ValueError(f"need 0 < var_fraction < 1 and mi_bits >= 0, got {var_fraction}, {mi_bits}")
    rng = np.random.default_rng([seed, 12])
    r = pair_correlation(mi_bits, n_dir)
    nuis_var = 1.0 / np.arange(1, d - n_dir + 1)
    dep_sd = math.sqrt(var_fraction * nuis_var.sum() / ((1.0 - var_fraction) * n_dir))
    u = rng.standard_normal((n, n_dir))
    w = r * u + math.sqrt(1.0 - r * r) * rng.standard_normal((n, n_dir))
    out = []
    for dep in (u, w):
        a = np.empty((n, d))
        a[:, :n_dir] = dep * dep_sd
        a[:, n_dir:] = rng.standard_normal((n, d - n_dir)) * np.sqrt(nuis_var)
        a = a @ random_rotation(d, rng)
        out.append(warp_columns(a, rng) if warp else a)
    truth = -(n_dir / 2.0) * math.log2(1.0 - r * r)
    return out[0], out[1], float(truth) + 0.0


def sparse_columns_dependence(n: int, d: int, n_dep: int, mi_bits: float, seed: int, warp: bool = True
                              ) -> tuple[np.ndarray, np.ndarray, float]:
    """Dependence confined to ``n_dep`` of the ``d`` coordinates of each side (a few genes among many).

    X, Y (n, d): independent standard Gaussian columns, except ``n_dep`` pairs (X_a, Y_b) at random
    column positions (drawn per side) with correlation r = sqrt(1 - 2**(-2 mi_bits / n_dep)),
    independent across pairs; no rotation, every column of the same variance. With ``warp``, a random
    smooth increasing map per column (:func:`warp_columns`). Like BMI's sparse multinormal tasks,
    at any d. Returns (X, Y, truth): X, Y (n, d) float64, truth = -(n_dep/2) log2(1 - r^2) =
    ``mi_bits`` (bits)."""
    if not (1 <= n_dep <= d):
        raise ValueError(f"need 1 <= n_dep <= d, got n_dep={n_dep}, d={d}")
    if mi_bits < 0:
        raise ValueError(f"need mi_bits >= 0, got {mi_bits}")
    rng = np.random.default_rng([seed, 14])
    r = pair_correlation(mi_bits, n_dep)
    X = rng.standard_normal((n, d))
    Y = rng.standard_normal((n, d))
    cx = rng.choice(d, size=n_dep, replace=False)
    cy = rng.choice(d, size=n_dep, replace=False)
    Y[:, cy] = r * X[:, cx] + math.sqrt(1.0 - r * r) * Y[:, cy]
    if warp:
        X, Y = warp_columns(X, rng), warp_columns(Y, rng)
    truth = -(n_dep / 2.0) * math.log2(1.0 - r * r)
    return X, Y, float(truth) + 0.0


def spiral(a: np.ndarray, plane: tuple[int, int] = (0, 1), speed: float = 1.0) -> np.ndarray:
    """BMI's spiral (its ``transform_spiral_task``, normalised speed): each row x (of ``a``, (n, d))
    turned in the coordinate plane ``plane`` by the angle ``speed * ||x||^2 / d`` (radians). The turn
    keeps the norm, so the map is invertible (turn back by the same angle) and MI is unchanged.
    Returns (n, d) float64."""
    a = np.array(a, dtype=np.float64)
    i, j = plane
    theta = speed * np.einsum("ij,ij->i", a, a) / a.shape[1]
    c, s = np.cos(theta), np.sin(theta)
    ai, aj = a[:, i].copy(), a[:, j].copy()
    a[:, i], a[:, j] = c * ai - s * aj, s * ai + c * aj
    return a


def independent_structured(n: int, d: int, kind: str, seed: int, rank: int = 3
                           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Independent X and Y (truth 0 bits) with structure that can fool an estimator.

    ``kind="low_rank"``: each side is U W + 0.1 noise, U (n, rank) standard normal, W (rank, d)
    standard normal (a rank-``rank`` variable with strongly correlated columns);
    ``kind="heavy_tailed"``: each side is Student-t (2.5 degrees of freedom) columns times a random
    rotation (heavy tails in every direction). X and Y are drawn independently.
    Returns (X, Y, 0.0): X, Y (n, d) float64."""
    rng = np.random.default_rng([seed, 13])
    out = []
    for _ in range(2):
        if kind == "low_rank":
            a = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d)) \
                + 0.1 * rng.standard_normal((n, d))
        elif kind == "heavy_tailed":
            a = rng.standard_t(2.5, size=(n, d)) @ random_rotation(d, rng)
        else:
            raise ValueError(f"unknown kind {kind!r}; expected 'low_rank' or 'heavy_tailed'")
        out.append(a)
    return out[0], out[1], 0.0
