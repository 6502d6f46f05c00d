"""Latent permutation null: permute the held-out Y latents against X and recompute KSG MI.

Valid for LMI because the encoders never saw the held-out half: permuting rows of ``zy``
destroys the dependence while keeping both marginal latent distributions.

Permutations are drawn from ``numpy.random.default_rng(seed)``, one ``rng.permutation(N)`` per
null sample in order (see ``draw_permutations``), so every backend sees the same permutations
and returns the same numbers.

What does not change under permutation is reused:
- "tree" (CPU), ``method="lists"`` (the default where numba is installed): every point's
  marginal neighbours, sorted by distance, are computed once per space
  (``neighbors.permuted.MarginalLists``); a permutation then reads, per row, one sorted list
  until the joint k-th radius is certain and counts with binary searches
  (``neighbors.permuted.permuted_counts``). Same float64 distances, same strict counts: the
  nulls are bit-identical to ``method="loop"``, one exact tree-backend KSG on (zx, zy[π]) per
  permutation (today's path before the lists; kept as the reference and the no-numba path).
- "tiled" (numpy or CuPy arrays): the marginal Chebyshev distance matrices Dx and Dy are computed
  once; permutation π then only needs the joint k-th distance of row i,
  k-th smallest of max(Dx[i, :], Dy[π(i), π(:)]), and counts from the precomputed rows
  (n_y,i = #{j: Dy[π(i), j] < eps_i}, columns need no permuting for a count).
- "cupy": raw CUDA kernels, B permutations per launch (``cupy_kernels.permutation_null``).
"""

from __future__ import annotations

import numpy as np

from lmi_distributed.errors import InputError
from lmi_distributed.estimators.ksg import _check_k, _check_pair, pmi_from_counts
from lmi_distributed.estimators import device
from lmi_distributed.estimators.neighbors import array_namespace, knn_counts

__all__ = ["latent_permutation_null", "result_latent_null", "draw_permutations", "PRECOMPUTE_MAX_N",
           "LISTS_MAX_N", "METHODS"]

#: the "tiled" path keeps two (N, N) float64 matrices; above this N it tiles per permutation
PRECOMPUTE_MAX_N = 4096

#: method="auto" uses the sorted lists up to this N (their O(N^2 log N) set-up, once per null,
#: and their memory, ``neighbors.permuted.LIST_BYTES``, stay modest); above, one KSG per π
LISTS_MAX_N = 20000

#: ... and from this many permutations (at least N / 500): below, the set-up costs more than it
#: saves (measured break-even: ~7 permutations at N = 1000, ~15 at N = 5000)
LISTS_MIN_PERMUTATIONS = 16


def draw_permutations(n: int, n_permutations: int, seed: int) -> np.ndarray:
    """(n_permutations, n) int64: row b is the b-th ``default_rng(seed).permutation(n)``."""
    rng = np.random.default_rng(seed)
    out = np.empty((n_permutations, n), dtype=np.int64)
    for b in range(n_permutations):
        out[b] = rng.permutation(n)
    return out


def _null_lists(x, y, perms, k):
    """Sorted-marginal-list path (numba): same counts as ``_null_tree``, so the same nulls."""
    from lmi_distributed.estimators.neighbors import permuted, tree

    n = x.shape[0]
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    cols = permuted.list_columns(n)
    with tree._NUMBA_LOCK:  # one caller at a time in numba's workqueue layer, as tree does
        lists = (permuted.MarginalLists(x, cols), permuted.MarginalLists(y, cols))
        nx, ny = permuted.permuted_counts(x, y, perms, k, lists=lists)
    return _mean_pmi_rows(k, n, nx, ny)


def _mean_pmi_rows(k: int, n: int, nx: np.ndarray, ny: np.ndarray) -> np.ndarray:
    """(B,) float64 bits: row b is ``float(np.mean(pmi_from_counts(k, n, nx[b] + 1, ny[b] + 1)))``
    bit for bit (what ``_null_tree`` computes per permutation), for strict counts nx, ny (B, N)
    integer in [0, N). ψ is tabulated once (the same scipy ψ of the same float64 arguments), the
    pMI formed with the same operations in the same order, and each row summed by numpy's mean
    along the contiguous axis (the same pairwise sum as a 1-D mean)."""
    from scipy.special import digamma

    from lmi_distributed.estimators.ksg import LN2

    psi1 = digamma(np.arange(1, n + 1, dtype=np.float64))  # psi1[c] = ψ(c + 1)
    c = digamma(k) + digamma(n)
    a = psi1[nx]
    np.subtract(c, a, out=a)
    a -= psi1[ny]
    a /= LN2
    return a.mean(axis=1)


