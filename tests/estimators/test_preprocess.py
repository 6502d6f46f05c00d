import numpy as np
import pytest

from lmi_distributed.estimators.preprocess import split_indices, zscore_clip
from lmi_distributed.estimators.seeding import derive_seed


def test_zscore_matches_numpy_population_std():
    rng = np.random.default_rng(0)
    a = rng.normal(3.0, 2.0, size=(500, 4))
    z = zscore_clip(a)
    assert z.dtype == np.float32 and z.shape == a.shape
    ref = (a - a.mean(0)) / a.std(0)
    np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-5)


def test_constant_column_is_zero_and_clip():
    a = np.zeros((1000, 3))
    a[:, 0] = 7.0                        # constant
    a[:, 1] = np.arange(1000)
    a[0, 2] = 1e6                        # one huge outlier -> z ~ 31.6, clipped
    z = zscore_clip(a)
    assert np.all(z[:, 0] == 0)
    assert z[0, 2] == pytest.approx(10.0)
    assert np.abs(z).max() <= 10.0
    assert zscore_clip(a, clip=2.0).max() == pytest.approx(2.0)


def test_zscore_rejects_1d():
    with pytest.raises(ValueError):
        zscore_clip(np.arange(5.0))


@pytest.mark.parametrize("n,frac", [(10, 0.5), (11, 0.5), (1001, 0.3)])
def test_split_partition(n, frac):
    tr, te = split_indices(n, seed=3, train_fraction=frac)
    assert tr.dtype == np.int64 and te.dtype == np.int64
    assert len(tr) == int(n * frac)
    assert len(np.intersect1d(tr, te)) == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([tr, te])), np.arange(n))


def test_split_seeded():
    a = split_indices(100, 5)
    b = split_indices(100, 5)
    c = split_indices(100, 6)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


def test_derive_seed_streams_differ_and_are_stable():
    assert derive_seed(0, "split") == derive_seed(0, "split")
    seeds = {derive_seed(s, p) for s in range(3) for p in ("split", "init", "shuffle", "dropout", "ksg")}
    assert len(seeds) == 15
    assert all(0 <= s < 2**63 for s in seeds)
    with pytest.raises(ValueError):
        derive_seed(-1, "split")


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1.0, 1e30, 1e200, 2.0**-1000, 1e-310])
def test_zscore_is_scale_free(scale):
    """z-scores of c*a equal those of a, bit for bit in float32.

    Why exact: the columns are rescaled by a power of two before any arithmetic, and every
    later step commutes exactly with it; c*a itself is rounded in float64 (relative 1.1e-16, or
    ~1e-6 for the subnormal 1e-310 * a), far below float32's half-ulp (6e-8) except for values
    within that distance of a float32 rounding boundary -- none in this seeded sample, and the
    check is deterministic. Before the rescaling 1e-200 underflowed (squares -> 0: the
    columns looked constant) and 1e200 overflowed (squares -> inf)."""
    a = np.random.default_rng(0).normal(size=(400, 10))
    ref = zscore_clip(a)
    scaled = a * scale
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no overflow inside
        z = zscore_clip(scaled)
    np.testing.assert_array_equal(z, ref)


def test_zscore_dtypes_float16_int_bool():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(200, 3))
    np.testing.assert_array_equal(zscore_clip(a.astype(np.float16)), zscore_clip(a.astype(np.float16).astype(np.float64)))
    ints = rng.integers(-(2**62), 2**62, size=(200, 3))               # beyond float64's 2**53
    z = zscore_clip(ints)
    assert z.dtype == np.float32 and np.isfinite(z).all()
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-5)              # float32 z-scores: std 1 to ~1e-6
    b = rng.random((200, 3)) < 0.3
    np.testing.assert_array_equal(zscore_clip(b), zscore_clip(b.astype(np.float64)))
    assert len(np.unique(zscore_clip(b)[:, 0])) == 2


def test_zscore_pow2_rescaling_keeps_todays_numbers():
    """The rescaling is exact: results equal numpy's plain (a - mean) / std bit for bit on
    ordinary data (the paper's numbers do not move)."""
    rng = np.random.default_rng(2)
    for a in (rng.normal(5.0, 3.0, size=(1000, 7)), rng.poisson(3, size=(500, 4)).astype(float)):
        std = a.std(0)
        ref = np.clip((a - a.mean(0)) / std, -10, 10).astype(np.float32)
        np.testing.assert_array_equal(zscore_clip(a), ref)
