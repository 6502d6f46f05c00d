"""Neighbour backends give identical eps and integer counts, including ties and duplicates."""

from __future__ import annotations

import numpy as np
import pytest

from lmi_distributed.errors import InputError
from lmi_distributed.estimators.neighbors import knn_counts, resolve_backend
from lmi_distributed.estimators.neighbors import tiled, tree
from ksg_reference import brute_counts


def brute(rx, ry, qx=None, qy=None, kth=3):
    return brute_counts(rx, ry, qx, qy, kth=kth)


def datasets():
    rng = np.random.default_rng(123)
    out = []
    x = rng.standard_normal((400, 3))
    out.append(("gauss", x, x[:, :2] + 0.5 * rng.standard_normal((400, 2))))
    x = np.round(rng.standard_normal((400, 2)), 1)  # many exact ties
    out.append(("rounded", x, np.round(x[:, :1] + rng.standard_normal((400, 1)), 1)))
    x = rng.integers(0, 3, size=(300, 2)).astype(float)  # heavy duplicates, eps == 0 often
    out.append(("discrete", x, rng.integers(0, 2, size=(300, 1)).astype(float)))
    x = rng.standard_normal((250, 8))
    out.append(("8+8", x, 0.7 * x + 0.5 * rng.standard_normal((250, 8))))
    xd = rng.standard_normal((60, 2))
    out.append(("dups", np.repeat(xd, 5, axis=0), np.repeat(rng.standard_normal((60, 2)), 5, 0)))
    return out


IMPLS = [("tree", i) for i in tree.available_impls()] + [("tiled", None)]


@pytest.mark.parametrize("name,x,y", datasets(), ids=lambda v: v if isinstance(v, str) else "")
@pytest.mark.parametrize("kth", [1, 3, 6])
def test_insample_backends_identical(name, x, y, kth):
    ref = brute(x, y, kth=kth)
    for backend, impl in IMPLS:
        if backend == "tree":
            got = tree.knn_counts(x, y, kth=kth, impl=impl)
        else:
            got = tiled.knn_counts(x, y, kth=kth, tile_elems=7 * x.shape[0])  # several tiles
        np.testing.assert_array_equal(got[0], ref[0], err_msg=f"{backend}/{impl} eps")
        np.testing.assert_array_equal(got[1], ref[1], err_msg=f"{backend}/{impl} nx")
        np.testing.assert_array_equal(got[2], ref[2], err_msg=f"{backend}/{impl} ny")
        assert got[1].dtype.kind == "i" and got[2].dtype.kind == "i"


@pytest.mark.parametrize("name,x,y", datasets(), ids=lambda v: v if isinstance(v, str) else "")
def test_out_of_sample_backends_identical(name, x, y):
    rng = np.random.default_rng(5)
    pick = rng.choice(len(x), 50, replace=False)
    qx = x[pick] + (rng.random((50, x.shape[1])) < 0.5) * np.round(rng.standard_normal((50, x.shape[1])), 1)
    qy = y[pick]
    for kth in (1, 4):
        ref = brute(x, y, qx, qy, kth=kth)
        for backend, impl in IMPLS:
            if backend == "tree":
                got = tree.knn_counts(x, y, qx, qy, kth=kth, impl=impl)
            else:
                got = tiled.knn_counts(x, y, qx, qy, kth=kth, tile_elems=3 * x.shape[0])
            for a, b in zip(got, ref):
                np.testing.assert_array_equal(a, b, err_msg=f"{backend}/{impl}")


def test_tiled_float32_is_computed_in_float32():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 2)).astype(np.float32)
    y = rng.standard_normal((200, 2)).astype(np.float32)
    eps, nx, ny = tiled.knn_counts(x, y, kth=3)
    assert eps.dtype == np.float32
    d = np.abs(x[None] - x[:, None]).max(-1)  # float32 arithmetic
    np.fill_diagonal(d, np.inf)
    dy = np.abs(y[None] - y[:, None]).max(-1)
    np.fill_diagonal(dy, np.inf)
    e = np.sort(np.maximum(d, dy), 1)[:, 2]
    np.testing.assert_array_equal(eps, e)
    np.testing.assert_array_equal(nx, (d < e[:, None]).sum(1))


def test_dispatch_and_auto():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((100, 2)), rng.standard_normal((100, 2))
    assert resolve_backend("auto", x, y) == "tree"
    a = knn_counts(x, y, kth=3, backend="tree")
    b = knn_counts(x, y, kth=3, backend="tiled")
    for u, v in zip(a, b):
        np.testing.assert_array_equal(u, v)
    assert a[0].dtype == np.float64 and a[1].dtype == np.int64
    with pytest.raises(InputError):
        resolve_backend("gpu", x)


@pytest.mark.skipif(not tree.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("table_bytes", [256, 4096, 1 << 24])
def test_bitset_prefix_granularity_does_not_change_counts(monkeypatch, table_bytes):
    # small table budgets force coarse prefix rows (many single-bit fixes per range)
    rng = np.random.default_rng(77)
    x = np.round(rng.standard_normal((700, 8)), 1)
    y = np.round(0.7 * x + 0.5 * rng.standard_normal((700, 8)), 1)
    ref = tiled.knn_counts(x, y, kth=3)
    monkeypatch.setattr(tree, "_TABLE_BYTES", table_bytes)
    got = tree.knn_counts(x, y, kth=3, impl="bitset")
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)
    qx, qy = x[:50] + 0.05, y[:50]
    ref = tiled.knn_counts(x, y, qx, qy, kth=4)
    got = tree.knn_counts(x, y, qx, qy, kth=4, impl="bitset")
    for a, b in zip(got, ref):
        np.testing.assert_array_equal(a, b)


