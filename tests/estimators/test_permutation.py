"""Latent permutation null: equals explicit permuted KSG, centred near 0, p-value sanity."""

from __future__ import annotations

import numpy as np
import pytest

from lmi_distributed.errors import InputError
from lmi_distributed.estimators.ksg import ksg_mi
from lmi_distributed.estimators.permutation import draw_permutations, latent_permutation_null


def data(n, seed, rho):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 3))
    y = rho * x[:, :2] + rng.standard_normal((n, 2))
    return x, y


@pytest.mark.parametrize("backend", ["tree", "tiled"])
def test_equals_loop_of_ksg_on_permuted_data(backend):
    x, y = data(300, 0, 0.8)
    x = np.round(x, 1)  # ties must not break the equality
    null = latent_permutation_null(x, y, n_permutations=6, seed=11, backend=backend)
    perms = draw_permutations(300, 6, 11)
    expect = np.array([ksg_mi(x, y[p]) for p in perms])
    assert null.shape == (6,) and null.dtype == np.float64
    np.testing.assert_allclose(null, expect, rtol=0, atol=1e-12)


def test_seeded_and_backends_agree():
    x, y = data(200, 1, 0.5)
    a = latent_permutation_null(x, y, n_permutations=4, seed=3)
    b = latent_permutation_null(x, y, n_permutations=4, seed=3, backend="tiled")
    np.testing.assert_allclose(a, b, atol=1e-12)
    np.testing.assert_array_equal(a, latent_permutation_null(x, y, n_permutations=4, seed=3))
    assert not np.array_equal(a, latent_permutation_null(x, y, n_permutations=4, seed=4))
    # the first permutations do not depend on how many are drawn
    np.testing.assert_array_equal(
        a[:2], latent_permutation_null(x, y, n_permutations=2, seed=3))


def test_null_centred_near_zero_and_pvalues():
    x, y = data(400, 2, 0.0)  # independent
    null = latent_permutation_null(x, y, n_permutations=30, seed=5, backend="tiled")
    # KSG on independent data: per-estimate sd ~0.03 bits at N=400; the mean of 30 is ~0.01
    assert abs(null.mean()) < 0.03
    assert null.std() < 0.08
    obs = ksg_mi(x, y)
    p_indep = (1 + np.sum(null >= obs)) / (1 + null.size)
    assert p_indep > 0.01
    xd, yd = data(400, 2, 1.0)  # dependent: observed far above the null
    obs_d = ksg_mi(xd, yd)
    null_d = latent_permutation_null(xd, yd, n_permutations=30, seed=5, backend="tiled")
    assert obs_d > null_d.max() + 0.2
    p_dep = (1 + np.sum(null_d >= obs_d)) / (1 + null_d.size)
    assert p_dep == pytest.approx(1 / 31)


def test_validation():
    x, y = data(50, 0, 0.5)
    assert latent_permutation_null(x, y, n_permutations=0, seed=0).shape == (0,)
    with pytest.raises(InputError):
        latent_permutation_null(x, y, n_permutations=-1, seed=0)
    with pytest.raises(InputError):
        latent_permutation_null(x, y[:10], n_permutations=2, seed=0)
    with pytest.raises(InputError):
        latent_permutation_null(x, y, n_permutations=2, seed=None)
    with pytest.raises(InputError):
        latent_permutation_null(x, y, n_permutations=2, seed=0, backend="x")


# -- the null of a fitted result ---------------------------------------------------------------
def _fitted(**kw):
    import lmi_distributed as lmi

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 3))
    return lmi.estimate(x, x + 0.3 * rng.normal(size=(200, 3)), seed=1, hidden=16, max_epochs=3,
                        batch_size=128, num_threads=1, **kw)


def test_identity_permutation_reproduces_observed_mi_with_noise(monkeypatch):
    """With ksg_noise > 0 the null sees exactly the jittered latents the observed MI saw: the
    identity permutation gives res.mi exactly (same float64 arrays, same counts, same sum)."""
    import lmi_distributed.estimators.permutation as perm

    res = _fitted(ksg_noise=1e-3)
    assert res.status == "ok"
    n = len(res.test_idx)
    monkeypatch.setattr(perm, "draw_permutations", lambda n_, b, seed: np.tile(np.arange(n_), (b, 1)))
    for backend in ("tree", "tiled"):
        null = perm.result_latent_null(res, n_permutations=2, seed=0, backend=backend)
        assert null.shape == (2,) and null[0] == res.mi and null[1] == res.mi, backend
    # without the jitter the identity would not match (the noise matters at 1e-3)
    raw = latent_permutation_null(res.zx[res.test_idx], res.zy[res.test_idx], n_permutations=1, seed=0)
    assert raw[0] != res.mi and n == 100


