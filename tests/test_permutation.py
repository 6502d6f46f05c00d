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
