import math

import numpy as np
import pytest

from lmi_distributed.synthetic import (bernoulli_pair_pmf, digits_label_benchmark, discrete_mi_bits,
                                       gaussian_benchmark, gaussian_markov_chain)


@pytest.mark.parametrize("k,b", [(1, 1.0), (3, 2.0), (2, 0.0)])
def test_gaussian_truth_and_covariance(k, b):
    n, d = 20000, 11
    X, Y, truth = gaussian_benchmark(n, d, k, b, seed=1)
    assert X.shape == Y.shape == (n, d)
    assert truth == pytest.approx(b, abs=1e-12)
    rho = math.sqrt(21) * math.sqrt(1 - 2 ** (-2 * b / k))
    assert -(k / 2) * math.log2(1 - rho**2 / 21) == pytest.approx(b, abs=1e-12)
    for i in range(k):
        c = np.cov(X[:, i], Y[:, i])
        # sd of a sample covariance ~ sqrt((s_xx s_yy + s_xy^2)/n); 5 sd tolerances
        tol = 5 * np.sqrt((np.array([[2 * 36, 21 + rho**2], [21 + rho**2, 2 * 3.5**2]])) / n)
        np.testing.assert_array_less(np.abs(c - [[6, rho], [rho, 3.5]]), tol)
    if k > 1:  # dependent dims independent of each other
        assert abs(np.corrcoef(X[:, 0], X[:, 1])[0, 1]) < 5 / np.sqrt(n)


def test_gaussian_copies_and_nuisance():
    n, d, k = 5000, 10, 2
    X, Y, _ = gaussian_benchmark(n, d, k, 1.0, seed=2)
    n_nuis = (d - k) // 2
    n_copy = d - k - n_nuis
    for j in range(k, k + n_copy):   # copies: identical to some dependent column, same one in X and Y
        src = [i for i in range(k) if np.array_equal(X[:, j], X[:, i])]
        assert len(src) == 1 and np.array_equal(Y[:, j], Y[:, src[0]])
    nuis = slice(k + n_copy, d)
    np.testing.assert_allclose(X[:, nuis].std(0), 1.0, atol=0.05)
    c = np.corrcoef(np.hstack([X[:, nuis], Y[:, nuis], X[:, :k]]).T)
    off = c[~np.eye(len(c), dtype=bool)]
    assert np.abs(off).max() < 5 / np.sqrt(n)
    X2, Y2, _ = gaussian_benchmark(n, d, k, 1.0, seed=2)
    np.testing.assert_array_equal(X, X2)


def test_bernoulli_pmf_and_truth():
    pmf = bernoulli_pair_pmf(0.0)
    assert discrete_mi_bits(pmf) == pytest.approx(0.0, abs=1e-12)
    assert discrete_mi_bits(bernoulli_pair_pmf(1.0)) == pytest.approx(1.0)
    pmf = bernoulli_pair_pmf(0.5)
    np.testing.assert_allclose(pmf, [[0.375, 0.125], [0.125, 0.375]])
    expect = 2 * 0.375 * math.log2(0.375 / 0.25) + 2 * 0.125 * math.log2(0.125 / 0.25)
    assert discrete_mi_bits(pmf) == pytest.approx(expect)
    with pytest.raises(ValueError):
        bernoulli_pair_pmf(-0.9, p=0.2)


def test_digits_benchmark():
    from sklearn.datasets import load_digits

    X, Y, truth = digits_label_benchmark(600, 0.8, seed=0, digits=(0, 1))
    assert X.shape == Y.shape == (600, 64)
    assert truth == pytest.approx(discrete_mi_bits(bernoulli_pair_pmf(0.8)))
    data = load_digits()
    lookup = {row.tobytes(): t for row, t in zip(data.data.astype(np.float32), data.target)}
    lx = np.array([lookup[r.tobytes()] for r in X])
    ly = np.array([lookup[r.tobytes()] for r in Y])
    assert set(lx) <= {0, 1} and set(ly) <= {0, 1}
    assert abs(np.corrcoef(lx, ly)[0, 1] - 0.8) < 0.08
    assert abs(lx.mean() - 0.5) < 0.08


def test_markov_chain_correlation_and_truth():
    n, t, k, d, rho = 20000, 4, 2, 6, 0.7
    vs, truth = gaussian_markov_chain(n, t, k, d, rho, seed=0)
    assert len(vs) == t and all(v.shape == (n, d) for v in vs)
    assert np.all(np.isinf(np.diag(truth)))
    for s in range(t):
        for u in range(t):
            if s != u:
                lag = abs(s - u)
                assert truth[s, u] == pytest.approx(-(k / 2) * math.log2(1 - rho ** (2 * lag)))
                for j in range(k):
                    r = np.corrcoef(vs[s][:, j], vs[u][:, j])[0, 1]
                    assert abs(r - rho**lag) < 5 / np.sqrt(n)
    assert truth[0, 1] > truth[0, 2] > truth[0, 3] > 0
    v = vs[1]
    n_nuis = (d - k) // 2
    for j in range(k, d - n_nuis):
        assert any(np.array_equal(v[:, j], v[:, i]) for i in range(k))