def test_cupy_backend_without_gpu_is_a_clear_error():
    from lmi_distributed.estimators.neighbors import cupy_available

    if cupy_available():
        pytest.skip("a GPU is present")
    x = np.zeros((10, 1))
    with pytest.raises(InputError, match="cupy"):
        knn_counts(x, x, kth=3, backend="cupy")


def test_numba_kernels_leave_torch_thread_count_alone():
    """The CPU kernels must not change torch's intra-op threads: numba's OpenMP layer shares
    libgomp with torch, and a Ray worker pinned to 1 thread that silently jumps to all cores
    oversubscribes the machine (seen: 5x slower batches)."""
    torch = pytest.importorskip("torch")
    from lmi_distributed.estimators.ksg import ksg_mi

    prev = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        rng = np.random.default_rng(0)
        for n in (300, 20000):          # one-thread and parallel kernel paths
            ksg_mi(rng.random((n, 8)), rng.random((n, 8)), backend="tree")
            assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(prev)


# ---- impl="kdtree" (kd-tree over 64-point bitset words): integer equality with "bitset" ----
def _kdtree_cases():
    rng = np.random.default_rng(2024)
    cases = []
    for n, dx, dy in ((3000, 8, 8), (1500, 1, 1), (1200, 3, 5), (900, 16, 16)):
        x = rng.standard_normal((n, dx))
        y = 0.6 * x[:, :1] + rng.standard_normal((n, dy))
        cases.append((f"gauss{dx}+{dy}", x, y))
        cases.append((f"round{dx}+{dy}", np.round(x, 1), np.round(y, 1)))  # many exact ties
    xd, yd = np.round(rng.standard_normal((200, 8)), 1), np.round(rng.standard_normal((200, 8)), 1)
    cases.append(("dup8+8", np.repeat(xd, 7, axis=0), np.repeat(yd, 7, axis=0)))  # eps == 0 often
    cases.append(("n=70", rng.standard_normal((70, 2)), rng.standard_normal((70, 3))))  # 2 words
    return cases


@pytest.mark.skipif(not tree.HAVE_NUMBA, reason="numba not installed")
@pytest.mark.parametrize("name,x,y", _kdtree_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_kdtree_matches_bitset(name, x, y):
    rng = np.random.default_rng(9)
    m = min(300, len(x))
    pick = rng.choice(len(x), m, replace=False)
    # out-of-sample queries: reference points (exact duplicates), and shifted ones
    qx = x[pick] + (rng.random((m, x.shape[1])) < 0.5) * np.round(rng.standard_normal((m, x.shape[1])), 1)
    qy = y[pick]
    for kth in (1, 3, 5):
        want = tree.knn_counts(x, y, kth=kth, impl="bitset")
        got = tree.knn_counts(x, y, kth=kth, impl="kdtree")
        for a, b, what in zip(got, want, ("eps", "nx", "ny")):
            np.testing.assert_array_equal(a, b, err_msg=f"in-sample k={kth} {what}")
        assert got[1].dtype == np.int64 and got[0].dtype == np.float64
        want = tree.knn_counts(x, y, qx, qy, kth=kth, impl="bitset")
        got = tree.knn_counts(x, y, qx, qy, kth=kth, impl="kdtree")
        for a, b, what in zip(got, want, ("eps", "nx", "ny")):
            np.testing.assert_array_equal(a, b, err_msg=f"out-of-sample k={kth} {what}")


@pytest.mark.skipif(not tree.HAVE_NUMBA, reason="numba not installed")
def test_kdtree_matches_scipy_and_table_granularity(monkeypatch):
    from lmi_distributed.estimators.neighbors import kdtree

    rng = np.random.default_rng(31)
    x = np.round(rng.standard_normal((2000, 8)), 1)
    y = np.round(0.7 * x + 0.5 * rng.standard_normal((2000, 8)), 1)
    want = tree.knn_counts(x, y, kth=3, impl="scipy")
    # a tiny table budget forces coarse prefix rows (hundreds of single-bit fixes per slab)
    for budget in (1 << 30, 4096):
        monkeypatch.setattr(kdtree, "_TABLE_BYTES", budget)
        got = tree.knn_counts(x, y, kth=3, impl="kdtree")
        for a, b in zip(got, want):
            np.testing.assert_array_equal(a, b, err_msg=f"budget {budget}")
    assert kdtree.BitTree(x, table_bytes=4096).g > 100


def test_auto_impl_by_size():
    if not tree.HAVE_NUMBA:
        assert tree.auto_impl(10**6) == "scipy"
        return
    assert tree.auto_impl(tree._KDTREE_MIN_N - 1) == "bitset"
    assert tree.auto_impl(tree._KDTREE_MIN_N) == "kdtree"
