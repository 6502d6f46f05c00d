"""Bad and degenerate input through the public API: one clear error naming the culprit, or a
result whose status says why it is not a number -- never a large finite MI.

Errors are raised before any training: every "raises" case runs with ``train_pairs`` patched to
fail the test if it is reached.
"""
from __future__ import annotations

import numpy as np
import pytest

import lmi_distributed as lmi
from lmi_distributed.errors import ConfigError, InputError, LMIWarning
from lmi_distributed.estimators import api, ksg
from lmi_distributed.estimators.permutation import latent_permutation_null
from lmi_distributed.estimators.settings import LMISettings

# tiny networks, one torch thread (two collapse when other processes share the CPU)
FAST = dict(hidden=16, max_epochs=4, batch_size=128, num_threads=1)
N = 300
_rng = np.random.default_rng(0)
X = _rng.normal(size=(N, 3))
Y = X[:, :2] + 0.3 * _rng.normal(size=(N, 2))
THREE = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])      # three distinct rows


def _with(a, rows, value):
    a = a.copy()
    a[rows] = value
    return a


def _est(x, y, **kw):
    return lambda: lmi.estimate(x, y, **{**FAST, **kw})


RAISES = [
    # (id, call, error class, message regex)
    ("constant X", _est(np.full((N, 3), 4.2), Y), InputError,
     r"^X is constant \(1 distinct row among its 150 held-out rows\); KSG with k=3 needs at least k\+1=4"),
    ("constant Y", _est(X, np.full((N, 2), -1.0)), InputError, r"^Y is constant \(1 distinct row"),
    ("both constant", _est(np.ones((N, 3)), np.ones((N, 2))), InputError, r"^X is constant"),
    ("all-zero X", _est(np.zeros((N, 3)), Y), InputError, r"^X is constant"),
    ("X with 2 distinct rows", _est(np.repeat([[0.0, 1, 2], [3, 4, 5]], N // 2, axis=0), Y), InputError,
     r"^X has only 2 distinct rows \(among its 150 held-out rows\)"),
    ("Y with 3 distinct rows", _est(X, np.tile(THREE, (N // 3, 1))), InputError,
     r"^Y has only 3 distinct rows \(among its 150 held-out rows\)"),
    ("one bool column (2 values)", _est(X[:, :1] > 0, Y), InputError, r"^X has only 2 distinct rows"),
    ("duplicate joint rows", _est(np.repeat(X[:60], 5, axis=0), np.repeat(Y[:60], 5, axis=0)), InputError,
     r"held-out rows have k=3 or more exact duplicates of their \(X, Y\) row.*remove or merge"),
    ("duplicate joint rows, jitter on", _est(np.repeat(X[:60], 5, axis=0), np.repeat(Y[:60], 5, axis=0),
                                             ksg_noise=1e-10), InputError,
     r"held-out rows have k=3 or more exact duplicates of their \(X, Y\) row.*remove or merge"),
    ("NaN in X", _est(_with(X, 7, np.nan), Y), InputError, r"^X has NaN or inf in 1 of 300 rows \(rows 7\)"),
    ("inf in Y", _est(X, _with(Y, [1, 2], -np.inf)), InputError, r"^Y has NaN or inf in 2 of 300 rows \(rows 1, 2\)"),
    ("complex X", _est(X.astype(complex), Y), InputError, r"^X must be real numeric, got dtype complex128"),
    ("string Y", _est(X, Y.astype(str)), InputError, r"^Y must be real numeric, got dtype <U"),
    ("object X", _est(X.astype(object), Y), InputError, r"^X must be real numeric, got dtype object"),
    ("datetime Y", _est(X, np.zeros((N, 2), "datetime64[s]")), InputError, r"^Y must be real numeric"),
    ("ragged X", _est([[1.0, 2.0], [3.0]] * 150, Y), InputError, r"^X is not an array of numbers"),
    ("1-D X", _est(X[:, 0], Y), InputError, r"^X must be a 2-D array .*shape \(300,\).*reshape\(-1, 1\)"),
    ("3-D Y", _est(X, Y.reshape(N, 2, 1)), InputError, r"^Y must be a 2-D array .*\(300, 2, 1\)"),
    ("empty", _est(np.zeros((0, 3)), np.zeros((0, 2))), InputError, r"^too few samples: N=0, LMI needs N >= 8"),
    ("no features", _est(np.zeros((N, 0)), Y), InputError, r"^X has no features \(shape \(300, 0\)\)"),
    ("mismatched N", _est(X, Y[:-1]), InputError, r"X has 300, Y has 299"),
    ("too few rows", _est(X[:7], Y[:7]), InputError, r"^too few samples: N=7, LMI needs N >= 8"),
    ("k too large for N", _est(X, Y, k=200), InputError, r"^too few samples: N=300, LMI needs N >= 402 \(k=200"),
    ("estimate_many names the pair", lambda: lmi.estimate_many([(X, Y), (X, np.zeros((N, 2)))], **FAST),
     InputError, r"^pair 1: Y is constant"),
    ("estimate_many non-pair", lambda: lmi.estimate_many([X], **FAST), InputError,
     r"^pair 0: expected an \(X, Y\) tuple, got ndarray"),
    ("negative seed", lambda: lmi.estimate(X, Y, seed=-1, **FAST), InputError, r"non-negative"),
    ("train_and_encode validates", lambda: api.train_and_encode([X, X], [Y, np.ones((N, 2))], [0, 1],
                                                               LMISettings(**FAST)),
     InputError, r"^pair 1: Y is constant"),
    ("lr=inf", _est(X, Y, lr=float("inf")), ConfigError, r"^LMISettings\.lr: expected .*\(got inf\)"),
    ("lr=nan", _est(X, Y, lr=float("nan")), ConfigError, r"LMISettings\.lr"),
    ("unknown setting", _est(X, Y, epochs=3), ConfigError, r"^unknown setting 'epochs'; valid settings: latent_dim"),
    ("k=0", _est(X, Y, k=0), ConfigError, r"^LMISettings\.k: expected"),
    ("bool k", _est(X, Y, k=True), ConfigError, r"^LMISettings\.k: expected an integer"),
    ("batch_size=0", lambda: LMISettings(batch_size=0), ConfigError, r"^LMISettings\.batch_size"),
    ("ksg_pmi ties", lambda: ksg.ksg_pmi(np.repeat(X[:50], 4, 0), np.repeat(Y[:50], 4, 0)), InputError,
     r"^200 of 200 points have their k-th \(k=3\) joint neighbour at distance 0.*noise > 0"),
    ("ksg_pmi constant", lambda: ksg.ksg_pmi(np.zeros((50, 2)), np.zeros((50, 2))), InputError,
     r"^50 of 50 points have their k-th"),
    ("ksg_pmi complex", lambda: ksg.ksg_pmi(X.astype(complex), Y), InputError, r"^zx must be numeric, got dtype complex128"),
    ("ksg_pmi k >= N", lambda: ksg.ksg_pmi(X[:3], Y[:3], k=3), InputError, r"KSG needs more samples than k: got N=3 with k=3"),
    ("ksg_pmi 1-D", lambda: ksg.ksg_pmi(X[:, 0], Y), InputError, r"^zx must be a 2-D array"),
    ("ksg_pmi bad ties option", lambda: ksg.ksg_pmi(X, Y, ties="ignore"), InputError, r"ties must be one of"),
    ("oos_pmi query tied to reference", lambda: ksg.oos_pmi(np.repeat(X[:50], 4, 0), np.repeat(Y[:50], 4, 0),
                                                            X[:5], Y[:5]), InputError,
     r"^5 of 5 queries have their k-th \(k=3\) joint neighbour at distance 0"),
    ("oos_pmi feature mismatch", lambda: ksg.oos_pmi(X, Y, X[:5, :2], Y[:5]), InputError,
     r"query feature counts \(2, 2\) differ from reference feature counts \(3, 2\)"),
    ("oos_pmi complex query", lambda: ksg.oos_pmi(X, Y, X[:5].astype(complex), Y[:5]), InputError,
     r"^query_x must be numeric"),
    ("null ties", lambda: latent_permutation_null(np.repeat(X[:50], 4, 0), np.repeat(Y[:50], 4, 0),
                                                  n_permutations=2, seed=0), InputError,
     r"^zx and zy both have a row repeated more than k=3 times"),
    ("null NaN", lambda: latent_permutation_null(_with(X, 0, np.nan), Y, n_permutations=2, seed=0), InputError,
     r"^zx contains NaN or infinite values"),
    ("null negative count", lambda: latent_permutation_null(X, Y, n_permutations=-1, seed=0), InputError,
     r"n_permutations must be an integer >= 0, got -1"),
    ("null complex", lambda: latent_permutation_null(X, Y.astype(complex), n_permutations=2, seed=0), InputError,
     r"^zy must be numeric"),
]


@pytest.fixture
def no_training(monkeypatch):
    import lmi_distributed.estimators.training as training

    def refuse(*a, **k):
        raise AssertionError("training started before the input was refused")

    monkeypatch.setattr(training, "train_pairs", refuse)


@pytest.mark.parametrize("call,exc,match", [c[1:] for c in RAISES], ids=[c[0] for c in RAISES])
def test_bad_input_raises_before_any_work(call, exc, match, no_training):
    with pytest.raises(exc, match=match):
        call()


def _engine_batch(x, y, **kw):
    """The engine's path: pair 0 is fine, pair 1 is the case; returns pair 1's result and
    checks pair 0 stayed ok."""
    def run():
        res = api.train_and_encode([X, x], [Y, y], [0, 1], LMISettings(**{**FAST, **kw}), validate=False)
        assert res[0].status == "ok" and np.isfinite(res[0].mi)
        return res[1]
    return run


FLAGGED = [
    # (id, call returning one LMIResult, status, detail regex)
    ("engine: constant X", _engine_batch(np.zeros((N, 3)), Y), "degenerate", r"^X is constant"),
    ("engine: 3 distinct Y rows", _engine_batch(X, np.repeat(THREE, N // 3, axis=0)),
     "degenerate", r"^Y has only 3 distinct rows"),
    ("engine: duplicate joint rows", _engine_batch(np.repeat(X[:60], 5, 0), np.repeat(Y[:60], 5, 0)),
     "degenerate", r"exact duplicates of their \(X, Y\) row"),
    ("engine: NaN in Y", _engine_batch(X, _with(Y, 3, np.nan)), "failed", r"^pair 1: Y has NaN or inf in 1 of 300"),
    ("engine: inf in X", _engine_batch(_with(X, 4, np.inf), Y), "failed", r"^pair 1: X has NaN or inf"),
    ("lr=1e30 diverges", lambda: lmi.estimate(X, Y, lr=1e30, **FAST), "diverged",
     r"^non-finite training loss at epoch 0 \(0-based\)$"),
    ("lr=10 never improves", lambda: lmi.estimate(X, Y, lr=10.0, **FAST), "diverged",
     r"^held-out loss never improved on the initial weights"),
]


@pytest.mark.parametrize("call,status,match", [c[1:] for c in FLAGGED], ids=[c[0] for c in FLAGGED])
def test_untrustworthy_result_is_flagged_nan(call, status, match, recwarn):
    r = call()
    assert r.status == status
    assert np.isnan(r.mi) and np.isnan(r.pmi).all() and r.pmi.shape == (N,)
    import re
    assert re.search(match, r.detail), r.detail


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_huge_and_tiny_scales_give_the_unscaled_estimate(scale):
    ref = lmi.estimate(X, Y, **FAST)
    r = lmi.estimate(X * scale, Y * scale, **FAST)
    assert r.status == "ok" and r.mi == ref.mi          # exact: bit-identical z-scores (test_preprocess)


def test_bool_and_int_inputs_are_estimated():
    bits = _rng.random((N, 8)) < 0.5                     # 8 binary columns: H(X) <= 8 bits
    y = bits[:, :2] + 0.3 * _rng.normal(size=(N, 2))
    # 8 binary columns give tied X latents: without the default jitter (ksg_noise=0, the paper's)
    # an ok estimate, flagged with the tie caution
    with pytest.warns(LMIWarning, match="held-out X latent rows equal another row") as rec:
        rb = lmi.estimate(bits, y, ksg_noise=0.0, **FAST)
        ri = lmi.estimate(bits.astype(np.int64) * 7, y, ksg_noise=0.0, **FAST)
    assert all("caution" in str(w.message) for w in rec)  # no other warning
    assert rb.status == "ok" and -1.0 < rb.mi < 8.0      # bounded by H(X); KSG bias may dip below 0
    assert rb.detail.startswith("caution:")
    assert ri.mi == rb.mi                                # z-scores of 7*int == those of bool


class _no_lmi_warning:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("error", LMIWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def test_every_non_ok_result_warns_naming_pair_and_status():
    with pytest.warns(LMIWarning) as rec:
        res = lmi.estimate_many([(X, Y), (X, Y)], seeds=[7, 8], **FAST, lr=1e30)
    assert [r.status for r in res] == ["diverged", "diverged"]
    assert [str(w.message) for w in rec] == [f"pair {i} (seed {7 + i}): status 'diverged', MI is NaN: "
                                             "non-finite training loss at epoch 0 (0-based)" for i in (0, 1)]
