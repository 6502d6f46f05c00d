"""Linear canonical views of the inputs, compared with the latents as what KSG reads on the
held-out rows (``view="select"``).

Why: the learned latents are not always the best thing to hand KSG. When X and Y are Gaussian up
to a map of each coordinate and the dependence lives in a few of many equally scaled coordinates
(BMI's "sparse" tasks: 2 of 25 dims), the top canonical variates of the inputs' normal scores hold
all of it in 2 + 2 dims, where KSG is nearly unbiased; the 8 + 8 latent dims, which also spend
capacity on reconstruction, lose a quarter of it (docs/estimator.md, session 7). When the
dependence is not linear in the normal scores (a shared heavy-tailed scale, a spiral) the latents
win. Neither is known in advance, so both are measured: the canonical view's width on the
training rows, the comparison with the latents on the held-out rows (below).

A canonical view, fitted on rows R (the training rows):

1. every input column to normal scores by its empirical CDF on R (:func:`.gaussianize.gaussianize`
   with R as reference; ties stay tied, new rows are interpolated);
2. linear CCA of the scores on R (ridge ``RIDGE`` times the largest eigenvalue added to each
   covariance); the view of width m is the top m canonical variates of each side (unit variance
   on R). Each side's map depends on that side's rows only.

The choice (:func:`select_view`), on the training rows: they are split in two halves A and B
(seeded); each width m in ``widths`` (1, 2, 4, ... up to the latent width and min(d_x, d_y)) gets a
*score*: CCA fitted on A, KSG on B's top m variates, and the reverse, averaged (cross-fitted: a
width whose canonical correlations are noise scores about 0, not its in-sample correlation). The
best-scoring width (the smaller on a tie) is the canonical view, if its score clears a noise gate
(:data:`GATE_Z`); its map is refitted on all training rows.

The estimate (``estimators.api``): KSG on the held-out rows of the latents and of the canonical
view; the larger is reported (``LMIResult.view`` says which). Both are KSG estimates of I(f(X);
g(Y)) for maps f, g fitted on other rows, so both are lower bounds of I(X;Y) in expectation up to
KSG's bias, and the larger is the tighter; taking it adds a selection bias of the order of KSG's
noise when the two are close (measured: docs/estimator.md, session 7). The latent permutation null
takes the same maximum on every permutation of the held-out Y rows (the same permutation of both
views), so the p-value of the reported statistic stays exact (:mod:`.permutation`). The latents'
own score on the training rows cannot take part in the choice: the network was fitted to those
rows and its in-sample KSG reads 0.4-0.5 bits high on BMI's sparse tasks (measured), so only the
held-out rows can compare the two.

Units and shapes: inputs (n, d) float; views (n, m) float64 in canonical units (unit variance on
the fitting rows). Scores in bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .gaussianize import gaussianize
from .ksg import add_noise
from .seeding import derive_seed

__all__ = ["CanonicalMap", "fit_canonical", "view_widths", "select_view", "ksg_input", "GATE_Z", "RIDGE"]

#: a canonical view is compared with the latents only when its best cross-fitted score exceeds
#: GATE_Z / sqrt(rows of a half) bits (0.089 bits at 500 rows): KSG's spread on independent
#: variables at that size is ~0.02-0.03 bits, so noise rarely passes, while every dependent case of
#: the suite where the view helps scores 0.3 bits or more. Without the gate, taking the larger of two
#: estimates on independent pairs raised the median |error| from 0.019 to 0.038 bits (docs/estimator.md).
GATE_Z = 2.0
#: ridge on each side's covariance of normal scores, relative to its largest eigenvalue
RIDGE = 1e-3


@dataclass(frozen=True)
class CanonicalMap:
    """A fitted canonical view. ``ref_x`` (n, d_x) / ``ref_y`` (n, d_y): the fitting rows (the
    normal-score reference); ``mean_x`` / ``mean_y``: their scores' means; ``a`` (d_x, r) /
    ``b`` (d_y, r): the canonical directions, r = min(d_x, d_y), strongest first; ``rho`` (r,):
    the canonical correlations on the fitting rows."""
    ref_x: np.ndarray
    ref_y: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rho: np.ndarray

    def transform(self, x: np.ndarray, y: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """The top ``width`` canonical variates of rows ``x`` (n, d_x) and ``y`` (n, d_y):
        two (n, width) float64 arrays."""
        u = (gaussianize(self.ref_x, x) - self.mean_x) @ self.a[:, :width]
        v = (gaussianize(self.ref_y, y) - self.mean_y) @ self.b[:, :width]
        return u, v


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 0.0) + RIDGE * max(float(w.max()), 1e-300)
    return (v / np.sqrt(w)) @ v.T


def fit_canonical(x: np.ndarray, y: np.ndarray, *, variates: bool = False):
    """Linear CCA of the normal scores of ``x`` (n, d_x) and ``y`` (n, d_y), fitted on these rows.
    Returns the :class:`CanonicalMap`; with ``variates=True`` also the fitting rows' canonical
    variates (u (n, r), v (n, r); what ``transform`` gives for these rows, without mapping them again)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    sx, sy = gaussianize(x), gaussianize(y)
    mx, my = sx.mean(0), sy.mean(0)
    sx, sy = sx - mx, sy - my
    n = sx.shape[0]
    wx, wy = _inv_sqrt(sx.T @ sx / n), _inv_sqrt(sy.T @ sy / n)
    u, rho, vt = np.linalg.svd(wx @ (sx.T @ sy / n) @ wy, full_matrices=False)
    fit = CanonicalMap(x, y, mx, my, wx @ u, wy @ vt.T, rho)
    return (fit, sx @ fit.a, sy @ fit.b) if variates else fit


