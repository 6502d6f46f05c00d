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

Wide inputs are first reduced to p principal components per side (of each side's normal scores),
p = 8, 16, 32, ... (:func:`view_candidates`). One more candidate basis, ``pcs`` = :data:`SCREENED`
(session 11): only the columns whose normal scores correlate with some column of the other side
beyond a Bonferroni bound (:func:`screen_columns`), offered when they are at most a quarter of each
side's columns. When the dependence sits in a few of many columns (BMI's sparse 25 x 25 tasks: 2 of
25), CCA on all columns spends rows estimating directions in the 23 noise columns and its held-out
variates lose 0.04-0.05 bits of 1.47; CCA on the 2 screened columns loses almost none (measured:
docs/estimator.md, session 11).

Nonlinear candidates (session 13). ``pcs`` = :data:`RADIAL`, offered with the screened one: CCA on
the screened columns' z-scores S, their products S r, and r, where r is the row's squared norm as
given (``||x||^2`` of the raw row, standardised on the fitting rows; :func:`square_norms`,
:func:`radial_features`). ``pcs`` = :data:`RADIAL_ALL`: all columns, to second order (S, S r, S r^2,
r, r^2), when both sides have 2 to :data:`RADIAL_MAX_COLUMNS` columns (:data:`RADIAL_SPECS`);
:data:`RADIAL_ICA` and :data:`RADIAL_ALL_ICA`: the same two with their variates Gaussianised in
independent components (:func:`independent_normal_scores`). They are for a dependence whose
directions turn with the input's length: x' = R(theta(||x||^2)) x (BMI's spiral, a rotation by an
angle proportional to the squared norm, which the rotation keeps). Its inverse, expanded in the
angle's spread around its mean theta0, is R(-theta0) x' plus (theta - theta0) and (theta - theta0)^2
times fixed linear maps of x': linear in x', r x' and r^2 x' to second order. The linear views
cannot follow the turn: on BMI's spiral 25 x 25 task they keep 1.24 of 1.47 bits held out, the
radial features 1.48; on its 3 x 3 task 0.79 and 1.32 (prototypes: docs/estimator.md, session 13).
The raw rows' norm, not the z-scores', because the turn follows the row's length as given (uniform
coordinates in [0, 1] have a norm that is not a function of their z-scores' norm). The standardised
norm does not change when the whole input is scaled or rotated; rescaling or shifting single columns
changes it.

The choice (:func:`select_view`), on the training rows: they are split in two halves A and B
(seeded); each candidate (p, m) -- p all columns or a number of principal components, m = 1, 2,
4, ... up to the latent width and the narrower side -- gets a *score*: CCA fitted on A, KSG on B's
top m variates, and the reverse, averaged (cross-fitted: a candidate whose canonical correlations
are noise scores about 0, not its in-sample correlation). The best-scoring candidate (the smaller
width on a tie) is the canonical view, if its score clears a noise gate (:data:`GATE_Z`); its map
is refitted on all training rows.

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

KSG's own bias on a wide view (``settings.view_bias="gaussian"``, session 8): KSG reads low when the
dependence is spread over several dimensions (1 bit in 4 + 4 Gaussian dims reads 0.79 at 1000 rows).
When the chosen view's variates look jointly Gaussian on both training halves (:func:`normality_z`
at most :data:`NORMALITY_Z`), the bias KSG shows on a Gaussian with the view's cross-fitted
correlations at the held-out variates' own scales (:func:`reference_cov`), at the held-out row
count (:func:`ksg_gaussian_bias`, :func:`bias_repeats` seeded samples), is subtracted from the
view's estimate. It depends on the training rows and on each
held-out variate's sd only, which no permutation of the rows changes, so the permutation null
subtracts the same number. The view's estimate is then about unbiased for
Gaussian-copula inputs rather than a lower bound up to KSG's bias.

Units and shapes: inputs (n, d) float; views (n, m) float64 in canonical units (unit variance on
the fitting rows). Scores in bits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from .gaussianize import gaussianize
from .ksg import add_noise
from .seeding import derive_seed

__all__ = ["CanonicalMap", "fit_canonical", "view_candidates", "select_view", "ksg_input", "gaussian_mi_bits",
           "screen_columns", "SCREENED", "SCREEN_ALPHA", "SCREEN_FRACTION", "SCREEN_MAX_MULTIPLY_ADDS",
           "RADIAL", "RADIAL_ALL", "RADIAL_ICA", "RADIAL_ALL_ICA", "RADIAL_MAX_COLUMNS", "RADIAL_SPECS",
           "square_norms", "radial_features", "independent_normal_scores",
           "reference_cov", "ksg_gaussian_bias", "normality_z", "ViewChoice", "GATE_Z", "RIDGE", "BIAS_REPEATS",
           "BIAS_ROWS", "BIAS_MAX_REPEATS", "bias_repeats", "NORMALITY_Z"]

