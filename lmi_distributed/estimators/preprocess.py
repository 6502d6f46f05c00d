"""Column standardisation and the seeded train/test split (as in latentmi)."""
from __future__ import annotations

import numpy as np


def _pow2_column_scale(a64: np.ndarray) -> np.ndarray:
    """Scale every column of the float64 array ``a64`` (N, d) by a power of two so that its
    max |value| lies in [0.5, 1) (all-zero columns are left as they are).

    Multiplying by a power of two is exact in binary floating point (away from overflow and
    subnormals), and every later step of the z-score (mean, centring, squares, sqrt, division)
    commutes exactly with it, so the z-scores are bit-identical to the unscaled computation on
    ordinary data -- while data at 1e-200 or 1e200 no longer under- or overflow when squared.
    ``np.ldexp`` applies the exponent directly, so even 2**1074 (subnormal inputs) is no problem.
    """
    peak = np.max(np.abs(a64), axis=0) if a64.shape[0] else np.zeros(a64.shape[1])
    _, exponent = np.frexp(peak)          # peak = f * 2**exponent, f in [0.5, 1); 0 -> exponent 0
    return np.ldexp(a64, -exponent)


def zscore_clip(a: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """Z-score every column of ``a`` and clip to ``[-clip, clip]``.

    ``a``: (N, d) real array (float of any width, int or bool). Returns (N, d) float32. The
    mean and the population standard deviation (``ddof=0``, numpy's default, as latentmi) are
    computed in float64 after a per-column power-of-two rescaling (:func:`_pow2_column_scale`),
    so the result does not depend on the scale of the input (1e-200 or 1e200 give the
    z-scores of 1). Constant columns (std 0) become 0, as latentmi's ``nan_to_num`` makes them.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"zscore_clip expects a 2-D array (N, d), got shape {a.shape}")
    a64 = _pow2_column_scale(a.astype(np.float64, copy=False))
    mean = a64.mean(axis=0)
    centred = a64 - mean
    # numpy's std, written out (same operations in the same order): sqrt(sum(c*c) / N)
    std = np.sqrt(np.add.reduce(centred * centred, axis=0) / a64.shape[0]) if a64.shape[0] \
        else np.zeros(a64.shape[1])
    safe = np.where(std > 0, std, 1.0)
    z = np.where(std > 0, centred / safe, 0.0)
    np.clip(z, -clip, clip, out=z)
    return z.astype(np.float32)


def split_indices(n: int, seed: int, train_fraction: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of ``range(n)`` into (train_idx, test_idx).

    Both int64, sorted, disjoint, union ``arange(n)``; ``len(train_idx) == int(n * train_fraction)``.
    ``seed`` seeds ``numpy.random.default_rng`` directly (the estimators pass a seed derived
    from the pair seed with purpose ``"split"``).
    """
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < train_fraction < 1.0:
        raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction}")
    n_train = int(n * train_fraction)
    perm = np.random.default_rng(int(seed)).permutation(n).astype(np.int64)
    return np.sort(perm[:n_train]), np.sort(perm[n_train:])
