"""Tied latents (discrete or duplicated input) give an ok estimate WITH a caution, never silently.

Background (estimators/diagnostics.py): with ksg_noise=0 (the paper's estimator, ``lmi.PAPER``), KSG's
strict counts leave out points tied at exactly the k-th joint distance, so MI comes out too high on
discrete data (digits benchmark: 0.64 bits against a truth of 0.53). The default jitter
(ksg_noise=1e-10, seeded) breaks such ties, so the default gives no caution.
"""
import warnings

import numpy as np
import pytest

import lmi_distributed as lmi
from lmi_distributed.errors import LMIWarning
from lmi_distributed.estimators import diagnostics

FAST = dict(max_epochs=2, patience=2, hidden=16, batch_size=64)


def _tied_pair(n=240, distinct=40, seed=0):
    """X: ``distinct`` random rows, each repeated n/distinct times; Y: continuous, X-dependent."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((distinct, 4))
    X = np.repeat(base, n // distinct, axis=0)
    Y = X[:, :2] + 0.5 * rng.standard_normal((n, 2))
    return X, Y


def test_marginal_ties_counts_tied_rows_per_side():
    rng = np.random.default_rng(1)
    zy = rng.standard_normal((100, 3))
    assert diagnostics.marginal_ties(rng.standard_normal((100, 3)), zy) == ""
    zx = rng.standard_normal((100, 3))
    zx[1] = zx[0]                       # 2 of 100 rows tied: below the 5% threshold
    assert diagnostics.marginal_ties(zx, zy) == ""
    zx[2:6] = zx[7]                     # rows 2-5 and 7 equal: 7 tied rows in all, >= 5%
    msg = diagnostics.marginal_ties(zx, zy)
    assert "7 of 100 held-out X latent rows" in msg and "Y latent" not in msg
    assert "ksg_noise=1e-10" in msg


def test_tied_input_gives_caution_and_warning_without_jitter():
    X, Y = _tied_pair()
    with pytest.warns(LMIWarning, match="held-out X latent rows equal another row"):
        r = lmi.estimate(X, Y, seed=0, ksg_noise=0.0, **FAST)
    assert r.status == "ok" and np.isfinite(r.mi)
    assert r.detail.startswith("caution:")


def test_ksg_noise_breaks_the_ties_and_the_caution():
    X, Y = _tied_pair()
    assert lmi.LMISettings().ksg_noise == 1e-10               # the default jitter
    with warnings.catch_warnings():
        warnings.simplefilter("error", LMIWarning)          # no warning at all
        r = lmi.estimate(X, Y, seed=0, **FAST)
        paper = lmi.estimate(X, Y, seed=0, **{**lmi.PAPER, "ksg_noise": 1e-10}, **FAST)
    assert r.status == paper.status == "ok" and r.detail == paper.detail == ""


def test_continuous_input_has_no_caution():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((240, 4))
    Y = X[:, :2] + 0.5 * rng.standard_normal((240, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LMIWarning)
        r = lmi.estimate(X, Y, seed=0, **FAST)
    assert r.status == "ok" and r.detail == ""


def test_pairwise_row_carries_the_caution():
    X, Y = _tied_pair()
    with pytest.warns(LMIWarning):
        df = lmi.pairwise({"a": X, "b": Y}, n_permutations=0, seed=0, ksg_noise=0.0, **FAST)
    row = df.iloc[0]
    assert row["status"] == "ok" and row["detail"].startswith("replicate 0: caution:")
