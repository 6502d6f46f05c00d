"""CuPy raw kernels vs the tiled numpy reference (same dtype): identical counts, MI to 1e-6 bits.

Skipped unless CuPy is usable (``estimators.device.cupy_usable``: it imports and runs a kernel). This file imports nothing that needs
ray, dask or zarr, so it runs on the GPU machine with ``PYTHONPATH=.``.
"""

from __future__ import annotations


import numpy as np
import pytest

pytestmark = pytest.mark.gpu

from lmi_distributed.estimators import device  # noqa: E402  (the one GPU-usable check)

if not device.cupy_usable():  # pragma: no cover - CPU machines
    pytest.skip(f"CuPy not usable: {device.why_not('cupy')}", allow_module_level=True)
import cupy as cp  # noqa: E402

from lmi_distributed.estimators.ksg import ksg_mi, ksg_pmi, oos_pmi  # noqa: E402
from lmi_distributed.estimators.neighbors import cupy_kernels as ck  # noqa: E402
from lmi_distributed.estimators.neighbors import tiled  # noqa: E402
from ksg_reference import pmi_from_counts  # noqa: E402
from lmi_distributed.estimators.permutation import (  # noqa: E402
    draw_permutations, latent_permutation_null)


def make(n, dx, dy, seed, kind):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx))
    y = 0.6 * x[:, :1] + rng.standard_normal((n, dy))
    if kind == "rounded":  # many exact ties
        x, y = np.round(x, 1), np.round(y, 1)
    elif kind == "dups":  # duplicated rows, eps == 0 for some points
        x[n // 2:] = x[: n - n // 2]
        y[n // 2:] = y[: n - n // 2]
    return x, y


def pmi_np(k, n, nx, ny):
    return pmi_from_counts(k, n, nx, ny)


CASES = [(n, dx, dy, kind) for n in (37, 300, 1100) for dx, dy in ((1, 1), (8, 8), (3, 5))
         for kind in ("gauss", "rounded", "dups")]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n,dx,dy,kind", CASES)
def test_insample_counts_match_tiled_reference(n, dx, dy, kind, dtype):
    x, y = make(n, dx, dy, n + dx, kind)
    x, y = x.astype(dtype), y.astype(dtype)
    for k in (1, 3, 7):
        eps_r, nx_r, ny_r = tiled.knn_counts(x, y, kth=k)
        eps, nx, ny = ck.knn_counts(x, y, kth=k, dtype=dtype)
        np.testing.assert_array_equal(cp.asnumpy(eps), eps_r)
        np.testing.assert_array_equal(cp.asnumpy(nx), nx_r)
        np.testing.assert_array_equal(cp.asnumpy(ny), ny_r)
        mi_gpu = float(pmi_np(k, n, cp.asnumpy(nx), cp.asnumpy(ny)).mean())
        assert abs(mi_gpu - pmi_np(k, n, nx_r, ny_r).mean()) < 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_out_of_sample_counts_match(dtype):
    x, y = make(700, 4, 4, 1, "rounded")
    qx, qy = make(333, 4, 4, 2, "rounded")
    x, y, qx, qy = (a.astype(dtype) for a in (x, y, qx, qy))
    for kth in (3, 4):
        ref = tiled.knn_counts(x, y, qx, qy, kth=kth)
        got = ck.knn_counts(x, y, qx, qy, kth=kth, dtype=dtype)
        for a, b in zip(got, ref):
            np.testing.assert_array_equal(cp.asnumpy(a), b)


def test_batched_problems_equal_one_at_a_time():
    probs = [make(500, 8, 8, s, "gauss") for s in range(5)]
    xb = np.stack([p[0] for p in probs]).astype(np.float32)
    yb = np.stack([p[1] for p in probs]).astype(np.float32)
    eps, nx, ny = ck.knn_counts_batched(xb, yb, kth=3, dtype="float32")
    pmi = cp.asnumpy(ck.ksg_pmi_batched(xb, yb, k=3, dtype="float32"))
    for b in range(5):
        e_r, nx_r, ny_r = tiled.knn_counts(xb[b], yb[b], kth=3)
        np.testing.assert_array_equal(cp.asnumpy(nx[b]), nx_r)
        np.testing.assert_array_equal(cp.asnumpy(ny[b]), ny_r)
        np.testing.assert_allclose(pmi[b], pmi_np(3, 500, nx_r, ny_r), atol=1e-9)


def test_public_api_cupy_backend_equals_cpu():
    x, y = make(800, 8, 8, 4, "rounded")
    np.testing.assert_array_equal(ksg_pmi(x, y, backend="cupy"), ksg_pmi(x, y, backend="tree"))
    assert abs(ksg_mi(cp.asarray(x), cp.asarray(y)) - ksg_mi(x, y)) < 1e-12  # auto -> cupy
    qx, qy = make(100, 8, 8, 5, "rounded")
    for conv in ("insert", "latentmi"):
        np.testing.assert_array_equal(oos_pmi(x, y, qx, qy, backend="cupy", convention=conv),
                                      oos_pmi(x, y, qx, qy, backend="tree", convention=conv))


def test_permutation_null_gpu_equals_cpu():
    x, y = make(400, 8, 8, 6, "gauss")
    a = latent_permutation_null(x, y, n_permutations=20, seed=9, backend="cupy")
    b = latent_permutation_null(x, y, n_permutations=20, seed=9, backend="tree")
    np.testing.assert_allclose(a, b, atol=1e-9)
    perms = draw_permutations(400, 20, 9)
    c = ck.permutation_null(x.astype(np.float32), y.astype(np.float32), perms, k=3,
                            dtype="float32", chunk=7)
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    for i in (0, 6, 7, 19):
        _, nx, ny = tiled.knn_counts(x32, y32[perms[i]], kth=3)
        assert abs(c[i] - pmi_np(3, 400, nx, ny).mean()) < 1e-6
