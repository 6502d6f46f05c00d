"""Column standardisation and the seeded train/test split (as in latentmi)."""
from __future__ import annotations

import numpy as np


def zscore_clip(a: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """Z-score every column of ``a`` and clip to ``[-clip, clip]``.

    ``a``: (N, d) array. Returns (N, d) float32. The mean and the population standard
    deviation (``ddof=0``, numpy's default, as latentmi) are computed in float64.
    Constant columns (std 0) become 0, as latentmi's ``nan_to_num`` makes them.
    """
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"zscore_clip expects a 2-D array (N, d), got shape {a.shape}")
    a64 = a.astype(np.float64, copy=False)
    mean = a64.mean(axis=0)
    std = a64.std(axis=0)
    centred = a64 - mean
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
