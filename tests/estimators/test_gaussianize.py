"""Marginal Gaussianisation of the latents (estimators/gaussianize.py, ``ksg_gaussianize=True``):
average ranks with ties kept, each dimension's robust scale kept, out-of-sample values placed between their reference neighbours, the setting off by
default (the paper's estimator and fingerprints unchanged), and with it on the stored latents, the
KSG estimate, ``LMI.transform`` / ``score_samples``, save/load and the permutation null agree."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.special import ndtri
from scipy.stats import rankdata

import lmi_distributed as lmi
from lmi_distributed.estimators.gaussianize import gaussianize, robust_scale
from lmi_distributed.estimators.estimator import LMI
from lmi_distributed.estimators.ksg import ksg_mi
from lmi_distributed.estimators.permutation import result_latent_null
from lmi_distributed.synthetic import rotated_warped_gaussian

TINY = dict(hidden=16, max_epochs=6, lr=1e-3, num_threads=1, view="latents")   # the latents (canonical view: test_canonical_view)


def test_robust_scale_fallbacks():
    tied = np.array([[0.0, 2.0]] * 4 + [[1.0, 2.0]])     # IQR 0 (4 of 5 tied) / a constant column
    np.testing.assert_allclose(robust_scale(tied), [np.std([0, 0, 0, 0, 1.0]), 1.0])


def test_reference_rows_get_their_average_ranks_ties_kept():
    rng = np.random.default_rng(0)
    ref = np.column_stack([rng.standard_normal(200), rng.integers(0, 5, 200).astype(float)])  # col 1: ties
    ref[:, 0] = 5.0 * ref[:, 0] ** 3            # a heavy-tailed column with bulk scale ~5 * 0.7
    out = gaussianize(ref)
    scale = robust_scale(ref)
    for j in range(2):
        expect = ndtri(rankdata(ref[:, j], method="average") / 201) * scale[j]
        np.testing.assert_allclose(out[:, j], expect, rtol=0, atol=1e-12)
    q1, q3 = np.percentile(ref[:, 0], [25, 75])
    assert scale[0] == pytest.approx((q3 - q1) / 1.3489795, rel=1e-6)
    # the output's bulk keeps the column's bulk scale (its IQR), its tails are normal, not cubic
    o1, o3 = np.percentile(out[:, 0], [25, 75])
    assert (o3 - o1) == pytest.approx(q3 - q1, rel=0.05)     # rank quantiles of 200 rows: ~1/200 steps
    assert np.abs(out[:, 0]).max() < 3.0 * scale[0] < np.abs(ref[:, 0]).max()
    # equal inputs stay equal (the tie caution still sees duplicated latents); order is kept
    assert len(np.unique(out[:, 1])) == len(np.unique(ref[:, 1])) == 5
    assert (np.diff(out[np.argsort(ref[:, 0]), 0]) > 0).all()


def test_reference_rows_mapped_as_new_rows_give_the_same_floats():
    """``gaussianize(ref)`` ranks all columns at once (rankdata); the same rows passed as new rows
    take the per-column interpolation. Both must give the same floats bit for bit (the held-out
    rows and any other copy of them land on one score), ties and float32 input included."""
    rng = np.random.default_rng(3)
    for ref in (rng.standard_normal((500, 6)).astype(np.float32),
                np.round(rng.standard_normal((400, 5)), 1),                # many ties per column
                rng.integers(0, 3, (60, 4)).astype(float)):                # three values per column
        np.testing.assert_array_equal(gaussianize(ref), gaussianize(ref, ref.copy()))


def test_out_of_sample_values_are_interpolated_between_reference_ranks():
    ref = np.array([[0.0], [1.0], [1.0], [3.0]])        # average ranks 1, 2.5, 2.5, 4
    z = np.array([[-5.0], [0.5], [1.0], [2.0], [9.0]])
    ranks = np.array([1.0, 1.75, 2.5, 3.25, 4.0])        # clamped; halfway 1..2.5; the tie; ...; clamped
    np.testing.assert_allclose(gaussianize(ref, z)[:, 0], ndtri(ranks / 5) * robust_scale(ref)[0],
                               rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="z must be"):
        gaussianize(ref, np.zeros((2, 3)))


def test_rounding_level_differences_move_scores_by_rounding_level_amounts():
    # the same rows encoded in another batch layout differ by float32 rounding (~1e-7 relative):
    # the map is continuous: their scores move by (shift / gap to the next reference value) of a
    # rank step, never by a whole step (>= 0.017 between neighbouring ranks of 150)
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((150, 3)).astype(np.float32).astype(np.float64)
    wobble = ref * (1 + 1e-7 * rng.choice([-1.0, 1.0], size=ref.shape))
    moved = np.abs(gaussianize(ref, wobble) - gaussianize(ref))
    assert 0 < moved.max() < 1e-3            # measured 3.6e-5 (the closest pair of values)
    assert np.median(moved) < 1e-6            # typical: rounding-level (measured 7e-8)


def test_on_by_default_paper_turns_it_off_and_out_of_the_fingerprint():
    s = lmi.LMISettings()
    assert s.ksg_gaussianize is True and s.numbers_dump()["ksg_gaussianize"] is True
    p = lmi.LMISettings.paper()
    assert p.ksg_gaussianize is False and "ksg_gaussianize" not in p.numbers_dump()
    assert lmi.LMISettings(**lmi.PAPER) == p


def test_estimate_uses_the_mapped_held_out_latents_everywhere(tmp_path):
    X, Y, _ = rotated_warped_gaussian(400, 6, 1, 1.0, seed=3)
    off = LMI(random_state=5, ksg_gaussianize=False, **TINY).fit(X, Y)
    on = LMI(random_state=5, ksg_gaussianize=True, **TINY).fit(X, Y)
    assert off.status_ == on.status_ == "ok"
    te, tr = on.test_idx_, on.train_idx_
    # same training (the map comes after it): the stored latents are the raw ones, mapped by the
    # held-out rows' empirical CDFs (float32 storage: relative 1e-6)
    for raw, mapped in ((off.result_.zx, on.result_.zx), (off.result_.zy, on.result_.zy)):
        np.testing.assert_allclose(mapped[te], gaussianize(raw[te]), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(mapped[tr], gaussianize(raw[te], raw[tr]), rtol=1e-6, atol=1e-7)
    # the estimate is KSG on exactly those stored held-out latents
    assert on.mi_ == pytest.approx(ksg_mi(on.result_.zx[te].astype(np.float64),
                                          on.result_.zy[te].astype(np.float64), k=3), abs=1e-12)
    assert on.mi_ != off.mi_
    # new rows go through the same map: transform of the fitted rows gives the stored latents
    zx, zy = on.transform(X, Y)
    np.testing.assert_array_equal(zx, on.result_.zx)
    np.testing.assert_array_equal(zy, on.result_.zy)
    scores = on.score_samples(X[:7], Y[:7])
    path = tmp_path / "cop.pt"
    on.save(path)
    again = LMI.load(path)
    np.testing.assert_array_equal(again.score_samples(X[:7], Y[:7]), scores)
    # the permutation null runs on the stored (mapped) held-out latents and stays centred near 0
    null = result_latent_null(on.result_, n_permutations=20, seed=1)
    assert null.shape == (20,) and np.isfinite(null).all()
    assert abs(float(np.mean(null))) < 0.2      # independent shuffles of 200 rows: |mean| << 1 bit