def _null_tree(x, y, perms, k):
    n = x.shape[0]
    out = np.empty(perms.shape[0], dtype=np.float64)
    for b, p in enumerate(perms):
        _, nx, ny = knn_counts(x, y[p], kth=k, backend="tree")
        out[b] = float(np.mean(pmi_from_counts(k, n, nx + 1, ny + 1)))
    return out


def _null_tiled(x, y, perms, k):
    """Precomputed-marginal path, written against the array namespace of ``x``."""
    from lmi_distributed.estimators.neighbors.tiled import chebyshev_tile

    xp = array_namespace(x)
    n = x.shape[0]
    if n > PRECOMPUTE_MAX_N:
        out = np.empty(perms.shape[0], dtype=np.float64)
        for b, p in enumerate(perms):
            _, nx, ny = knn_counts(x, y[xp.asarray(p)], kth=k, backend="tiled")
            out[b] = float(np.mean(pmi_from_counts(k, n, nx + 1, ny + 1)))
        return out
    xT = xp.ascontiguousarray(x.T)
    yT = xp.ascontiguousarray(y.T)
    dx = chebyshev_tile(xp, xT, xT)
    dy = chebyshev_tile(xp, yT, yT)
    idx = xp.arange(n)
    dx[idx, idx] = xp.inf  # self is excluded by index
    dy[idx, idx] = xp.inf
    nx_all = []
    ny_all = []
    for p in perms:
        pd = xp.asarray(p)
        dyp_rows = dy[pd]                  # row i = Dy[π(i), :]
        dyp = dyp_rows[:, pd]              # Dy[π(i), π(j)]
        eps = xp.partition(xp.maximum(dx, dyp), k - 1, axis=1)[:, k - 1]
        nx_all.append(xp.sum(dx < eps[:, None], axis=1))
        ny_all.append(xp.sum(dyp_rows < eps[:, None], axis=1))
    nx = np.asarray(_host(xp.stack(nx_all)), dtype=np.float64)
    ny = np.asarray(_host(xp.stack(ny_all)), dtype=np.float64)
    return pmi_from_counts(k, n, nx + 1, ny + 1).mean(axis=1)


def _host(a):
    return a.get() if hasattr(a, "get") and type(a).__module__.startswith("cupy") else a


def _ties_possible(x, y, k: int) -> str:
    """Why some permutation could tie (a point with k exact copies of its joint row), or "".

    A joint tie needs k + 1 equal rows in BOTH zx and zy; if either side has no row repeated
    more than k times, no permutation can create one."""
    from lmi_distributed.estimators.diagnostics import row_multiplicity

    mx, my = row_multiplicity(np.asarray(_host(x))).max(), row_multiplicity(np.asarray(_host(y))).max()
    if mx > k and my > k:
        return (f"zx and zy both have a row repeated more than k={k} times ({mx} and {my} copies), so "
                f"permutations can pair k+1 exact copies and KSG's zero-distance ties would inflate "
                f"the null; add KSG noise (ksg_noise > 0) or pass ties='allow'")
    return ""


#: ``method`` values of :func:`latent_permutation_null` (CPU "tree" backend only)
METHODS = ("auto", "lists", "loop")