def test_non_ok_result_has_all_nan_null():
    import dataclasses

    from lmi_distributed.estimators.permutation import result_latent_null

    res = _fitted()
    bad = dataclasses.replace(res, status="diverged", mi=float("nan"), detail="forced")
    null = result_latent_null(bad, n_permutations=5, seed=0)
    assert null.shape == (5,) and np.isnan(null).all()
    assert np.isfinite(result_latent_null(res, n_permutations=5, seed=0)).all()


def test_permutations_that_could_tie_are_refused():
    """Both sides with a row repeated more than k times: some permutation can pair k+1 exact
    copies (zero-distance ties, inflated null). Refused by default; one side distinct is fine."""
    rng = np.random.default_rng(1)
    x = np.repeat(rng.normal(size=(20, 2)), 5, axis=0)          # every row 5 times (> k = 3)
    y = np.repeat(rng.normal(size=(20, 2)), 5, axis=0)[rng.permutation(100)]
    with pytest.raises(InputError, match=r"zx and zy both have a row repeated more than k=3 times \(5 and 5"):
        latent_permutation_null(x, y, n_permutations=3, seed=0)
    assert latent_permutation_null(x, y, n_permutations=3, seed=0, ties="allow").shape == (3,)
    yc = rng.normal(size=(100, 2))
    assert np.isfinite(latent_permutation_null(x, yc, n_permutations=3, seed=0)).all()


# -- the sorted-marginal-list path (method="lists") against the per-permutation KSG loop ---------
def _brute_counts(x, y, k):
    """Reference KSG counts by full (N, N) Chebyshev matrices: eps = k-th smallest joint distance
    (self excluded by index), strict marginal counts."""
    dx = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    dy = np.abs(y[:, None, :] - y[None, :, :]).max(axis=2)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    eps = np.partition(np.maximum(dx, dy), k - 1, axis=1)[:, k - 1]
    return (dx < eps[:, None]).sum(axis=1), (dy < eps[:, None]).sum(axis=1)


@pytest.mark.parametrize("n,k,seed,dx,dy", [
    (5, 3, 8, 1, 1), (12, 4, 9, 2, 1),  # lists shorter than one summary block
    (40, 1, 0, 1, 1), (150, 3, 1, 3, 2), (333, 3, 2, 8, 8), (500, 5, 3, 4, 6), (700, 2, 4, 1, 5)])
def test_lists_equal_loop_bit_for_bit(n, k, seed, dx, dy):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dx))
    y = 0.7 * x[:, :1] + rng.standard_normal((n, dy))
    fast = latent_permutation_null(x, y, n_permutations=7, seed=seed, k=k, method="lists")
    slow = latent_permutation_null(x, y, n_permutations=7, seed=seed, k=k, method="loop")
    np.testing.assert_array_equal(fast, slow)  # identical: same distances, counts and sums
    assert np.array_equal(fast, latent_permutation_null(x, y, n_permutations=7, seed=seed, k=k))


@pytest.mark.parametrize("decimals", [0, 1])
def test_lists_equal_loop_with_ties(decimals):
    """Rounded coordinates: many equal marginal and joint distances (tie order in the sorted
    lists must not matter), and with decimals=0 also duplicate rows (ties='allow')."""
    rng = np.random.default_rng(5)
    x = np.round(rng.standard_normal((400, 2)), decimals)
    y = np.round(0.5 * x + rng.standard_normal((400, 2)), decimals)
    kw = dict(n_permutations=6, seed=9, ties="allow")
    np.testing.assert_array_equal(latent_permutation_null(x, y, method="lists", **kw),
                                  latent_permutation_null(x, y, method="loop", **kw))


def test_lists_equal_loop_with_jitter_and_duplicates():
    """Duplicate rows broken by the seeded KSG jitter (as result_latent_null does)."""
    from lmi_distributed.estimators.ksg import add_noise

    rng = np.random.default_rng(6)
    x = np.repeat(rng.standard_normal((60, 8)), 5, axis=0)
    y = np.repeat(rng.standard_normal((60, 8)), 5, axis=0)[rng.permutation(300)]
    x, y = add_noise([x, y], 1e-10, 17)
    a = latent_permutation_null(x, y, n_permutations=5, seed=1, method="lists")
    b = latent_permutation_null(x, y, n_permutations=5, seed=1, method="loop")
    np.testing.assert_array_equal(a, b)