#: a canonical view is compared with the latents only when its best cross-fitted score exceeds
#: GATE_Z / sqrt(rows of a half) bits (0.089 bits at 500 rows). On independent pairs the best of ~20
#: candidate scores passes now and then (10 of 100 null pairs at N = 2000, d = 100, measured; the
#: view was reported on 4), while every dependent case of the suite where the view helps scores
#: 0.3 bits or more. Without the gate, taking the larger of two estimates on independent pairs raised
#: the median |error| from 0.019 to 0.038 bits; with it the medians are the latents' (docs/estimator.md).
#: The p-value is exact either way: the null takes the same maximum.
GATE_Z = 2.0
#: ridge on each side's covariance of normal scores, relative to its largest eigenvalue
RIDGE = 1e-3
#: the bias is removed only from a view whose variates look jointly Gaussian on both training halves:
#: :func:`normality_z` at most this. Measured on the views the suite's cases choose (3 seeds): 1.4-3.4
#: for the Gaussian and Gaussian-copula cases (gauss, rotwarp, lowvar, markov, BMI's multinormal and
#: normal_cdf tasks), once 4.2 (BMI sparse 5 x 5); 8-61 for the digits (clustered images, where the
#: Gaussian reference is the wrong model: 0.53 bits read as 0.98 with it) and 62-77 for BMI's Student-t
#: tasks. A Gaussian view above it only keeps KSG's estimate as read
NORMALITY_Z = 5.0
#: rows of a half on which :func:`normality_z` is computed (its skewness costs rows^2)
NORMALITY_ROWS = 2000
#: fewest simulated Gaussian samples per estimate of KSG's bias (:func:`ksg_gaussian_bias`); the bias
#: estimate's noise is KSG's own sd over sqrt(samples)
BIAS_REPEATS = 8
#: more for small held-out sets, up to :data:`BIAS_MAX_REPEATS`, so that the simulations hold at
#: least this many rows in all (:func:`bias_repeats`; KSG's spread falls as 1/sqrt(rows), so the bias
#: estimate's sd is then about the same at every n; measured at 1000 held-out rows on a width-2 view
#: at d = 5000: sd 0.022 bits with 8 samples, 0.010 with 32, over 12 seeds)
BIAS_ROWS = 32_000
BIAS_MAX_REPEATS = 32
#: the ``pcs`` of the screened candidate (:func:`screen_columns`): CCA on the columns that correlate
#: with the other side, not on principal components (``LMIResult.canonical_pcs`` -1; 0 is all columns)
SCREENED = -1
#: the ``pcs`` of the radial candidate (:func:`radial_features`): CCA on the screened columns' z-scores,
#: the same times the row's standardised squared norm, and that norm (``LMIResult.canonical_pcs`` -2)
RADIAL = -2
#: the ``pcs`` of the radial candidate on all columns (``LMIResult.canonical_pcs`` -3), offered when
#: both sides have 2 to :data:`RADIAL_MAX_COLUMNS` columns (BMI's 3 x 3 and 5 x 5 spiral tasks, where
#: no screen can be valid)
RADIAL_ALL = -3
#: the most columns per side for :data:`RADIAL_ALL`: 3 d + 2 = 26 features a side at 8 (a radial
#: candidate scores -inf in :func:`select_view` unless a training half holds twice its features)
RADIAL_MAX_COLUMNS = 8
#: the same two candidates with their variates Gaussianised in independent components
#: (:func:`independent_normal_scores`: FastICA on the fitting rows' variates, then each component's
#: normal scores; one step of Chen & Gopinath's Gaussianization, 2000), ``LMIResult.canonical_pcs``
#: -4 and -5. A turn of non-Gaussian coordinates (BMI's spiral of normal CDFs: uniform coordinates)
#: leaves the radial view's variates mixtures of uniforms; their normal scores must be taken in the
#: sources' axes, not the canonical ones (prototype, 10 seeds of BMI's spiral of normal CDFs 25 x 25:
#: median |error| 0.038 -> 0.011 bits). Offered next to the plain ones; the cross-fit decides
RADIAL_ICA = -4
RADIAL_ALL_ICA = -5
#: every radial candidate: (its expansion's order, all columns (else the screened ones), ICA stage).
#: The order (:func:`radial_features`): the angle's spread follows the squared norm's relative spread,
#: sqrt(2 / d) for Gaussian rows: 0.5-0.8 at the 2-8 columns of RADIAL_ALL, where the second order is
#: needed (BMI's 3 x 3 spiral: 1.02 bits of 1.47 at first order, 1.32 at second, prototype); 0.28 at
#: BMI's 25 x 25 tasks, where the second order's extra features cost more than they fit (10 seeds:
#: spiral 0.037 / 0.029 median |error| at first / second order, spiral of normal CDFs 0.038 / 0.051)
RADIAL_SPECS = {RADIAL: (1, False, False), RADIAL_ALL: (2, True, False),
                RADIAL_ICA: (1, False, True), RADIAL_ALL_ICA: (2, True, True)}
#: family-wise level of the screen: a column is kept when |r| of its normal scores with some column of
#: the other side exceeds the two-sided Bonferroni bound for d_x * d_y pairs at this level,
#: norm.isf(SCREEN_ALPHA / (2 d_x d_y)) / sqrt(rows) (r * sqrt(rows) is about N(0, 1) for an
#: independent pair). On independent inputs some column passes on at most about 1 % of the halves
#: (the bound's family-wise level)
SCREEN_ALPHA = 0.01
#: the screened candidate competes only when it keeps at most this fraction of each side's columns:
#: screening a dense or rotated dependence drops columns that carry part of it. Fractions kept,
#: measured on one training half of each suite case (docs/estimator.md, session 11): BMI's sparse 25 x 25
#: tasks 2 / 25 (8 %); the paper's Gaussian and the Markov chain 51-70 % (copies and nuisance columns),
#: the digits 28-64 %, the rotated cases 80-100 %, BMI's 3 x 3 and 5 x 5 sparse tasks 40-67 %. With a
#: ladder of screened sizes offered everywhere (no bound), the view's mean |error| over the d <= 100
#: cases rose from 0.048 to 0.054 bits (3 seeds), more candidates to choose from on noisy scores
SCREEN_FRACTION = 0.25
#: the screen is offered only when its cross-correlations, d_x * d_y * (rows of a half) multiply-adds
#: per half, stay below this: 0.86 s per half measured at d_x = d_y = 5000 and 500 rows (1.25e10) on
#: one thread of the 2-core development machine; at 50 000 columns per side it would take minutes
SCREEN_MAX_MULTIPLY_ADDS = 2e10


