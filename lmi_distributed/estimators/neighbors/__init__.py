"""Neighbour backends for KSG: exact joint k-th neighbour radii and strict marginal counts.

Backends (all give identical counts for the same inputs, computed in float64):

- ``"tree"``: CPU, exact; numba bitset/sweep kernels when numba is installed, else scipy
  ``cKDTree`` (see ``tree.py``).
- ``"tiled"``: brute force in query tiles, written once against the array namespace: numpy
  arrays run on the CPU, CuPy arrays on the GPU (see ``tiled.py``).
- ``"cupy"``: CuPy raw CUDA kernels (see ``cupy_kernels.py``); needs cupy and a CUDA device
  (``device.cupy_usable()``, the one GPU check).
- ``"auto"``: ``"cupy"`` when the inputs are CuPy arrays and the kernels can run, ``"tiled"``
  for CuPy arrays when they cannot, else ``"tree"``.

``knn_counts`` returns numpy arrays whatever the backend.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from lmi_distributed.estimators.neighbors.tiled import array_namespace

__all__ = ["BACKENDS", "resolve_backend", "knn_counts", "array_namespace", "cupy_available"]

BACKENDS = ("auto", "tree", "tiled", "cupy")


def cupy_available() -> bool:
    """Alias of :func:`lmi_distributed.estimators.device.cupy_usable` (kept for callers that
    import it from here); follows that function, monkeypatched or not."""
    from lmi_distributed.estimators import device

    return device.cupy_usable()


def resolve_backend(backend: str, *arrays: Any) -> str:
    """The concrete backend ("tree", "tiled" or "cupy") that ``backend`` means for ``arrays``."""
    if backend not in BACKENDS:
        from lmi_distributed.errors import InputError

        raise InputError(f"unknown KSG backend {backend!r}; expected one of {BACKENDS}")
    from lmi_distributed.estimators import device

    if backend == "cupy" and not device.cupy_usable():
        from lmi_distributed.errors import InputError

        raise InputError("backend='cupy' needs cupy and a usable CUDA device "
                         f"({device.why_not('cupy') or 'cupy is not usable'}); use 'tree' or 'tiled'")
    if backend != "auto":
        return backend
    xp = array_namespace(*arrays)
    if xp.__name__ == "cupy":
        return "cupy" if device.cupy_usable() else "tiled"
    return "tree"


def _to_numpy(a):
    if a is None:
        return None
    if type(a).__module__.split(".")[0] == "cupy":
        return a.get()
    return np.asarray(a)


def knn_counts(ref_x, ref_y, query_x=None, query_y=None, *, kth: int, backend: str = "auto"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint ``kth``-neighbour radius and strict marginal counts, in float64, as numpy arrays.

    ref_x (N, dx), ref_y (N, dy); query_x (M, dx), query_y (M, dy), or ``None`` for in-sample
    (queries = reference; each point excludes itself by index). Returns ``eps`` (M,) float64:
    the ``kth`` smallest joint Chebyshev distance max(‖Δx‖∞, ‖Δy‖∞); ``nx``, ``ny`` (M,) int64:
    #{j ≠ self: ‖x_j − q_x‖∞ < eps} (strict), likewise for y.
    """
    name = resolve_backend(backend, ref_x, ref_y, query_x, query_y)
    if name == "tree":
        from lmi_distributed.estimators.neighbors import tree

        return tree.knn_counts(_to_numpy(ref_x), _to_numpy(ref_y), _to_numpy(query_x),
                               _to_numpy(query_y), kth=kth)
    if name == "tiled":
        from lmi_distributed.estimators.neighbors import tiled

        xp = array_namespace(ref_x, ref_y, query_x, query_y)
        cast = (lambda a: None if a is None else xp.asarray(a, dtype=xp.float64))
        eps, nx, ny = tiled.knn_counts(cast(ref_x), cast(ref_y), cast(query_x), cast(query_y),
                                       kth=kth)
        return (_to_numpy(eps).astype(np.float64), _to_numpy(nx).astype(np.int64),
                _to_numpy(ny).astype(np.int64))
    from lmi_distributed.estimators.neighbors import cupy_kernels

    eps, nx, ny = cupy_kernels.knn_counts(ref_x, ref_y, query_x, query_y, kth=kth,
                                          dtype="float64")
    return (_to_numpy(eps).astype(np.float64), _to_numpy(nx).astype(np.int64),
            _to_numpy(ny).astype(np.int64))
