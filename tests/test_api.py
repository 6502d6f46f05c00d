"""Public API: estimate / estimate_many / train_and_encode; validation; end-to-end sanity."""
import numpy as np
import pytest
from scipy.special import digamma

import lmi_distributed as lmi
from lmi_distributed.errors import ConfigError, InputError
from lmi_distributed.estimators import api
from lmi_distributed.estimators.api import LMIResult, LMISettings


def _ksg_pmi_bruteforce(zx, zy, *, k=3, noise=0.0, seed=None, backend="auto"):
    """Plain O(N^2) KSG-1 in bits (test reference)."""
    zx = np.asarray(zx, np.float64)
    zy = np.asarray(zy, np.float64)
    n = len(zx)
    dx = np.abs(zx[:, None, :] - zx[None, :, :]).max(-1)
    dy = np.abs(zy[:, None, :] - zy[None, :, :]).max(-1)
    dz = np.maximum(dx, dy)
    np.fill_diagonal(dz, np.inf)
    eps = np.sort(dz, axis=1)[:, k - 1]
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    nx = (dx < eps[:, None]).sum(1)
    ny = (dy < eps[:, None]).sum(1)
    return (digamma(k) + digamma(n) - digamma(nx + 1) - digamma(ny + 1)) / np.log(2)


FAST = dict(hidden=32, max_epochs=5, batch_size=128)