def view_widths(d_x: int, d_y: int, n_train: int, latent_dim: int) -> tuple[int, ...]:
    """The canonical widths :func:`select_view` tries: 1, 2, 4, ... up to ``latent_dim`` and
    min(d_x, d_y), none at all when either side has more columns than a quarter of the training
    rows (a cross-fit half would hold fewer than twice the columns: CCA there fits noise, and
    the d^3 fit costs more than it can give)."""
    r = min(d_x, d_y, latent_dim)
    if max(d_x, d_y) > n_train // 4 or r < 1:
        return ()
    widths = [1 << i for i in range(r.bit_length()) if (1 << i) <= r]
    if widths[-1] != r:
        widths.append(r)
    return tuple(widths)


def select_view(x_tr: np.ndarray, y_tr: np.ndarray, *, widths: tuple[int, ...], k: int, seed: int,
                ksg_mi: Callable[[np.ndarray, np.ndarray], float]) -> tuple[int, dict[int, float]]:
    """The canonical width to compare with the latents, chosen on the training rows only.

    ``x_tr`` (n, d_x) / ``y_tr`` (n, d_y): the training rows' inputs; ``widths``: canonical widths
    to try (:func:`view_widths`); ``ksg_mi(u, v) -> bits``: the KSG the caller uses (its k and
    jitter); ``seed``: the halves. Returns (width, scores): the width chosen (0 when ``widths`` is
    empty, a half would hold k + 1 rows or fewer, or no score clears ``GATE_Z / sqrt(half rows)``)
    and every width's cross-fitted score in bits."""
    n = x_tr.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    halves = (perm[: n // 2], perm[n // 2:])
    if not widths or min(len(h) for h in halves) <= k + 1:
        return 0, {}
    fits = [fit_canonical(x_tr[h], y_tr[h]) for h in halves]
    top = max(widths)
    views = [fit.transform(x_tr[other], y_tr[other], top) for fit, other in zip(fits, halves[::-1])]
    scores = {m: float(np.mean([ksg_mi(u[:, :m], v[:, :m]) for u, v in views])) for m in widths}
    best = max(scores, key=lambda w: (scores[w], -w))
    if scores[best] < GATE_Z / np.sqrt(min(len(h) for h in halves)):
        return 0, scores          # no width measurably above noise: the latents alone
    return best, scores


def ksg_input(cx_te: np.ndarray, cy_te: np.ndarray, noise: float, seed: int) -> list[np.ndarray]:
    """What KSG reads of a canonical view: its held-out variates (n_test, width) as float64 plus
    the pair's seeded uniform [0, ``noise``) jitter (``derive_seed(seed, "view-ksg")``); the
    estimate (``estimators.api``) and the permutation null (:mod:`.permutation`) read the same."""
    return add_noise([np.asarray(cx_te, np.float64), np.asarray(cy_te, np.float64)], noise,
                     derive_seed(seed, "view-ksg"))
