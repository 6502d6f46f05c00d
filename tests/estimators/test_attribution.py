"""Attribution (paper A.2.3): per-dimension held-out R^2 of the cross-decoders, estimator side."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import r2_score

import lmi_distributed as lmi
from lmi_distributed.errors import LMIWarning
from lmi_distributed.estimators.attribution import cross_decoder_r2, r2_per_dim
from lmi_distributed.estimators.estimator import LMI
from lmi_distributed.estimators.networks import NetSpec
from lmi_distributed.estimators.training import torch_threads, train_pairs
from lmi_distributed.synthetic_attribution import attribution_benchmark

# Small settings that train the 24-dim benchmark to a clear ranking in a few seconds per seed
# on one CPU thread (measured: 3-5 s, top-4 exact on seeds 0-1).
FAST = dict(hidden=128, batch_size=128, lr=3e-3, max_epochs=300, patience=30, num_threads=1)


def test_r2_per_dim_matches_sklearn_and_flags_constant_dims():
    rng = np.random.default_rng(0)
    target = rng.standard_normal((50, 4))
    pred = target + rng.standard_normal((50, 4)) * np.array([0.1, 1.0, 3.0, 0.5])
    got = r2_per_dim(pred, target)
    # same float64 formula as sklearn's; 1e-12: summation order only
    np.testing.assert_allclose(got, r2_score(target, pred, multioutput="raw_values"), rtol=0, atol=1e-12)
    assert got[2] < 0                     # worse than the mean: negative, not clipped
    target[:, 1] = 0.3                    # constant: nothing to explain
    pred[:, 1] = 0.3                      # a perfect "reconstruction" is still not evidence
    got = r2_per_dim(pred, target)
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2, 3]]).all()
    # batched (P, n, d) gives the per-pair values
    both = r2_per_dim(np.stack([pred, pred]), np.stack([target, target]))
    np.testing.assert_array_equal(both[0], got)


def test_cross_decoder_r2_is_the_eval_mode_reconstruction_r2():
    """The trainer's R^2 equals R^2 of the restored networks' eval-mode reconstructions."""
    rng = np.random.default_rng(1)
    P, n, dx, dy = 2, 64, 5, 3
    x = torch.from_numpy(rng.standard_normal((P, n, dx)).astype(np.float32))
    y = torch.from_numpy((x[:, :, :dy].numpy() + 0.3 * rng.standard_normal((P, n, dy))).astype(np.float32))
    spec = NetSpec.for_dims(dx, dy, latent=2, hidden=16)
    with torch_threads(1):       # a busy 2-core machine: one thread
        res = train_pairs(x[:, :32], y[:, :32], x[:, 32:], y[:, 32:], spec, [3, 4], batch_size=16, lr=1e-3,
                          max_epochs=20, patience=5, attribution=True)
    assert res.r2_x.shape == (P, dx) and res.r2_y.shape == (P, dy)
    with torch.no_grad():
        zx, zy = res.model.encode(x[:, 32:], y[:, 32:])
        xhat, yhat = res.model.mlp("dyx", zy).numpy(), res.model.mlp("dxy", zx).numpy()
    # float32 network outputs, float64 sums: 1e-5 covers the float32 rounding of the residuals
    np.testing.assert_allclose(res.r2_x, r2_per_dim(xhat, x[:, 32:].numpy()), rtol=0, atol=1e-5)
    np.testing.assert_allclose(res.r2_y, r2_per_dim(yhat, y[:, 32:].numpy()), rtol=0, atol=1e-5)
    # and cross_decoder_r2 in chunks gives the same as in one pass (chunk = 7 rows)
    r2x, r2y = cross_decoder_r2(res.model, x[:, 32:], y[:, 32:], chunk=7)
    # 1e-6: float32 matmuls on 7-row chunks round differently from one 32-row pass (BLAS blocking)
    np.testing.assert_allclose(r2x, res.r2_x, rtol=0, atol=1e-6)
    np.testing.assert_allclose(r2y, res.r2_y, rtol=0, atol=1e-6)
    with torch_threads(1):
        off = train_pairs(x[:, :32], y[:, :32], x[:, 32:], y[:, 32:], spec, [3, 4], batch_size=16, lr=1e-3,
                          max_epochs=20, patience=5)
    assert off.r2_x is None and off.r2_y is None


def test_attribution_off_changes_nothing_and_on_adds_arrays():
    b = attribution_benchmark(n=300, d_x=8, d_y=4, k=2, seed=0)
    kw = dict(hidden=16, max_epochs=8, num_threads=1)
    off = lmi.estimate(b.X, b.Y, seed=5, **kw)
    on = lmi.estimate(b.X, b.Y, seed=5, attribution=True, **kw)
    assert off.r2_x is None and off.r2_y is None
    assert on.mi == off.mi                       # no random draw, no change to training
    np.testing.assert_array_equal(on.pmi, off.pmi)
    assert on.r2_x.shape == (8,) and on.r2_y.shape == (4,)
    assert np.isnan(on.r2_x[b.x_constant])       # constant dim: NaN, not "well explained"
    assert np.isfinite(np.delete(on.r2_x, b.x_constant)).all() and (on.r2_x[np.isfinite(on.r2_x)] <= 1).all()


def test_attribution_ranks_the_informative_dims_on_top():
    """k=4 of 24 X dims share a latent with Y (plus 19 noise dims and a constant one): over 3
    seeds, >= 90% of the top-4 dims by R^2 are the informative ones, and so for Y's dims."""
    hits_x = hits_y = 0
    for seed in range(3):
        b = attribution_benchmark(n=1000, d_x=24, d_y=8, k=4, rho=0.8, seed=seed)
        r = lmi.estimate(b.X, b.Y, seed=seed, attribution=True, **FAST)
        assert r.status == "ok"
        assert np.isnan(r.r2_x[b.x_constant])
        assert np.isfinite(np.delete(r.r2_x, b.x_constant)).all() and np.isfinite(r.r2_y).all()
        top_x = np.argsort(-np.nan_to_num(r.r2_x, nan=-np.inf))[:4]
        top_y = np.argsort(-r.r2_y)[:4]
        hits_x += len(set(top_x) & set(b.x_informative))
        hits_y += len(set(top_y) & set(b.y_informative))
        # noise dims are explained by nothing: R^2 near 0 (0.05: sampling spread of R^2 on 500 rows)
        noise = np.setdiff1d(np.arange(24), np.r_[b.x_informative, b.x_constant])
        assert np.abs(r.r2_x[noise]).max() < 0.05, r.r2_x
    assert hits_x >= 11 and hits_y >= 11, (hits_x, hits_y)     # >= 90% of 12


