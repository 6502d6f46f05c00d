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


# --- accuracy-suite generators (issue 11) -------------------------------------------------------
from lmi_distributed.synthetic import (WARPS, independent_structured, low_variance_dependence,  # noqa: E402
                                       random_rotation, rotated_warped_gaussian, sparse_columns_dependence,
                                       warp_columns)


def _gaussian_mi_bits(X: np.ndarray, Y: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """MI (bits) of the Gaussian with the sample covariance of (X, Y), via canonical correlations
    (rank-deficient X / Y allowed: whitening keeps the directions with non-zero variance).
    Returns (mi, canonical correlations, X-side canonical directions (d, r), unit norm)."""
    def whiten(a):
        a = a - a.mean(0)
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        keep = s > 1e-8 * s[0]
        return u[:, keep], vt[keep].T / s[keep]          # (n, r) white, (d, r) map to it
    ux, mx = whiten(X)
    uy, _ = whiten(Y)
    u, rho, _ = np.linalg.svd(ux.T @ uy)
    rho = np.clip(rho, 0, 1 - 1e-12)
    dirs = mx @ u                                        # X-side canonical directions
    return float(-0.5 * np.sum(np.log2(1 - rho ** 2))), rho, dirs / np.linalg.norm(dirs, axis=0)


def test_random_rotation_is_orthogonal():
    q = random_rotation(7, np.random.default_rng(0))
    np.testing.assert_allclose(q @ q.T, np.eye(7), atol=1e-12)   # float64 round-off


@pytest.mark.parametrize("kind", WARPS)
def test_warps_are_strictly_increasing_per_column(kind):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((500, 3)) * [1, 5, 0.1] + [0, 3, -2]
    w = warp_columns(a, np.random.default_rng(2), kinds=(kind,))
    assert w.shape == a.shape and np.isfinite(w).all()
    for j in range(3):              # order of every column preserved exactly: an invertible map
        o = np.argsort(a[:, j])
        assert (np.diff(w[o, j]) > 0).all()
    with pytest.raises(ValueError, match="unknown warp"):
        warp_columns(a, rng, kinds=("nope",))


def test_warp_columns_mixes_kinds_and_changes_marginals():
    a = np.random.default_rng(3).standard_normal((4000, 40))
    w = warp_columns(a, np.random.default_rng(4))
    skew = ((w - w.mean(0)) ** 3).mean(0) / w.std(0) ** 3
    # exp warps make strongly skewed columns (lognormal skew ~6); a Gaussian column has |skew| < 0.3
    assert (np.abs(skew) > 1.0).any() and (np.abs(skew) < 0.3).any()


def test_rotated_gaussian_keeps_the_truth():
    n = 20000
    X, Y, truth = rotated_warped_gaussian(n, 12, 2, 1.0, seed=5, warp=False)
    assert truth == pytest.approx(1.0, abs=1e-12)
    mi, _, _ = _gaussian_mi_bits(X, Y)
    # sampling error of the Gaussian MI from 20000 rows: ~0.01 bits; 0.05 is > 4 sd
    assert mi == pytest.approx(truth, abs=0.05)
    # X is Alg. 4's X times an orthogonal matrix: same singular values, different columns
    X0, _, _ = gaussian_benchmark(n, 12, 2, 1.0, seed=5)
    s0 = np.linalg.svd(X0, compute_uv=False)
    # float64 round-off of a 12x12 product, relative to the largest singular value (the copies
    # make some singular values ~0, where only an absolute tolerance means anything)
    np.testing.assert_allclose(np.linalg.svd(X, compute_uv=False), s0, rtol=0, atol=1e-9 * s0[0])
    assert not np.allclose(np.abs(X), np.abs(X0))
    Xw, Yw, truth_w = rotated_warped_gaussian(n, 12, 2, 1.0, seed=5, warp=True)
    assert truth_w == truth and Xw.shape == (n, 12)
    # warped columns are increasing functions of the unwarped ones (same seed, same rotation)
    for j in range(12):
        o = np.argsort(X[:, j])
        assert (np.diff(Xw[o, j]) > 0).all()


def test_sparse_columns_dependence_puts_the_truth_in_n_dep_column_pairs():
    n, d = 20000, 40
    X, Y, truth = sparse_columns_dependence(n, d, 2, 1.0, seed=3, warp=False)
    assert X.shape == Y.shape == (n, d) and truth == pytest.approx(1.0, abs=1e-12)
    # exactly 2 column pairs correlate, each at r = sqrt(1 - 2^-1) = 0.707 (sd of a sample r from
    # 20000 rows ~0.005; every other |r| stays below 0.04, 5 sd)
    c = np.corrcoef(X.T, Y.T)[:d, d:]
    strong = np.argwhere(np.abs(c) > 0.3)
    assert len(strong) == 2 and len(set(strong[:, 0])) == len(set(strong[:, 1])) == 2
    assert np.abs(c[tuple(strong.T)]) == pytest.approx([0.5 ** 0.5] * 2, abs=0.02)
    assert np.sort(np.abs(c).ravel())[-3] < 0.04
    mi, _, _ = _gaussian_mi_bits(X, Y)
    assert mi == pytest.approx(truth, abs=0.05)       # as above: sampling error plus spurious canonical corr
    # warped: each column an increasing map of the unwarped one (same seed)
    Xw, _, _ = sparse_columns_dependence(n, d, 2, 1.0, seed=3)
    o = np.argsort(X[:, 0])
    assert (np.diff(Xw[o, 0]) > 0).all()


@pytest.mark.parametrize("n_dir", [1, 3])
def test_low_variance_dependence_truth_and_variance_share(n_dir):
    n, d, frac = 20000, 30, 0.01
    X, Y, truth = low_variance_dependence(n, d, n_dir, 1.0, seed=6, var_fraction=frac, warp=False)
    assert X.shape == Y.shape == (n, d)
    assert truth == pytest.approx(1.0, abs=1e-12)
    mi, rho, dirs = _gaussian_mi_bits(X, Y)
    # as above: ~0.01 bits sampling error, plus d spurious canonical correlations of ~1/n each
    assert mi == pytest.approx(truth, abs=0.05)
    # the dependent directions each carry frac/n_dir of the total variance (relative sampling
    # error of a variance from 20000 rows ~1%; 10% allows for the direction's estimation error)
    total = X.var(0).sum()
    for i in range(n_dir):
        share = (X @ dirs[:, i]).var() / total
        assert share == pytest.approx(frac / n_dir, rel=0.1)
    # no dependence beyond the n_dir directions: the largest spurious canonical correlation of
    # independent d-dim Gaussians is ~2 sqrt(d / n) (0.077 here); 3 sqrt(d / n) bounds it
    assert rho[n_dir] < 3 * math.sqrt(d / n) < 0.5 * rho[n_dir - 1]
    with pytest.raises(ValueError):
        low_variance_dependence(100, 5, 5, 1.0, seed=0)


@pytest.mark.parametrize("kind", ["low_rank", "heavy_tailed"])
def test_independent_structured(kind):
    n, d = 20000, 20
    X, Y, truth = independent_structured(n, d, kind, seed=7)
    assert truth == 0.0 and X.shape == Y.shape == (n, d)
    c = np.corrcoef(X.T, Y.T)[:d, d:]
    # independent sides: cross-correlations are sampling noise, sd 1/sqrt(n) (heavier for t(2.5),
    # whose variance is finite but its fourth moment is not: 10/sqrt(n) is a loose bound)
    assert np.abs(c).max() < 10 / math.sqrt(n)
    if kind == "low_rank":
        s = np.linalg.svd(X - X.mean(0), compute_uv=False)
        assert (s[:3] ** 2).sum() / (s ** 2).sum() > 0.95     # rank 3 plus 0.1 noise
    else:
        kurt = ((X - X.mean(0)) ** 4).mean(0) / X.var(0) ** 2
        assert np.median(kurt) > 5            # a Gaussian column has kurtosis 3
    with pytest.raises(ValueError, match="unknown kind"):
        independent_structured(10, 3, "nope", seed=0)
