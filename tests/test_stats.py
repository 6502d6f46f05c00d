import numpy as np
import pytest

from lmi_distributed import stats


def test_pvalue_formula_and_never_zero():
    null = np.array([0.1, 0.2, 0.3, 0.4])
    assert stats.permutation_pvalue(0.25, null) == pytest.approx((1 + 2) / 5)
    assert stats.permutation_pvalue(10.0, null) == pytest.approx(1 / 5)  # never 0
    assert stats.permutation_pvalue(-1.0, null) == 1.0
    assert stats.permutation_pvalue(0.3, null) == pytest.approx((1 + 2) / 5)  # ties count as >=
    assert stats.permutation_pvalue(1.0, []) == 1.0
    assert np.isnan(stats.permutation_pvalue(float("nan"), null))
    assert stats.permutation_pvalue(0.25, [0.1, np.nan, 0.3]) == pytest.approx(2 / 3)


def _bh_direct(p):
    m = len(p)
    order = np.argsort(p)
    ranks = np.empty(m, int)
    ranks[order] = np.arange(1, m + 1)
    return np.array([min(1.0, min(p[j] * m / ranks[j] for j in range(m) if p[j] >= p[i])) for i in range(m)])


@pytest.mark.parametrize("seed", range(5))
def test_bh_matches_direct_computation(seed):
    rng = np.random.default_rng(seed)
    p = np.concatenate([rng.uniform(0, 1, 15), rng.uniform(0, 0.01, 5), [0.5, 0.5]])
    rng.shuffle(p)
    np.testing.assert_allclose(stats.benjamini_hochberg(p), _bh_direct(p), rtol=0, atol=1e-12)


def test_bh_known_values_and_nan():
    # R: p.adjust(c(0.01, 0.04, 0.03, 0.2), "BH") -> 0.04 0.0533 0.0533 0.2
    q = stats.benjamini_hochberg([0.01, 0.04, 0.03, 0.2])
    np.testing.assert_allclose(q, [0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])
    q = stats.benjamini_hochberg([0.01, np.nan, 0.02])
    assert np.isnan(q[1]) and q[0] == pytest.approx(0.02) and q[2] == pytest.approx(0.02)
    assert stats.benjamini_hochberg([]).size == 0


def test_sem_and_z():
    v = [1.0, 2.0, 3.0, 4.0]
    assert stats.sem(v) == pytest.approx(np.std(v, ddof=1) / 2)
    assert np.isnan(stats.sem([1.0]))
    null = [0.0, 0.1, 0.2]
    assert stats.zscore(1.0, null) == pytest.approx((1.0 - 0.1) / np.std(null, ddof=1))
    assert np.isnan(stats.zscore(1.0, [0.5, 0.5]))


def test_null_of_means():
    a = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, np.nan]])
    np.testing.assert_allclose(stats.null_of_means(a), [1.0, 2.0, 2.0])
    np.testing.assert_allclose(stats.null_of_means(np.array([1.0, 2.0])), [1.0, 2.0])


def test_null_summary_drops_nan_and_has_no_p_without_a_null():
    from lmi_distributed.stats import null_summary

    m, sd, p = null_summary(0.5, [0.1, np.nan, 0.3, 0.6])
    assert m == pytest.approx(1.0 / 3) and sd == pytest.approx(np.std([0.1, 0.3, 0.6], ddof=1))
    assert p == (1 + 1) / (1 + 3)                      # one of three finite draws >= 0.5
    assert all(np.isnan(v) for v in null_summary(0.5, [np.nan, np.nan]))   # no null: no p (not 1)
    assert np.isnan(null_summary(0.5, [0.2])[1])       # one draw: no sd


def test_bh_over_ok_leaves_flagged_pairs_out():
    from lmi_distributed.stats import benjamini_hochberg, bh_over_ok

    p = np.array([0.01, 0.001, 0.04, 0.02])
    ok = np.array([True, False, True, True])
    q, sig = bh_over_ok(p, ok, alpha=0.05)
    assert np.isnan(q[1]) and not sig[1]               # the flagged pair's tiny p does not count
    np.testing.assert_array_equal(q[ok], benjamini_hochberg(p[ok]))   # BH over the 3 ok pairs only
    assert sig.tolist() == [True, False, True, True]   # q = 0.03, 0.04, 0.04 <= 0.05