def test_lmi_class_exposes_r2_and_saves_it(tmp_path):
    b = attribution_benchmark(n=300, d_x=8, d_y=4, k=2, seed=1)
    est = LMI(hidden=16, max_epochs=8, num_threads=1, attribution=True).fit(b.X, b.Y)
    ref = lmi.estimate(b.X, b.Y, seed=0, hidden=16, max_epochs=8, num_threads=1, attribution=True)
    np.testing.assert_array_equal(est.r2_x_, ref.r2_x)
    np.testing.assert_array_equal(est.r2_y_, ref.r2_y)
    est.save(tmp_path / "m.pt")
    back = LMI.load(tmp_path / "m.pt")
    np.testing.assert_array_equal(back.r2_x_, est.r2_x_)
    np.testing.assert_array_equal(back.r2_y_, est.r2_y_)
    plain = LMI(hidden=16, max_epochs=3, num_threads=1).fit(b.X, b.Y)
    assert plain.r2_x_ is None and plain.r2_y_ is None


def test_a_flagged_pair_has_all_nan_attribution():
    b = attribution_benchmark(n=300, d_x=8, d_y=4, k=2, seed=2)
    const_y = np.ones((300, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LMIWarning)
        good, bad = lmi.estimate_many([(b.X, b.Y), (b.X, const_y)], validate=False, attribution=True,
                                      hidden=16, max_epochs=5, num_threads=1)
    assert good.status == "ok" and bad.status == "degenerate"
    assert bad.r2_x.shape == (8,) and np.isnan(bad.r2_x).all() and np.isnan(bad.r2_y).all()
