"""Public API: estimate / estimate_many / train_and_encode; validation; end-to-end sanity."""
import numpy as np
import pytest

import lmi_distributed as lmi
from lmi_distributed.errors import ConfigError, InputError, LMIWarning
from lmi_distributed.estimators import api
from lmi_distributed.estimators.api import LMIResult, LMISettings
from ksg_reference import reference_pmi


def _ksg_pmi_bruteforce(zx, zy, *, k=3, noise=0.0, seed=None, backend="auto"):
    """Plain O(N^2) KSG-1 in bits (the tests' reference, ``ksg_reference``)."""
    return reference_pmi(zx, zy, k=k)


# one torch thread: two collapse when other processes share the CPU; results do not depend on it
FAST = dict(hidden=32, max_epochs=5, batch_size=128, num_threads=1)


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
    r = lmi.estimate(x, y, seed=4, view="latents", **FAST)     # the latents' pMI (canonical view: test_canonical_view)
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
    many = lmi.estimate_many([(x, y)], seeds=[4], view="latents", **FAST)[0]
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
    # batch invariance through the API, in float64: in float32, BLAS blocking differs between a
    # batch of 2 and of 1 (and with the thread count), latents can move by ~1e-4 and a KSG count
    # flip then moves MI by ~1e-2. In float64 the latents agree to ~1e-13 before their cast to
    # float32, i.e. to within one float32 ulp (<= 1e-6 for |z| < 8); the same neighbour counts
    # then give the same MI (1e-9 allows only summation-order noise).
    res64 = lmi.estimate_many([a, c], seeds=[10, 12], dtype="float64", **FAST)
    alone = lmi.estimate(c[0], c[1], seed=12, dtype="float64", **FAST)
    np.testing.assert_allclose(alone.zx, res64[1].zx, atol=1e-6)
    np.testing.assert_array_equal(alone.test_idx, res[2].test_idx)
    assert alone.epochs == res64[1].epochs and alone.best_epoch == res64[1].best_epoch
    assert alone.mi == pytest.approx(res64[1].mi, abs=1e-9)


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


# -- trust: statuses, warnings, degenerate input ---------------------------------------------
def test_degenerate_pair_does_not_fail_or_change_its_engine_batch():
    """validate=False: a constant X gets status 'degenerate' (NaN MI, all-NaN pMI) without
    training; a NaN Y gets 'failed'; the other pairs train exactly as in a batch without them
    (the bad pairs are left out of the stacked model, so the batch is the same computation)."""
    x, y = _dependent(n=200)
    x2, y2 = _dependent(n=200, seed=5)
    s = LMISettings(**FAST)
    y_nan = y.copy()
    y_nan[3, 0] = np.nan
    got = api.train_and_encode([x, np.full_like(x, 2.5), x2, x], [y, y, y2, y_nan], [0, 1, 2, 3], s,
                               validate=False)
    assert [r.status for r in got] == ["ok", "degenerate", "ok", "failed"]
    for r in got[1], got[3]:
        assert np.isnan(r.mi) and np.isnan(r.pmi).all() and r.pmi.shape == (200,) and r.epochs == 0
    assert got[1].detail.startswith("X is constant (1 distinct row among its 100 held-out rows)")
    assert got[3].detail.startswith("pair 3: Y has NaN or inf in 1 of 200 rows")
    ref = api.train_and_encode([x, x2], [y, y2], [0, 2], s)
    for r, g in zip(ref, (got[0], got[2])):
        assert g.detail == "" and g.mi == r.mi                  # the same batch: bit-identical
        np.testing.assert_array_equal(g.zx, r.zx)
    with pytest.raises(InputError, match=r"^pair 1: X is constant \(1 distinct row"):
        api.train_and_encode([x, np.full_like(x, 2.5)], [y, y], [0, 1], s)


def test_degenerate_input_raises_before_any_training(monkeypatch):
    import lmi_distributed.estimators.training as training

    def no_training(*a, **k):
        raise AssertionError("trained")

    monkeypatch.setattr(training, "train_pairs", no_training)
    x, y = _dependent()
    three = np.repeat(np.eye(3), 100, axis=0)                       # 3 distinct rows
    with pytest.raises(InputError, match=r"^pair 1: Y has only 3 distinct rows \(among its 150 held-out rows\); "
                                         r"KSG with k=3 needs at least k\+1=4"):
        lmi.estimate_many([(x, y), (x, three)], **FAST)             # pair 0 is fine, still no training
    xd, yd = np.repeat(x[:60], 5, axis=0), np.repeat(y[:60], 5, axis=0)   # every joint row 5 times
    with pytest.raises(InputError, match=r"held-out rows have k=3 or more exact duplicates of their \(X, Y\) "
                                         r"row.*remove or merge"):
        lmi.estimate(xd, yd, **FAST)


def test_diverged_training_is_nan_with_a_warning():
    x, y = _dependent()
    with pytest.warns(LMIWarning) as rec:
        r = lmi.estimate(x, y, lr=1e30, **FAST)
    assert r.status == "diverged" and np.isnan(r.mi) and np.isnan(r.pmi).all()
    assert r.detail == "non-finite training loss at epoch 0 (0-based)" and r.epochs == 1
    assert any("pair 0 (seed 0): status 'diverged', MI is NaN: non-finite training loss" in str(w.message)
               for w in rec)
    with pytest.warns(LMIWarning, match="never improved"):
        r = lmi.estimate(x, y, lr=10.0, **FAST)   # finite but exploding: worse than the init
    assert r.status == "diverged" and np.isnan(r.mi)
    assert r.detail.startswith("held-out loss never improved on the initial weights (initial ")


