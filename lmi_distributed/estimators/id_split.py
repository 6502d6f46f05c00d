"""Held-out-ids split: no id (e.g. a protein) sits in both the training and the held-out half.

For join pairings where one id appears in many rows (a kinase with dozens of annotated
targets), a random row split puts the same protein in both halves: the encoders have seen it,
so the held-out half is not out-of-sample for it. The paper (section 4.1) instead holds out a
set of *proteins*: rows whose ids are all held out form the held-out half, rows with no held-out
id form the training half, and rows that mix the two are used by neither.

The ids of both sides share one namespace (a protein that is a kinase in one row and a target in
another is one id). A fraction ``h`` of the distinct ids is held out, with
``h = 1 / (1 + sqrt(t / (1 - t)))`` for ``train_fraction = t``, so that for ids spread evenly
over rows the training and held-out halves keep the ratio t : (1 - t) (h = 0.5 at t = 0.5; then
about a quarter of the rows land in each half and half of the rows are mixed and unused).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["held_out_id_fraction", "id_split_indices"]


def held_out_id_fraction(train_fraction: float) -> float:
    """Fraction of distinct ids held out so that train : held-out rows ~ t : (1 - t)."""
    t = float(train_fraction)
    return 1.0 / (1.0 + math.sqrt(t / (1.0 - t)))


def id_split_indices(x_ids: Any, y_ids: Any, seed: int, train_fraction: float = 0.5
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Seeded held-out-ids split of N joint rows into (train_idx, test_idx).

    ``x_ids``, ``y_ids``: (N,) ids of each row's x and y (any hashable values, compared as
    strings). ``seed`` seeds ``numpy.random.default_rng``; the distinct ids, sorted, are permuted
    and the first ``round(h * n_ids)`` are held out (``held_out_id_fraction``). Returns two sorted
    int64 arrays, disjoint; rows with one held-out and one training id are in neither.
    """
    xs = np.asarray(x_ids).astype(str)
    ys = np.asarray(y_ids).astype(str)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"x_ids and y_ids must be 1-D of one length, got {xs.shape} and {ys.shape}")
    uniq = np.unique(np.concatenate([xs, ys]))
    n_out = int(round(held_out_id_fraction(train_fraction) * uniq.size))
    perm = np.random.default_rng(int(seed)).permutation(uniq.size)
    held = np.zeros(uniq.size, dtype=bool)
    held[perm[:n_out]] = True
    hx = held[np.searchsorted(uniq, xs)]
    hy = held[np.searchsorted(uniq, ys)]
    train = np.flatnonzero(~hx & ~hy).astype(np.int64)
    test = np.flatnonzero(hx & hy).astype(np.int64)
    return train, test