def _dependent(n=300, d=3, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    return x, x + noise * rng.normal(size=(n, d))


# -- validation -------------------------------------------------------------------------------
def test_one_dimensional_input_is_rejected_with_reshape_hint():
    x, y = _dependent()
    with pytest.raises(InputError, match=r"X must be a 2-D.*shape \(300,\).*reshape\(-1, 1\)"):
        lmi.estimate(x[:, 0], y, **FAST)
    with pytest.raises(InputError, match=r"Y must be a 2-D.*\(2, 150, 3\)"):
        lmi.estimate(x, y.reshape(2, 150, 3), **FAST)


def test_mismatched_rows_names_both_counts():
    x, y = _dependent()
    with pytest.raises(InputError, match=r"X has 300, Y has 299"):
        lmi.estimate(x, y[:-1], **FAST)


def test_nan_and_inf_rows_reported():
    x, y = _dependent()
    y = y.copy()
    y[[4, 17, 250], 1] = np.nan
    y[20, 0] = np.inf
    with pytest.raises(InputError, match=r"Y has NaN or inf in 4 of 300 rows \(rows 4, 17, 20, 250\)"):
        lmi.estimate(x, y, **FAST)
    with pytest.raises(InputError, match=r"pair 1: Y has NaN"):
        lmi.estimate_many([_dependent(), (x, y)], **FAST)
    assert issubclass(InputError, ValueError)


def test_too_few_samples():
    x, y = _dependent(n=7)
    assert LMISettings().min_samples() == 8          # 4 training rows, 4 > k=3 held-out rows
    with pytest.raises(InputError, match=r"too few samples: N=7, LMI needs N >= 8"):
        lmi.estimate(x, y, **FAST)


def test_unknown_and_bad_settings():
    x, y = _dependent()
    with pytest.raises(ConfigError, match=r"unknown setting 'epochs'; valid settings: latent_dim"):
        lmi.estimate(x, y, epochs=3)
    for bad in ({"lr": float("inf")}, {"lr": float("nan")}, {"clip": float("inf")}, {"k": True},
                {"max_epochs": 2.5}, {"ksg_backend": "kdtree"}, {"ksg_noise": float("nan")}):
        name = next(iter(bad))
        with pytest.raises(ConfigError, match=rf"LMISettings\.{name}"):   # before any training
            lmi.estimate(x, y, **bad)
    with pytest.raises(ConfigError, match="train_fraction"):
        lmi.estimate(x, y, train_fraction=1.5)
    with pytest.raises(ConfigError, match="device"):
        LMISettings(device="tpu")
    with pytest.raises(InputError, match="2 seeds for 1 pairs"):
        lmi.estimate_many([(x, y)], seeds=[1, 2], **FAST)
    with pytest.raises(InputError, match="non-negative"):
        lmi.estimate(x, y, seed=-3, **FAST)


# -- behaviour ----------------------------------------------------------------------------------
def test_result_fields_and_one_code_path():
    x, y = _dependent()
    r = lmi.estimate(x, y, seed=4, **FAST)
    assert isinstance(r, LMIResult)
    assert r.zx.shape == r.zy.shape == (300, 8) and r.zx.dtype == np.float32
    assert len(r.train_idx) == 150 and len(r.test_idx) == 150
    assert np.isnan(r.pmi[r.train_idx]).all() and np.isfinite(r.pmi[r.test_idx]).all()
    assert r.mi == pytest.approx(np.nanmean(r.pmi))
    assert r.epochs == 5 and len(r.val_loss) == len(r.train_loss) == 5 and 0 <= r.best_epoch < 5
    assert r.seed == 4 and r.settings.hidden == 32
    # the reference KSG on the held-out latents gives the same pMI
    ref = _ksg_pmi_bruteforce(r.zx[r.test_idx], r.zy[r.test_idx], k=3)
    np.testing.assert_allclose(r.pmi[r.test_idx], ref, rtol=1e-9, atol=1e-9)
    many = lmi.estimate_many([(x, y)], seeds=[4], **FAST)[0]
    np.testing.assert_array_equal(many.zx, r.zx)
    assert many.mi == r.mi


def test_estimate_many_groups_shapes_keeps_order_and_seeds():
    a = _dependent(n=200, d=3, seed=1)
    b = _dependent(n=240, d=2, seed=2)
    c = _dependent(n=200, d=3, seed=3)
    calls = []
    res = lmi.estimate_many([a, b, c], seeds=10, progress=lambda e, n, v: calls.append((e, n)), **FAST)
    assert [r.seed for r in res] == [10, 11, 12]
    assert [len(r.pmi) for r in res] == [200, 240, 200]
    assert (0, 2) in calls and (0, 1) in calls           # one batch of two, one of one
    alone = lmi.estimate(c[0], c[1], seed=12, **FAST)    # batch invariance through the API
    np.testing.assert_allclose(alone.zx, res[2].zx, atol=1e-5)
    np.testing.assert_array_equal(alone.test_idx, res[2].test_idx)
    assert alone.mi == pytest.approx(res[2].mi, abs=1e-6)


def test_settings_object_and_overrides():
    x, y = _dependent(n=100)
    base = LMISettings(hidden=16, max_epochs=2)
    r = lmi.estimate(x, y, settings=base, max_epochs=3)
    assert r.epochs == 3 and r.settings.hidden == 16


def test_train_and_encode_stacked_input():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2, 120, 3))
    Y = X + 0.1 * rng.normal(size=(2, 120, 3))
    res = api.train_and_encode(X, Y, [0, 1], LMISettings(**FAST))
    assert len(res) == 2 and res[1].seed == 1
    with pytest.raises(InputError, match="one shape"):
        api.train_and_encode([X[0], X[1, :100]], [Y[0], Y[1, :100]], [0, 1], LMISettings(**FAST))


def test_end_to_end_dependent_vs_independent():
    rng = np.random.default_rng(7)
    n = 400
    x = rng.normal(size=(n, 2))
    y_dep = np.hstack([x + 0.1 * rng.normal(size=(n, 2)), rng.normal(size=(n, 2))])
    y_ind = rng.normal(size=(n, 4))
    dep, ind = lmi.estimate_many([(x, y_dep), (x, y_ind)], seeds=[0, 1], hidden=64, max_epochs=20,
                                 batch_size=64, lr=1e-3)
    assert dep.mi > 1.5          # truth ~ 2 log2(1/0.1) ~ 6.7 bits; KSG in 16-d underestimates
    assert abs(ind.mi) < 0.2
