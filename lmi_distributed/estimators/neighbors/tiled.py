"""Tiled brute-force neighbour backend ("tiled"), written once against the array namespace.

Every operation goes through ``xp`` (numpy for numpy arrays, cupy for cupy arrays), so the same
code runs on the CPU here and on a GPU unchanged. Queries are processed in tiles of T rows so
that the (T, N) distance tiles stay within ``tile_elems`` elements.

Distances are ``max_c |r_c - q_c|`` in the dtype of the inputs (float64 or float32); counts are
strict (``<``). Run in float64 this backend agrees exactly with the tree backend; run in float32
it is the reference for the float32 CuPy kernels.
"""

from __future__ import annotations

from typing import Any

__all__ = ["array_namespace", "knn_counts", "chebyshev_tile"]


def array_namespace(*arrays: Any):
    """The array module of the inputs: ``cupy`` if any input is a CuPy array, else ``numpy``."""
    for a in arrays:
        if a is not None and type(a).__module__.split(".")[0] == "cupy":
            import cupy

            return cupy
    import numpy

    return numpy


def chebyshev_tile(xp, qT, rT):
    """(T, N) Chebyshev distances between queries and references given transposed blocks.

    qT (d, T) and rT (d, N): coordinates, one row per dimension. Distance = max_c |r_c - q_c|.
    """
    d = qT.shape[0]
    out = xp.abs(rT[0][None, :] - qT[0][:, None])
    for c in range(1, d):
        out = xp.maximum(out, xp.abs(rT[c][None, :] - qT[c][:, None]))
    return out


def knn_counts(ref_x, ref_y, query_x=None, query_y=None, *, kth: int,
               tile_elems: int = 1 << 22):
    """Joint kth-neighbour radius and strict marginal counts by tiled brute force.

    ref_x (N, dx), ref_y (N, dy); query_x (M, dx), query_y (M, dy) or ``None`` for in-sample
    (each point excludes itself by index). All arrays of one namespace and one float dtype.
    Returns xp arrays ``eps`` (M,) (the ``kth`` smallest joint distance = max of the two block
    max-norms), ``nx`` and ``ny`` (M,) int64 (#{j ≠ self: block distance < eps}).
    """
    xp = array_namespace(ref_x, ref_y, query_x, query_y)
    insample = query_x is None
    if insample:
        query_x, query_y = ref_x, ref_y
    n = ref_x.shape[0]
    m = query_x.shape[0]
    rxT = xp.ascontiguousarray(ref_x.T)
    ryT = xp.ascontiguousarray(ref_y.T)
    qxT = xp.ascontiguousarray(query_x.T)
    qyT = xp.ascontiguousarray(query_y.T)
    t = max(1, min(m, tile_elems // max(n, 1)))
    eps = xp.empty((m,), dtype=ref_x.dtype)
    nx = xp.empty((m,), dtype=xp.int64)
    ny = xp.empty((m,), dtype=xp.int64)
    for s in range(0, m, t):
        e = min(m, s + t)
        dx = chebyshev_tile(xp, qxT[:, s:e], rxT)
        dy = chebyshev_tile(xp, qyT[:, s:e], ryT)
        if insample:  # exclude self by index
            rows = xp.arange(e - s)
            cols = xp.arange(s, e)
            dx[rows, cols] = xp.inf
            dy[rows, cols] = xp.inf
        dj = xp.maximum(dx, dy)
        ek = xp.partition(dj, kth - 1, axis=1)[:, kth - 1]
        eps[s:e] = ek
        nx[s:e] = xp.sum(dx < ek[:, None], axis=1)
        ny[s:e] = xp.sum(dy < ek[:, None], axis=1)
    return eps, nx, ny