def test_collapsed_and_non_finite_latents_are_flagged(monkeypatch):
    """Latents are no longer zeroed when non-finite: 'diverged'; a side collapsed to a point
    (std <= 1e-5 x max|value| in every dim) is 'degenerate'. Pair 0 of the batch stays ok."""
    import torch

    import lmi_distributed.estimators.training as training
    real = training.encode_all

    def sabotaged(model, x, y):
        zx, zy = real(model, x, y)
        zx, zy = zx.clone(), zy.clone()
        zx[1] = 3.0 + 1e-7 * torch.arange(x.shape[1], dtype=zx.dtype)[:, None]   # collapsed X side
        zy[2, 5, 0] = float("nan")
        return zx, zy

    monkeypatch.setattr(training, "encode_all", sabotaged)
    x, y = _dependent(n=200)
    with pytest.warns(LMIWarning) as rec:
        got = lmi.estimate_many([(x, y)] * 3, seeds=[0, 1, 2], **FAST)
    assert [r.status for r in got] == ["ok", "degenerate", "diverged"]
    assert "the X latents collapsed to a point" in got[1].detail
    assert got[2].detail == "non-finite Y latents in 1 of 100 held-out rows (training diverged)"
    assert np.isfinite(got[0].mi) and np.isnan(got[1].mi) and np.isnan(got[2].mi)
    assert len([w for w in rec if "status" in str(w.message)]) == 2


def test_duplicated_joint_rows_are_refused_whatever_the_noise():
    """Every joint row 5 times: refused before training, with or without tie-breaking jitter.
    Jitter only hides such ties (the copies stay each other's nearest neighbours at ~1e-10): on
    INDEPENDENT data with every row repeated 4 times, KSG with latentmi's 1e-10 noise reports
    about 8 bits (truth 0); see estimators/diagnostics.py."""
    x, y = _dependent()
    xd, yd = np.repeat(x[:60], 5, axis=0), np.repeat(y[:60], 5, axis=0)
    for noise in (0.0, 1e-300, 1e-10):
        with pytest.raises(InputError, match=r"exact duplicates of their \(X, Y\) row.*remove or merge"):
            lmi.estimate(xd, yd, ksg_noise=noise, **FAST)
    # the engine's path (validate=False) records it as the pair's status instead
    with pytest.warns(LMIWarning, match="exact duplicates"):
        r = lmi.estimate_many([(xd, yd)], validate=False, ksg_noise=1e-10, **FAST)[0]
    assert r.status == "degenerate" and np.isnan(r.mi)


def test_ksg_with_jitter_on_duplicated_rows_is_inflated():
    """Why the check above ignores the noise: KSG itself, on independent data whose rows are each
    repeated 4 times, gives several bits with latentmi's jitter (the truth is 0)."""
    from lmi_distributed.estimators.ksg import ksg_mi

    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((250, 2)), rng.standard_normal((250, 2))
    assert abs(ksg_mi(x, y)) < 0.1                               # no copies: about 0 (KSG spread at N=250)
    assert ksg_mi(np.repeat(x, 4, 0), np.repeat(y, 4, 0), noise=1e-10, seed=0) > 5.0


@pytest.mark.parametrize("scale", [1e-200, 1e-30, 1e30, 1e200])
def test_mi_is_scale_free(scale):
    """Same seed, inputs times 1e-200..1e200: the same estimate, exactly. The z-scores are
    bit-identical (tests/estimators/test_preprocess.py::test_zscore_is_scale_free), so training and KSG see
    the same float32 arrays and the same computation in this process."""
    x, y = _dependent(n=200)
    ref = lmi.estimate(x, y, seed=3, **FAST)
    r = lmi.estimate(x * scale, y * scale, seed=3, **FAST)
    assert r.status == "ok" and r.mi == ref.mi


def test_default_path_statuses_ok_and_no_warning():
    x, y = _dependent(n=200)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = lmi.estimate(x, y, **FAST)
    assert r.status == "ok" and r.detail == "" and np.isfinite(r.mi)
    assert set(api.STATUSES) == {"ok", "degenerate", "diverged", "failed"}


def test_estimate_many_validate_false_flags_instead_of_raising():
    """The engine calls estimate_many on a batch of pairs of several shapes: validate=False
    turns bad pairs into statuses (with LMIWarnings) and trains the rest as usual."""
    x, y = _dependent(n=200)
    x2, y2 = _dependent(n=240, seed=3)
    y_inf = y.copy()
    y_inf[0, 0] = np.inf
    with pytest.warns(LMIWarning) as rec:
        got = lmi.estimate_many([(x, y), (np.zeros_like(x), y), (x2, y2), (x, y_inf)], seeds=[0, 1, 2, 3],
                                validate=False, **FAST)
    assert [r.status for r in got] == ["ok", "degenerate", "ok", "failed"]
    assert got[3].detail == "pair 3: Y has NaN or inf in 1 of 200 rows (rows 0)" and got[3].pmi.shape == (200,)
    assert [str(w.message)[:16] for w in rec] == ["pair 1 (seed 1):", "pair 3 (seed 3):"]
    ref = lmi.estimate_many([(x, y), (x2, y2)], seeds=[0, 2], **FAST)
    assert (got[0].mi, got[2].mi) == (ref[0].mi, ref[1].mi)     # same batches: bit-identical
    with pytest.raises(InputError, match=r"^pair 1: X is constant"):
        lmi.estimate_many([(x, y), (np.zeros_like(x), y)], **FAST)