def latent_permutation_null(zx, zy, *, n_permutations: int, seed: int, k: int = 3,
                            backend: str = "auto", ties: str = "raise",
                            method: str = "auto") -> np.ndarray:
    """Null distribution of KSG MI under row permutations of ``zy``, in bits.

    zx (N, dx), zy (N, dy): held-out latents (numpy or cupy). n_permutations: B >= 0.
    seed: integer seed of ``draw_permutations``. k: KSG neighbour order. backend: "auto"
    ("cupy" for CuPy inputs when a GPU is usable, else "tree"), "tree", "tiled" or "cupy".
    ties: "raise" (default): InputError when a permutation could create zero-distance joint ties
    (both sides have a row repeated more than k times); "allow": compute regardless.
    method (CPU "tree" backend): "lists" (sorted marginal lists computed once, numba), "loop"
    (one tree-backend KSG per permutation) or "auto" ("lists" where numba is installed,
    N <= ``LISTS_MAX_N`` and B >= max(``LISTS_MIN_PERMUTATIONS``, N / 500), else "loop"); all
    give bit-identical nulls.
    Returns (B,) float64: MI in bits of (zx, zy[π_b]) for each permutation π_b.
    """
    k = _check_k(k)
    if ties not in ("raise", "allow"):
        raise InputError(f"ties must be 'raise' or 'allow', got {ties!r}")
    if isinstance(n_permutations, bool) or not isinstance(n_permutations, (int, np.integer)) \
            or n_permutations < 0:
        raise InputError(f"n_permutations must be an integer >= 0, got {n_permutations!r}")
    if seed is None or isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise InputError(f"seed must be an integer, got {seed!r}")
    x, y = _check_pair(zx, zy, "zx", "zy")
    n = x.shape[0]
    if n <= k:
        raise InputError(f"KSG needs more samples than k: got N={n} with k={k}")
    if backend not in ("auto", "tree", "tiled", "cupy"):
        raise InputError(f"unknown KSG backend {backend!r}")
    if method not in METHODS:
        raise InputError(f"method must be one of {METHODS}, got {method!r}")
    why = _ties_possible(x, y, k) if ties == "raise" and n_permutations > 0 else ""
    if why:
        raise InputError(why)
    perms = draw_permutations(n, int(n_permutations), int(seed))
    if n_permutations == 0:
        return np.zeros(0, dtype=np.float64)
    xp = array_namespace(x)
    if backend == "auto":
        backend = "cupy" if (xp.__name__ == "cupy" and device.cupy_usable()) else "tree"
    if backend == "cupy":
        from lmi_distributed.estimators.neighbors import cupy_kernels, resolve_backend

        resolve_backend("cupy")  # raises InputError without cupy / a CUDA device

        return cupy_kernels.permutation_null(x, y, perms, k=k, dtype="float64")
    if backend == "tiled":
        return _null_tiled(x, y, perms, k)
    from lmi_distributed.estimators.neighbors import permuted

    if method == "lists" and not permuted.HAVE_NUMBA:
        raise InputError("method='lists' needs numba; use method='loop'")
    if method == "lists" or (method == "auto" and permuted.HAVE_NUMBA and n <= LISTS_MAX_N
                             and n_permutations >= max(LISTS_MIN_PERMUTATIONS, n // 500)):
        return _null_lists(_host(x), _host(y), perms, k)
    return _null_tree(_host(x), _host(y), perms, k)


def result_latent_null(res, *, n_permutations: int, seed: int, backend: str = "auto") -> np.ndarray:
    """Latent permutation null of one fitted pair, on exactly what its observed MI saw.
    With a canonical view (``view="select"``, ``res.cx`` not None) every null value is the
    larger of the latents' and the canonical view's KSG (minus ``res.canonical_bias``, as observed)
    under the same permutation, as ``res.mi`` is the larger of the two observed (:mod:`.canonical`).

    ``res``: an ``api.LMIResult``. The held-out latents ``res.zx[res.test_idx]``,
    ``res.zy[res.test_idx]`` get the same seeded KSG jitter as the observed estimate
    (``settings.ksg_noise`` from ``derive_seed(res.seed, "ksg")``, x block then y block), then the
    Y rows are permuted (``draw_permutations(n_test, n_permutations, seed)``). Returns
    (n_permutations,) float64 bits; all NaN when ``res.status`` is not "ok" (no null for a number
    that was not reported), and all NaN with an ``LMIWarning`` when permutations could create
    zero-distance ties (see :func:`latent_permutation_null`; not with a usable ``ksg_noise > 0``).
    """
    import warnings

    from lmi_distributed.errors import LMIWarning
    from lmi_distributed.estimators.ksg import add_noise
    from lmi_distributed.estimators.seeding import derive_seed

    if res.status != "ok":
        return np.full(int(n_permutations), np.nan)
    test = np.asarray(res.test_idx)
    s = res.settings
    zx, zy = add_noise([np.asarray(res.zx[test], np.float64), np.asarray(res.zy[test], np.float64)],
                       s.ksg_noise, derive_seed(res.seed, "ksg"))
    why = _ties_possible(zx, zy, s.k) if n_permutations > 0 else ""
    if why:
        warnings.warn(f"seed {res.seed}: no latent null (all NaN): {why}", LMIWarning, stacklevel=2)
        return np.full(int(n_permutations), np.nan)
    null = latent_permutation_null(zx, zy, n_permutations=n_permutations, seed=seed, k=s.k, backend=backend)
    if res.cx is not None:
        # view="select" reported the larger of two held-out estimates: the null takes the same
        # maximum, the canonical view permuted by the very same permutations (same seed, same n)
        from lmi_distributed.estimators.canonical import ksg_input

        cu, cv = ksg_input(res.cx[test], res.cy[test], s.ksg_noise, res.seed)
        cbackend = backend if backend != "cupy" else "auto"
        # the canonical estimate is KSG minus a bias fitted on the training rows (settings.view_bias),
        # the same number under every permutation of the held-out rows
        null = np.maximum(null, latent_permutation_null(cu, cv, n_permutations=n_permutations, seed=seed,
                                                        k=s.k, backend=cbackend) - res.canonical_bias)
    return null