@dataclass(frozen=True)
class CanonicalMap:
    """A fitted canonical view. ``ref_x`` (n, d_x) / ``ref_y`` (n, d_y): the fitting rows (the
    normal-score reference); ``mean_x`` / ``mean_y``: their scores' means; ``a`` (d_x, r) /
    ``b`` (d_y, r): the canonical directions (within the principal components kept), strongest
    first; ``rho`` (r,):
    the canonical correlations on the fitting rows.

    A radial map (:data:`RADIAL`, :data:`RADIAL_ALL`; ``radial``) has ``cols_x`` / ``cols_y`` (the
    columns it uses, int64), ``norm_x`` / ``norm_y`` (4,): the exponent of :func:`square_norms`, the
    fitting rows' mean and sd of the squared norms, and the expansion's order; ``a`` / ``b`` act on
    :func:`radial_features` (2 |cols| + 1 or 3 |cols| + 2 of them),
    ``mean_x`` / ``mean_y`` are those features' means, and ``ref_x`` / ``ref_y`` are empty (0, d):
    no normal scores are taken. With an ICA stage (:data:`RADIAL_ICA`, :data:`RADIAL_ALL_ICA`):
    ``ica_x`` / ``ica_y`` (w, w) the unmixing matrices and ``ica_mean_x`` / ``ica_mean_y`` (w,) the
    means of :func:`independent_normal_scores` on the top w variates, and ``ref_x`` / ``ref_y`` (n, w)
    the fitting rows' independent components (the normal-score reference); its transform gives
    exactly w variates."""
    ref_x: np.ndarray
    ref_y: np.ndarray
    mean_x: np.ndarray
    mean_y: np.ndarray
    a: np.ndarray
    b: np.ndarray
    rho: np.ndarray
    cols_x: np.ndarray | None = None
    cols_y: np.ndarray | None = None
    norm_x: np.ndarray | None = None
    norm_y: np.ndarray | None = None
    ica_x: np.ndarray | None = None
    ica_y: np.ndarray | None = None
    ica_mean_x: np.ndarray | None = None
    ica_mean_y: np.ndarray | None = None

    @property
    def radial(self) -> bool:
        """Whether this is a radial map (:data:`RADIAL`, :data:`RADIAL_ALL`; its transform needs the
        rows' squared norms)."""
        return self.cols_x is not None

    def square_norms(self, raw_x: np.ndarray, raw_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The squared norms (n,) of raw rows ``raw_x`` (n, d_x) / ``raw_y`` (n, d_y), in the units of
        this map's fitting rows (:func:`square_norms` with their exponents): what :meth:`transform`
        takes as ``x_sq`` / ``y_sq``."""
        return (square_norms(raw_x, int(self.norm_x[0]))[0], square_norms(raw_y, int(self.norm_y[0]))[0])

    def transform(self, x: np.ndarray, y: np.ndarray, width: int, x_sq: np.ndarray | None = None,
                  y_sq: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The top ``width`` canonical variates of rows ``x`` (n, d_x) and ``y`` (n, d_y) (z-scored as
        the fitting rows were): two (n, width) float64 arrays. A :attr:`radial` map also needs the
        rows' squared norms ``x_sq`` / ``y_sq`` (n,) (:meth:`square_norms` of the raw rows)."""
        if self.radial:
            if x_sq is None or y_sq is None:
                raise ValueError("a radial canonical map needs the rows' squared norms (x_sq, y_sq)")
            fx = radial_features(x, x_sq, self.cols_x, self.norm_x[1:3], order=int(self.norm_x[3]))[0]
            fy = radial_features(y, y_sq, self.cols_y, self.norm_y[1:3], order=int(self.norm_y[3]))[0]
            u, v = (fx - self.mean_x) @ self.a[:, :width], (fy - self.mean_y) @ self.b[:, :width]
            if self.ica_x is None:
                return u, v
            if width != self.ica_x.shape[0]:
                raise ValueError(f"this map's ICA stage was fitted at width {self.ica_x.shape[0]}, not {width}")
            return (gaussianize(self.ref_x, (u - self.ica_mean_x) @ self.ica_x.T),
                    gaussianize(self.ref_y, (v - self.ica_mean_y) @ self.ica_y.T))
        u = (gaussianize(self.ref_x, x) - self.mean_x) @ self.a[:, :width]
        v = (gaussianize(self.ref_y, y) - self.mean_y) @ self.b[:, :width]
        return u, v


def square_norms(raw: np.ndarray, exponent: int | None = None) -> tuple[np.ndarray, int]:
    """Squared Euclidean norms of the rows of ``raw`` (n, d), as given, scaled by 2^(-2 exponent):
    ``(sq (n,) float64, exponent)``. Without ``exponent``, the one that puts the largest |value| in
    [0.5, 1) (so 1e-200 and 1e200 neither under- nor overflow); a power of two scales exactly, and
    :func:`radial_features` standardises the norms, so the exponent changes nothing else."""
    a = np.array(raw, dtype=np.float64)                      # one float64 copy, scaled in place
    if exponent is None:
        peak = float(np.max(np.abs(a))) if a.size else 0.0
        exponent = int(np.frexp(peak)[1])
    np.ldexp(a, -exponent, out=a)
    return np.einsum("ij,ij->i", a, a), exponent


def radial_features(z: np.ndarray, sq: np.ndarray, cols: np.ndarray,
                    stats: np.ndarray | None = None, order: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """The radial candidates' features of rows ``z`` (n, d) (z-scores) with squared norms ``sq`` (n,)
    (:func:`square_norms` of the raw rows), S = ``z[:, cols]``, r = (sq - mean) / sd: ``order`` 2 (the
    turn's inverse to second order in the angle's spread) ``[S, S r, S r^2, r, r^2]``, (n, 3 |cols| + 2)
    float64; ``order`` 1 ``[S, S r, r]``, (n, 2 |cols| + 1) (:data:`RADIAL_SPECS`). ``stats`` (mean,
    sd): the fitting rows'; None computes them from ``sq``. r is 0 when sd is at most 1e-9 of the
    mean (rows of one norm up to rounding: their rounding noise is no feature). Returns (features,
    stats)."""
    sq = np.asarray(sq, dtype=np.float64)
    if stats is None:
        stats = np.array([sq.mean(), sq.std()]) if sq.size else np.array([0.0, 0.0])
    constant = not stats[1] > 1e-9 * abs(stats[0])
    r = np.zeros_like(sq) if constant else (sq - stats[0]) / stats[1]
    base = np.asarray(z, dtype=np.float64)[:, np.asarray(cols)]
    r1, r2 = r[:, None], (r * r)[:, None]
    parts = [base, base * r1, r1] if order == 1 else [base, base * r1, base * r2, r1, r2]
    return np.hstack(parts), np.asarray(stats, dtype=np.float64)


def independent_normal_scores(fit: np.ndarray, score: np.ndarray | None = None, *, seed: int = 0):
    """One Gaussianization step of variates ``fit`` (n, w) (the fitting rows): FastICA (scikit-learn,
    unit-variance whitening, ``random_state`` ``seed``) finds w independent components, and each
    component is mapped to normal scores by its empirical CDF on the fitting rows (:func:`.gaussianize`).
    ``score`` (m, w): other rows, mapped by the same unmixing and CDFs. Returns (unmixing (w, w), mean
    (w,), the fitting rows' components (n, w), their normal scores (n, w), ``score``'s normal scores (m,
    w) or None). A components = (variates - mean) @ unmixing.T; FastICA's convergence warnings are
    silenced (a component that did not converge is still a fixed linear map, fitted on these rows)."""
    import warnings

    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning

    ica = FastICA(whiten="unit-variance", random_state=seed % (2 ** 32), max_iter=1000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        src = ica.fit_transform(np.asarray(fit, dtype=np.float64))
    unmix, mean = np.asarray(ica.components_, np.float64), np.asarray(ica.mean_, np.float64)
    out = None if score is None else gaussianize(src, (np.asarray(score, np.float64) - mean) @ unmix.T)
    return unmix, mean, src, gaussianize(src), out


def _inv_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    w = np.maximum(w, 0.0) + RIDGE * max(float(w.max()), 1e-300)
    return (v / np.sqrt(w)) @ v.T


def _principal(s: np.ndarray) -> np.ndarray:
    """(d, q) principal directions of centred scores ``s`` (n, d), strongest first, q = min(n, d)."""
    return np.linalg.svd(s, full_matrices=False)[2].T


def _cca(sx: np.ndarray, sy: np.ndarray, px: np.ndarray | None,
         py: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CCA of centred scores sx (n, d_x), sy (n, d_y), within the spans of ``px`` (d_x, p) /
    ``py`` (None: all columns). Returns a (d_x, r), b (d_y, r), rho (r,), strongest first."""
    tx = sx if px is None else sx @ px
    ty = sy if py is None else sy @ py
    n = tx.shape[0]
    wx, wy = _inv_sqrt(tx.T @ tx / n), _inv_sqrt(ty.T @ ty / n)
    u, rho, vt = np.linalg.svd(wx @ (tx.T @ ty / n) @ wy, full_matrices=False)
    a, b = wx @ u, wy @ vt.T
    return (a if px is None else px @ a), (b if py is None else py @ b), rho


def _basis(s: np.ndarray, pcs: int | None, directions: np.ndarray | None = None) -> np.ndarray | None:
    """The top ``pcs`` principal directions of ``s`` (from ``directions``, :func:`_principal` of
    ``s``, when given), or None (all columns) when ``pcs`` is None or ``s`` has no more columns."""
    if pcs is None or s.shape[1] <= pcs:
        return None
    return (_principal(s) if directions is None else directions)[:, :pcs]


def screen_columns(sx: np.ndarray, sy: np.ndarray, *, at_least: int = 0,
                   fraction: float | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """The columns of centred normal scores ``sx`` (n, d_x) and ``sy`` (n, d_y) that correlate with
    some column of the other side: |Pearson r| above ``norm.isf(SCREEN_ALPHA / (2 d_x d_y)) /
    sqrt(n)``. Returns (ix, iy), column indices in decreasing order of their largest |r|, each side
    padded with its next strongest columns to ``at_least`` (the final map's width). With a
    ``fraction`` (:data:`SCREEN_FRACTION` in :func:`select_view`), None when a side keeps no column or
    more than that fraction of its columns. Costs d_x * d_y * n (the cross-correlations, in blocks of
    x columns: at most 2^22 floats, 32 MB, at once)."""
    from scipy.stats import norm

    n, d_x = sx.shape
    d_y = sy.shape[1]
    sdy = sy.std(0)
    zy = sy / np.maximum(sdy, 1e-300)
    zy[:, sdy == 0] = 0.0                                      # a constant column correlates with nothing
    sdx = sx.std(0)
    best_x = np.zeros(d_x)
    best_y = np.zeros(d_y)
    step = max(1, (1 << 22) // max(d_y, 1))
    for lo in range(0, d_x, step):
        sd = sdx[lo:lo + step]
        zx = sx[:, lo:lo + step] / np.maximum(sd, 1e-300)
        zx[:, sd == 0] = 0.0
        r = np.abs(zx.T @ zy) / n
        best_x[lo:lo + step] = r.max(1)
        best_y = np.maximum(best_y, r.max(0))
    bound = float(norm.isf(SCREEN_ALPHA / (2.0 * d_x * d_y))) / np.sqrt(n)
    out = []
    for best, d in ((best_x, d_x), (best_y, d_y)):
        order = np.argsort(-best, kind="stable")
        kept = int(np.sum(best > bound))
        if fraction is not None and (kept == 0 or kept > fraction * d):
            return None
        out.append(order[:min(d, max(kept, at_least))])
    return out[0], out[1]


def _selection(d: int, cols: np.ndarray) -> np.ndarray:
    """(d, len(cols)) the unit vectors of columns ``cols``: a basis for :func:`_cca`."""
    basis = np.zeros((d, len(cols)))
    basis[np.asarray(cols), np.arange(len(cols))] = 1.0
    return basis


def _scores(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Normal scores of ``x`` (n, d) by its own ECDF, centred, and their column means (d,)."""
    s = gaussianize(x)
    mean = s.mean(0)
    return s - mean, mean


def _radial_pair(zx: np.ndarray, zy: np.ndarray, qx: np.ndarray, qy: np.ndarray, cols: tuple[np.ndarray, np.ndarray],
                 order: int):
    """Centred :func:`radial_features` (of ``order``) of both sides of the fitting rows, their means and
    norm stats: ((fx, mean_x, stats_x), (fy, mean_y, stats_y))."""
    out = []
    for z, q, c in ((zx, qx, cols[0]), (zy, qy, cols[1])):
        f, stats = radial_features(z, q, c, order=order)
        mean = f.mean(0)
        out.append((f - mean, mean, stats))
    return out[0], out[1]


def _radial_halves(x: np.ndarray, y: np.ndarray, x_sq: np.ndarray, y_sq: np.ndarray, fit_rows: np.ndarray,
                   score_rows: np.ndarray, cols: tuple[np.ndarray, np.ndarray], order: int) -> tuple:
    """A radial CCA fitted on ``fit_rows`` of z-scores ``x`` / ``y`` with squared norms ``x_sq`` /
    ``y_sq`` and its variates: (scoring rows' u, v, fitting rows' u, v), all widths (an ICA stage is
    fitted on the fitting rows' variates, width by width)."""
    (fx, fmx, nx), (fy, fmy, ny) = _radial_pair(x[fit_rows], y[fit_rows], x_sq[fit_rows], y_sq[fit_rows], cols, order)
    a, b, _ = _cca(fx, fy, None, None)
    gx = radial_features(x[score_rows], x_sq[score_rows], cols[0], nx, order)[0] - fmx
    gy = radial_features(y[score_rows], y_sq[score_rows], cols[1], ny, order)[0] - fmy
    return gx @ a, gy @ b, fx @ a, fy @ b


def fit_canonical(x: np.ndarray, y: np.ndarray, *, pcs: int | None = None, variates: bool = False,
                  width: int = 1, x_sq: np.ndarray | None = None, y_sq: np.ndarray | None = None,
                  exponents: tuple[int, int] = (0, 0), seed: int = 0):
    """Linear CCA of the normal scores of ``x`` (n, d_x) and ``y`` (n, d_y), fitted on these rows;
    ``pcs``: first reduce each side with more columns to its top ``pcs`` principal components (of
    its own normal scores); :data:`SCREENED`: keep each side's screened columns
    (:func:`screen_columns` on these rows, at least ``width`` per side); :data:`RADIAL`: CCA of
    :func:`radial_features` of the screened columns (at least ``width // 2`` per side) of the
    z-scores ``x`` / ``y`` and the rows' squared norms ``x_sq`` / ``y_sq`` (n,) (:func:`square_norms`
    with ``exponents``, kept in the map for new rows); :data:`RADIAL_ALL`: the same on all columns (at
    the orders of :data:`RADIAL_SPECS`); :data:`RADIAL_ICA` / :data:`RADIAL_ALL_ICA`: those with the
    top ``width`` variates Gaussianised in independent components (:func:`independent_normal_scores`,
    ``seed``). Returns the :class:`CanonicalMap`; with
    ``variates=True`` also the fitting rows' canonical variates (u (n, r), v (n, r); what
    ``transform`` gives for these rows, without mapping them again)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if pcs in RADIAL_SPECS:
        if x_sq is None or y_sq is None:
            raise ValueError("the radial view needs the rows' squared norms (x_sq, y_sq)")
        order, all_columns, ica = RADIAL_SPECS[pcs]
        cols = ((np.arange(x.shape[1]), np.arange(y.shape[1])) if all_columns
                else screen_columns(_scores(x)[0], _scores(y)[0], at_least=max(1, width // 2)))
        (fx, fmx, nx), (fy, fmy, ny) = _radial_pair(x, y, x_sq, y_sq, cols, order)
        a, b, rho = _cca(fx, fy, None, None)
        u, v = fx @ a, fy @ b
        stage: dict[str, np.ndarray] = {}
        refs = (np.zeros((0, x.shape[1])), np.zeros((0, y.shape[1])))
        if ica:
            (ux, mux, srcx, u, _), (uy, muy, srcy, v, _) = (independent_normal_scores(u[:, :width], seed=seed),
                                                          independent_normal_scores(v[:, :width], seed=seed))
            stage = dict(ica_x=ux, ica_y=uy, ica_mean_x=mux, ica_mean_y=muy)
            refs = (srcx, srcy)
        fit = CanonicalMap(refs[0], refs[1], fmx, fmy, a, b, rho,
                           cols_x=np.asarray(cols[0], np.int64), cols_y=np.asarray(cols[1], np.int64),
                           norm_x=np.array([exponents[0], *nx, order], np.float64),
                           norm_y=np.array([exponents[1], *ny, order], np.float64), **stage)
        return (fit, u, v) if variates else fit
    (sx, mx), (sy, my) = _scores(x), _scores(y)
    if pcs == SCREENED:
        cols = screen_columns(sx, sy, at_least=width)
        a, b, rho = _cca(sx, sy, _selection(sx.shape[1], cols[0]), _selection(sy.shape[1], cols[1]))
    else:
        a, b, rho = _cca(sx, sy, _basis(sx, pcs), _basis(sy, pcs))
    fit = CanonicalMap(x, y, mx, my, a, b, rho)
    return (fit, sx @ a, sy @ b) if variates else fit


def view_candidates(d_x: int, d_y: int, n_train: int, latent_dim: int, *,
                    screen: bool = True, radial: bool = True) -> tuple[tuple[int | None, int], ...]:
    """The (pcs, width) pairs :func:`select_view` tries. ``pcs``: None (CCA on all columns; only when
    neither side has more columns than a quarter of the training rows, so a cross-fit half holds at
    least twice the columns) or 8, 16, 32, ... principal components per side (fewer than the wider
    side's columns, at most a quarter of the training rows), then :data:`SCREENED` (the screened
    columns, when each side has 4 columns or more and the screen costs at most
    :data:`SCREEN_MAX_MULTIPLY_ADDS`; ``screen=False`` leaves it out, the view before session 11),
    then :data:`RADIAL` and :data:`RADIAL_ICA` at the screened candidate's widths (with it), and
    :data:`RADIAL_ALL` and :data:`RADIAL_ALL_ICA` when both sides have 2 to :data:`RADIAL_MAX_COLUMNS`
    columns, at the all-columns widths (``radial=False``, or ``screen=False``, leaves them out: the
    view before session 13).
    ``width``: 1, 2, 4, ... up to ``latent_dim`` and
    the narrower side (after the reduction; for :data:`SCREENED`, a quarter of the narrower side,
    the most columns it may keep). Empty when nothing fits."""
    cap = n_train // 4
    options: list[int | None] = [None] if max(d_x, d_y) <= cap else []
    p = 8
    while p <= cap and p < max(d_x, d_y):
        options.append(p)
        p *= 2
    out = []
    for pcs in options:
        r = min(latent_dim, d_x, d_y) if pcs is None else min(latent_dim, d_x, d_y, pcs)
        if r >= 1:
            out += [(pcs, w) for w in _widths(r, top=True)]
    r = min(latent_dim, int(SCREEN_FRACTION * d_x), int(SCREEN_FRACTION * d_y))
    # cap >= 8 as for 8 principal components (a half holds 4 rows per column); the screen's cost bounded
    if screen and r >= 1 and cap >= 8 and float(d_x) * d_y * (n_train // 2) <= SCREEN_MAX_MULTIPLY_ADDS:
        out += [(p, w) for p in ((SCREENED, RADIAL, RADIAL_ICA) if radial else (SCREENED,)) for w in _widths(r)]
    if screen and radial and cap >= 8 and 2 <= min(d_x, d_y) and max(d_x, d_y) <= RADIAL_MAX_COLUMNS:
        out += [(p, w) for p in (RADIAL_ALL, RADIAL_ALL_ICA) for w in _widths(min(latent_dim, d_x, d_y), top=True)]
    return tuple(out)


def _widths(r: int, top: bool = False) -> list[int]:
    """1, 2, 4, ... up to ``r``; with ``top`` also ``r`` itself when it is no power of two."""
    out = [1 << i for i in range(r.bit_length()) if (1 << i) <= r]
    return out + [r] if top and out[-1] != r else out


def select_view(x_tr: np.ndarray, y_tr: np.ndarray, *, candidates: tuple[tuple[int | None, int], ...], k: int,
                seed: int, ksg_mi: Callable[[np.ndarray, np.ndarray], float],
                x_sq: np.ndarray | None = None, y_sq: np.ndarray | None = None) -> "ViewChoice":
    """The canonical view (pcs, width) to compare with the latents, chosen on the training rows only.

    ``x_tr`` (n, d_x) / ``y_tr`` (n, d_y): the training rows' inputs; ``candidates``: the (pcs,
    width) pairs to try (:func:`view_candidates`); ``ksg_mi(u, v) -> bits``: the KSG the caller
    uses (its k and jitter); ``seed``: the halves. Each candidate's score: CCA fitted on one half,
    KSG on the other half's variates, both ways, averaged; a :data:`SCREENED` candidate scores -inf
    when either half's screen keeps no column, more than :data:`SCREEN_FRACTION` of a side's columns
    or more than half the half's rows, or fewer columns than its width; a radial candidate on the
    screened columns (:data:`RADIAL`, :data:`RADIAL_ICA`) likewise; every radial candidate
    (:data:`RADIAL_SPECS`) also when a half holds fewer than twice its features, and always without the
    rows' squared norms ``x_sq`` / ``y_sq`` (n,) (:func:`square_norms` of the raw training rows). An ICA
    stage is fitted on the fitting half's variates at each width, with ``seed``. Returns a
    :class:`ViewChoice`."""
    n = x_tr.shape[0]
    perm = np.random.default_rng(seed).permutation(n)
    halves = (perm[: n // 2], perm[n // 2:])
    if not candidates or min(len(h) for h in halves) <= k + 1:
        return ViewChoice(None, {}, None, float("nan"))
    x_tr = np.asarray(x_tr, dtype=np.float64)
    y_tr = np.asarray(y_tr, dtype=np.float64)
    options = list(dict.fromkeys(p for p, _ in candidates))
    pcs_options = [p for p in options if p is not None and p != SCREENED and p not in RADIAL_SPECS]
    views: dict[int | None, list] = {p: [] for p in options}
    for fit_rows, score_rows in zip(halves, halves[::-1]):
        (sx, mx), (sy, my) = _scores(x_tr[fit_rows]), _scores(y_tr[fit_rows])
        ox = gaussianize(x_tr[fit_rows], x_tr[score_rows]) - mx
        oy = gaussianize(y_tr[fit_rows], y_tr[score_rows]) - my
        # one SVD per side and half, for every number of components that reduces that side
        vx = _principal(sx) if any(p < sx.shape[1] for p in pcs_options) else None
        vy = _principal(sy) if any(p < sy.shape[1] for p in pcs_options) else None
        screened = any(p == SCREENED or (p in RADIAL_SPECS and not RADIAL_SPECS[p][1]) for p in options)
        cols = screen_columns(sx, sy, fraction=SCREEN_FRACTION) if screened else None
        radial_fits: dict[tuple[int, bool], tuple | None] = {}     # shared by the plain and ICA candidates
        for p in options:
            if p in RADIAL_SPECS:
                order, all_columns, _ = RADIAL_SPECS[p]
                if (order, all_columns) not in radial_fits:
                    use = (np.arange(x_tr.shape[1]), np.arange(y_tr.shape[1])) if all_columns else cols
                    radial_fits[order, all_columns] = (
                        None if (use is None or x_sq is None or y_sq is None
                                 or (order + 1) * max(len(c) for c in use) + order > len(fit_rows) // 2)
                        else _radial_halves(x_tr, y_tr, x_sq, y_sq, fit_rows, score_rows, use, order))
                views[p].append(radial_fits[order, all_columns])
                continue
            if p == SCREENED:
                if cols is None or max(len(c) for c in cols) > len(fit_rows) // 2:
                    views[p].append(None)
                    continue
                a, b, _ = _cca(sx, sy, _selection(sx.shape[1], cols[0]), _selection(sy.shape[1], cols[1]))
            else:
                a, b, _ = _cca(sx, sy, _basis(sx, p, vx), _basis(sy, p, vy))
            views[p].append((ox @ a, oy @ b))

    def variates(p: int | None, m: int) -> list[tuple[np.ndarray, np.ndarray]] | None:
        """The scoring halves' width-m variates of candidate p (None: it cannot compete)."""
        if any(w is None or w[0].shape[1] < m for w in views[p]):
            return None                                       # a screen that kept too few or too many columns
        if p in RADIAL_SPECS and RADIAL_SPECS[p][2]:
            return [(independent_normal_scores(w[2][:, :m], w[0][:, :m], seed=seed)[4],
                     independent_normal_scores(w[3][:, :m], w[1][:, :m], seed=seed)[4]) for w in views[p]]
        return [(w[0][:, :m], w[1][:, :m]) for w in views[p]]

    held = {c: variates(*c) for c in candidates}
    scores = {c: float("-inf") if held[c] is None else float(np.mean([ksg_mi(u, v) for u, v in held[c]]))
              for c in candidates}
    best = max(scores, key=lambda c: (scores[c], -c[1]))
    if scores[best] < GATE_Z / np.sqrt(min(len(h) for h in halves)):
        return ViewChoice(None, scores, None, float("nan"))   # nothing above noise: the latents alone
    joint = [np.hstack([u, v]) for u, v in held[best]]
    corr = np.mean([np.corrcoef(z.T) for z in joint], axis=0)
    return ViewChoice(best, scores, corr, max(normality_z(z) for z in joint))


class ViewChoice(NamedTuple):
    """What :func:`select_view` found on the training rows.

    ``choice``: the best (pcs, width) (the smaller width on a tie), or None when there are no
    candidates, a half would hold k + 1 rows or fewer, or no score clears ``GATE_Z / sqrt(half
    rows)``; ``scores``: every candidate's score in bits; ``corr`` (2m, 2m): the chosen view's
    cross-fitted correlation matrix -- the Pearson correlations of [u, v] (x side first) on the
    half each map did not see, averaged over the two halves (what :func:`ksg_gaussian_bias`
    simulates, at the held-out scales: :func:`reference_cov`); ``normality_z``: :func:`normality_z`
    of both halves' variates, the larger (how far
    they are from jointly Gaussian; the bias is removed only up to :data:`NORMALITY_Z`). None /
    NaN without a choice."""
    choice: tuple[int | None, int] | None
    scores: dict[tuple[int | None, int], float]
    corr: np.ndarray | None
    normality_z: float


def normality_z(z: np.ndarray, max_rows: int = NORMALITY_ROWS) -> float:
    """How far rows ``z`` (n, p) are from a p-variate Gaussian, as the largest |standard score| of
    Mardia's multivariate skewness (n b1 / 6 against chi-squared with p(p+1)(p+2)/6 degrees of
    freedom, as (stat - df) / sqrt(2 df)) and kurtosis ((b2 - p(p+2)) / sqrt(8 p(p+2) / n)) and of
    each column's skewness (g1 / sqrt(6 / n)) and excess kurtosis (g2 / sqrt(24 / n)); on the first
    ``max_rows`` rows (Mardia's skewness costs n^2). A few units for Gaussian rows; one bimodal
    column among six moves Mardia's kurtosis by only ~3 units at 1000 rows but its own kurtosis by
    ~13, hence the columns' scores too. Measured on the suite's views: see :data:`NORMALITY_Z`."""
    z = np.asarray(z, dtype=np.float64)[:max_rows]
    n, p = z.shape
    z = z - z.mean(0)
    try:
        g = z @ np.linalg.inv(np.cov(z.T, bias=True).reshape(p, p)) @ z.T
    except np.linalg.LinAlgError:
        return float("inf")
    from scipy.stats import kurtosis, skew

    df = p * (p + 1) * (p + 2) / 6.0
    scores = [(float((g ** 3).sum()) / (6.0 * n) - df) / np.sqrt(2.0 * df),                 # Mardia's b1
              (float((np.diag(g) ** 2).mean()) - p * (p + 2)) / np.sqrt(8.0 * p * (p + 2) / n),   # ... b2
              *(skew(z, axis=0) / np.sqrt(6.0 / n)), *(kurtosis(z, axis=0) / np.sqrt(24.0 / n))]
    out = float(np.max(np.abs(scores)))
    return out if np.isfinite(out) else float("inf")


def gaussian_mi_bits(corr: np.ndarray, m: int) -> float:
    """MI in bits between the first ``m`` and the other coordinates of a Gaussian with
    correlation (or covariance) matrix ``corr`` (2m, 2m): ½ log2(det C_xx det C_yy / det C)."""
    ld = lambda c: np.linalg.slogdet(c)[1]  # noqa: E731
    return float(0.5 * (ld(corr[:m, :m]) + ld(corr[m:, m:]) - ld(corr)) / np.log(2.0))


def bias_repeats(n: int) -> int:
    """How many Gaussian samples of ``n`` rows :func:`ksg_gaussian_bias` reads: enough to hold
    :data:`BIAS_ROWS` rows in all, at least :data:`BIAS_REPEATS`, at most :data:`BIAS_MAX_REPEATS`
    (32 at 1000 held-out rows, 13 at 2500, 8 from 4000)."""
    return int(min(BIAS_MAX_REPEATS, max(BIAS_REPEATS, -(-BIAS_ROWS // max(int(n), 1)))))


def reference_cov(corr: np.ndarray | None, cx_te: np.ndarray, cy_te: np.ndarray) -> np.ndarray | None:
    """The Gaussian reference of :func:`ksg_gaussian_bias` for a view: the cross-fitted correlations
    ``corr`` (2m, 2m; :class:`ViewChoice`) scaled to the held-out variates' standard deviations
    (``cx_te``, ``cy_te`` (n_test, m)): D corr D, D = diag(sd). None without ``corr``.

    Why the scales: KSG's max-norm neighbours depend on each coordinate's scale, and a weak variate's
    scale out of sample is not the unit it has on the fitting rows (measured at d = 5000, width 8:
    held-out sd 0.4 on the four noise variates; a unit-scale reference read the bias as -0.57 bits
    where the held-out one reads -0.29, and the estimate 1.34 bits for a truth of 1). Why these
    scales may be read on the held-out rows: each column's sd is the same under every permutation of
    the rows, so the permutation null still subtracts the same number (its p-value stays exact), and
    the marginal scales carry no dependence between X and Y."""
    if corr is None:
        return None
    sd = np.concatenate([np.std(np.asarray(cx_te, np.float64), axis=0), np.std(np.asarray(cy_te, np.float64), axis=0)])
    return np.asarray(corr, np.float64) * np.outer(sd, sd)


def ksg_gaussian_bias(cov: np.ndarray | None, n: int, *, seed: int,
                      ksg_mi: Callable[[np.ndarray, np.ndarray], float], repeats: int | None = None) -> float:
    """KSG's bias in bits at a Gaussian reference: the mean of ``ksg_mi(u, v)`` over ``repeats``
    (default :func:`bias_repeats` of ``n``) samples of ``n`` rows drawn from N(0, ``cov``) (``cov``
    (2m, 2m), the x side's m coordinates first; seeded by ``seed``), minus that Gaussian's exact MI
    (:func:`gaussian_mi_bits`).

    Why: KSG reads low when the dependence is spread over several dimensions (a Gaussian with 1 bit
    in 4 + 4 dims reads 0.79 at 1000 rows, k 3; measured), and a view of width 4 or more carries that
    bias whole. The canonical view's variates are linear maps of normal scores, Gaussian whenever the
    inputs are Gaussian up to a map of each column, so the bias at the Gaussian with the view's own
    cross-fitted correlations, at the scales of the held-out variates (:func:`reference_cov`), is
    the bias to remove (``settings.view_bias``). Returns 0.0 when ``cov`` is None or not positive
    definite (no reference to simulate)."""
    if cov is None or not np.all(np.isfinite(cov)):
        return 0.0
    cov = np.asarray(cov, dtype=np.float64)
    m = cov.shape[0] // 2
    try:
        chol = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return 0.0
    rng = np.random.default_rng(seed)
    reads = []
    for _ in range(bias_repeats(n) if repeats is None else int(repeats)):
        z = rng.standard_normal((int(n), 2 * m)) @ chol.T
        reads.append(ksg_mi(z[:, :m], z[:, m:]))
    bias = float(np.mean(reads) - gaussian_mi_bits(cov, m))
    return bias if np.isfinite(bias) else 0.0


def ksg_input(cx_te: np.ndarray, cy_te: np.ndarray, noise: float, seed: int) -> list[np.ndarray]:
    """What KSG reads of a canonical view: its held-out variates (n_test, width) as float64 plus
    the pair's seeded uniform [0, ``noise``) jitter (``derive_seed(seed, "view-ksg")``); the
    estimate (``estimators.api``) and the permutation null (:mod:`.permutation`) read the same."""
    return add_noise([np.asarray(cx_te, np.float64), np.asarray(cy_te, np.float64)], noise,
                     derive_seed(seed, "view-ksg"))