def test_permuted_counts_equal_brute_force_and_truncated_lists(monkeypatch):
    """Counts equal a brute-force reference; truncated lists (short prefix of 4, lists of 12
    columns) take the long-list and brute-force fallbacks and still give the same counts."""
    from lmi_distributed.estimators.neighbors import permuted

    rng = np.random.default_rng(7)
    x = rng.standard_normal((200, 3))
    y = np.round(0.6 * x[:, :2] + rng.standard_normal((200, 2)), 1)
    perms = draw_permutations(200, 4, 2)
    nx, ny = permuted.permuted_counts(x, y, perms, 3)
    for b, p in enumerate(perms):
        ex, ey = _brute_counts(x, y[p], 3)
        np.testing.assert_array_equal(nx[b], ex)
        np.testing.assert_array_equal(ny[b], ey)
    monkeypatch.setattr(permuted, "SHORT_COLS", 4)
    for cols in (12, 60, 199):
        tx, ty = permuted.permuted_counts(x, y, perms, 3, ncols=cols)
        np.testing.assert_array_equal(tx, nx)
        np.testing.assert_array_equal(ty, ny)


def test_method_validation():
    x, y = data(50, 0, 0.5)
    with pytest.raises(InputError, match="method must be one of"):
        latent_permutation_null(x, y, n_permutations=2, seed=0, method="fast")


def test_result_null_unchanged_by_the_lists(monkeypatch):
    """The engine's call (result_latent_null, default settings) gives the same null whether
    "auto" picks the lists or the per-permutation loop."""
    import lmi_distributed.estimators.permutation as perm

    from lmi_distributed.estimators.neighbors import permuted

    res = _fitted(ksg_noise=1e-10)
    calls = []
    real = permuted.permuted_counts
    monkeypatch.setattr(permuted, "permuted_counts", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    fast = perm.result_latent_null(res, n_permutations=20, seed=4)
    views = 2 if res.canonical_width else 1      # the latents' null, and the canonical view's if compared
    assert calls == [1] * views  # "auto" took the lists (N = 100, 20 permutations)
    monkeypatch.setattr(perm, "LISTS_MAX_N", 0)  # "auto" now takes the loop
    slow = perm.result_latent_null(res, n_permutations=20, seed=4)
    assert calls == [1] * views
    assert np.isfinite(fast).all()
    np.testing.assert_array_equal(fast, slow)


def test_mean_pmi_rows_equals_the_per_permutation_sum():
    """The lists path's vectorised null (tabulated ψ, one numpy mean along rows) is the per-row
    ``np.mean(pmi_from_counts(...))`` of the loop bit for bit, counts 0 and N - 1 included."""
    from lmi_distributed.estimators.ksg import pmi_from_counts
    from lmi_distributed.estimators.permutation import _mean_pmi_rows

    rng = np.random.default_rng(3)
    for n, k in ((4, 3), (9, 1), (1000, 3), (2049, 5)):
        nx = rng.integers(0, n, size=(6, n))
        ny = rng.integers(0, n, size=(6, n))
        nx[0, 0], ny[0, 0], nx[1, 1], ny[1, 1] = 0, 0, n - 1, n - 1
        expect = [float(np.mean(pmi_from_counts(k, n, nx[b] + 1, ny[b] + 1))) for b in range(6)]
        got = _mean_pmi_rows(k, n, nx, ny)
        assert got.shape == (6,) and got.dtype == np.float64
        np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("n,d,decimals", [(2, 1, None), (5, 1, None), (300, 3, None), (400, 2, 1),
                                          (400, 2, 0), (1000, 8, None)])
def test_marginal_lists_equal_a_full_sort(n, d, decimals):
    """The sorted lists (uint64 key sort, then the parallel exact fix-up) equal a stable full sort
    of the (N, N) Chebyshev matrix, distances and points (ties in point order); truncated lists
    are its first ncols columns."""
    from lmi_distributed.estimators.neighbors import permuted

    rng = np.random.default_rng(n + d)
    x = rng.standard_normal((n, d))
    if decimals is not None:  # many exact ties, and decimals=0 duplicate rows (distance 0)
        x = np.round(x, decimals)
    full = np.abs(x[:, None, :] - x[None, :, :]).max(axis=2)
    np.fill_diagonal(full, np.inf)
    order = np.argsort(full, axis=1, kind="stable")[:, :n - 1]
    for cols in (None, 1, max(1, n // 3)):
        lists = permuted.MarginalLists(x, cols)
        m = lists.dist.shape[1]
        assert m == (n - 1 if cols is None else min(cols, n - 1)) and lists.idx.dtype == np.int32
        np.testing.assert_array_equal(lists.idx, order[:, :m])
        np.testing.assert_array_equal(lists.dist, np.take_along_axis(full, order[:, :m], axis=1))
        assert (lists.idx != np.arange(n)[:, None]).all()  # self excluded
        np.testing.assert_array_equal(lists.short_dist, lists.dist[:, :lists.short_dist.shape[1]])
