"""Exact KSG counts of (x, y[π]) for many row permutations π, from sorted marginal lists.

What does not change between permutations is computed once: for every point i of a marginal
space, the other points ordered by their Chebyshev distance to i, with those distances
(``MarginalLists``: ``dist[i, t]`` ascending, ``idx[i, t]`` the point; self excluded by index).
Permutation π then needs, for every row i,

- eps_i: the k-th smallest joint distance D_ij = max(dx(i, j), dy(π(i), π(j))), j ≠ i. Row i's
  x list gives candidates j in ascending dx; row π(i)'s y list gives candidates l = π(j) in
  ascending dy (j = π⁻¹(l)). ONE of them is read, the sparser at rank ``MRANK`` (fewer
  candidates below the radius), and every candidate's D computed exactly (the known side from
  the list, the other side from the coordinates); a point not yet read has D >= the list's next
  distance, so as soon as that reaches the current k-th best, the k-th best is eps_i exactly
  (ties included: it is the k-th smallest value of the multiset).
- n_x,i = #{j ≠ i: dx(i, j) < eps_i}: a left binary search in row i's sorted x distances;
  n_y,i = #{j ≠ i: dy(π(i), π(j)) < eps_i} = #{l ≠ π(i): dy(π(i), l) < eps_i}: the same in
  row π(i)'s sorted y distances (a count needs no permuting).

Every distance is ``max_c |a_c - b_c|`` in float64, as in the tree, tiled and CuPy backends
(``|fl(a - b)| == |fl(b - a)|``, ``max`` is exact), so the radii and counts are identical to
theirs for the same permuted data, and the nulls built from them are bit-identical.

Lists longer than the memory budget are truncated to their first ``L`` entries; a row whose
scan runs past both truncated lists, or whose count radius lies beyond its list, is done by
brute force over all N points (same numbers, slower). Needs numba.
"""

from __future__ import annotations

import numpy as np

from lmi_distributed.estimators.neighbors import tree as _tree

__all__ = ["MarginalLists", "permuted_counts", "HAVE_NUMBA", "LIST_BYTES"]

HAVE_NUMBA = _tree.HAVE_NUMBA

#: memory budget of the sorted lists of BOTH marginal spaces together (12 bytes per entry:
#: float64 distance + int32 index); full lists (N - 1 per point) up to N ~ 4700
LIST_BYTES = 512 * 2**20

#: columns of the short, cache-resident copy of each list's prefix (most searches end there)
SHORT_COLS = 128

#: the list rank at which the sparser side (the one to read) is chosen
MRANK = 32

#: block length of the per-point summaries (8 float64 = one cache line)
_G = 8


if HAVE_NUMBA:
    nb = _tree._nb
    _cheb_below = _tree.cheb_below
    _insert_best = _tree.insert_best

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def _distance_keys(pts, r0, r1, bits):  # pragma: no cover - jitted
        # rows (r1 - r0, N) float64: Chebyshev distances of points r0..r1-1 to all points (self
        # set to inf: sorts last, dropped), and keys (r1 - r0, N) uint64: each distance's bit
        # pattern (ordered as the distances: they are >= 0) with its low ``bits`` replaced by j
        n = pts.shape[0]
        d = pts.shape[1]
        rows = np.empty((r1 - r0, n), dtype=np.float64)
        keys = np.empty((r1 - r0, n), dtype=np.uint64)
        hi = ~np.uint64((1 << bits) - 1)
        for a in nb.prange(r1 - r0):
            i = r0 + a
            for j in range(n):
                m = 0.0
                for c in range(d):
                    t = abs(pts[j, c] - pts[i, c])
                    if t > m:
                        m = t
                rows[a, j] = m
            rows[a, i] = np.inf  # self excluded by index: sorts last, dropped
            v = rows[a].view(np.uint64)
            for j in range(n):
                keys[a, j] = (v[j] & hi) | np.uint64(j)
        return rows, keys

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def _decode_rows(keys, rows, bits, dist, idx):  # pragma: no cover - jitted
        # keys (R, >= L) uint64 ascending per row, key = (distance bits with the low ``bits``
        # cleared) | point; rows (R, N) the exact distances. Writes dist/idx (R, L): the points
        # of the keys in order, made exactly ascending by insertion (only distances that agree
        # but for their low ``bits`` mantissa bits can be out of order; equal ones keep the
        # key order, i.e. point order)
        mask = np.uint64((1 << bits) - 1)
        for a in nb.prange(dist.shape[0]):
            drow = dist[a]
            irow = idx[a]
            for t in range(drow.shape[0]):
                j = np.int32(keys[a, t] & mask)
                dv = rows[a, j]
                s = t
                while s > 0 and drow[s - 1] > dv:
                    drow[s] = drow[s - 1]
                    irow[s] = irow[s - 1]
                    s -= 1
                drow[s] = dv
                irow[s] = j

    @nb.njit(inline="always", boundscheck=False)
    def _cheb(a, b):  # pragma: no cover - jitted
        # Chebyshev distance of the 1-D rows a and b, without data-dependent branches (short
        # rows: a full pass beats the early exit's mispredictions); max is exact in any order
        m = 0.0
        for c in range(a.shape[0]):
            m = max(m, abs(a[c] - b[c]))
        return m

    @nb.njit(inline="always", boundscheck=False)
    def _below(srow, t0, t1, r):  # pragma: no cover - jitted
        # first position p in [t0, t1) with srow[p] >= r (srow ascending), else t1
        lo = t0
        hi = t1
        while lo < hi:
            mid = (lo + hi) >> 1
            if srow[mid] >= r:
                hi = mid
            else:
                lo = mid + 1
        return lo

    @nb.njit(inline="always", boundscheck=False)
    def _gallop(srow, t0, r):  # pragma: no cover - jitted
        # first position p >= t0 with srow[p] >= r, else len(srow); probes stay near the answer
        n = srow.shape[0]
        lo = t0
        step = 1
        hi = min(n, lo + step)
        while hi < n and srow[hi - 1] < r:
            lo = hi
            step *= 2
            hi = min(n, lo + step)
        return _below(srow, lo, hi, r)

    @nb.njit(inline="always", boundscheck=False)
    def _count_lt(skip, short, full, pts, q, r):  # pragma: no cover - jitted
        # #{j != q: cheb(pts[j], pts[q]) < r} from q's sorted distances: the block summary
        # skip[b] = short[G*b + G - 1] (cache-resident) picks one block of G entries of the
        # short prefix; beyond it the longer list, then (truncated lists) brute force
        nq = skip.shape[0]
        for b in range(nq):
            if skip[b] >= r:
                return _below(short, b * _G, b * _G + _G, r)
        ls = short.shape[0]
        if short[ls - 1] >= r:
            return _below(short, nq * _G, ls, r)
        lf = full.shape[0]
        c = _below(full, ls, lf, r)
        n = pts.shape[0]
        if c < lf or lf == n - 1:
            return c
        cnt = 0
        for j in range(n):
            if j != q and _cheb_below(pts[j], pts[q], r) < r:
                cnt += 1
        return cnt

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def _permuted_counts(x, y, sx, ox, sy, oy, fsx, fox, fsy, foy, kx_, ky_, perms, kth,
                         mq):  # pragma: no cover
        # sx/ox, sy/oy: the short prefixes (N, Ls) of the lists fsx/fox, fsy/foy (N, L);
        # kx_, ky_: their block summaries (N, Ls // G); mq < 0: no summary to choose with
        nperm = perms.shape[0]
        n = x.shape[0]
        ls = sx.shape[1]
        lf = fsx.shape[1]
        nx_out = np.empty((nperm, n), dtype=np.int64)
        ny_out = np.empty((nperm, n), dtype=np.int64)
        for b in nb.prange(nperm):
            p = perms[b]
            pinv = np.empty(n, dtype=np.int32)
            for i in range(n):
                pinv[p[i]] = i
            yp = np.empty_like(y)  # yp[j] = y[pi(j)]
            for j in range(n):
                for c in range(y.shape[1]):
                    yp[j, c] = y[p[j], c]
            best = np.empty(kth, dtype=np.float64)
            for i in range(n):
                pi = p[i]
                # read the one list with fewer entries below the radius (the sparser side at
                # rank m has fewer points within any radius below there): its first kth entries
                # seed the k best (every j read gets its exact D), then it stops at its first
                # entry >= the (falling) k-th best: every unread j has D >= that entry. One list,
                # read once, holds no point twice: nothing to mark as seen.
                use_x = mq < 0 or kx_[i, mq] >= ky_[pi, mq]
                if use_x:
                    srow = sx[i]
                    orow = ox[i]
                    frow = fsx[i]
                    forow = fox[i]
                else:
                    srow = sy[pi]
                    orow = oy[pi]
                    frow = fsy[pi]
                    forow = foy[pi]
                for t in range(kth):
                    best[t] = np.inf
                cur = np.inf
                t = 0
                stopped = False
                while t < lf:
                    if t < ls:
                        dd = srow[t]
                        jj = orow[t]
                    else:
                        dd = frow[t]
                        jj = forow[t]
                    if dd >= cur:
                        stopped = True
                        break
                    t += 1
                    if use_x:
                        dist = max(dd, _cheb(yp[jj], yp[i]))
                    else:
                        dist = max(dd, _cheb(x[pinv[jj]], x[i]))
                    if dist < cur:
                        _insert_best(best, dist)
                        cur = best[kth - 1]
                if not stopped and lf < n - 1:
                    # a truncated list read below the radius: brute force over all j
                    for t in range(kth):
                        best[t] = np.inf
                    for j in range(n):
                        if j == i:
                            continue
                        c0 = best[kth - 1]
                        dist = _cheb_below(x[j], x[i], c0)
                        if dist < c0:
                            dist = max(dist, _cheb_below(yp[j], yp[i], c0))
                            if dist < c0:
                                _insert_best(best, dist)
                    t = 0
                eps = best[kth - 1]
                if not eps > 0:
                    nx_out[b, i] = 0
                    ny_out[b, i] = 0
                    continue
                # the list read holds exactly its first t' entries below eps, t' <= t
                if t > 0:
                    while t > 0 and (srow[t - 1] if t <= ls else frow[t - 1]) >= eps:
                        t -= 1
                    if use_x:
                        nx_out[b, i] = t
                        ny_out[b, i] = _count_lt(ky_[pi], sy[pi], fsy[pi], y, pi, eps)
                    else:
                        ny_out[b, i] = t
                        nx_out[b, i] = _count_lt(kx_[i], sx[i], fsx[i], x, i, eps)
                else:
                    nx_out[b, i] = _count_lt(kx_[i], sx[i], fsx[i], x, i, eps)
                    ny_out[b, i] = _count_lt(ky_[pi], sy[pi], fsy[pi], y, pi, eps)
        return nx_out, ny_out


class MarginalLists:
    """Each point's other points sorted by Chebyshev distance, in float64.

    pts (N, d) float64. ``dist`` (N, L) float64 ascending per row, ``idx`` (N, L) int32 the
    points (self excluded by index; equal distances in index order). L = N − 1 unless
    ``ncols`` truncates the lists to their first L entries.
    """

    def __init__(self, pts: np.ndarray, ncols: int | None = None):
        self.pts = np.ascontiguousarray(pts, dtype=np.float64)
        n = self.pts.shape[0]
        ncols = n - 1 if ncols is None else int(min(max(ncols, 1), n - 1))
        self.dist = np.empty((n, ncols), dtype=np.float64)
        self.idx = np.empty((n, ncols), dtype=np.int32)
        # sort uint64 keys (SIMD in numpy): the distance's bits (non-negative floats order as
        # their bit patterns) with the low ``bits`` replaced by the point, then exact fix-up
        bits = max(1, (n - 1).bit_length())
        step = max(1, (1 << 22) // max(n, 1))  # rows per block: ~32 MB of distances + 32 of keys
        for r0 in range(0, n, step):
            r1 = min(n, r0 + step)
            rows, keys = _distance_keys(self.pts, r0, r1, bits)
            keys.sort(axis=1)
            if ncols < n - 1:  # truncated: the first ncols of the exact full order
                dist = np.empty((r1 - r0, n - 1), dtype=np.float64)
                idx = np.empty((r1 - r0, n - 1), dtype=np.int32)
                _decode_rows(keys, rows, bits, dist, idx)
                self.dist[r0:r1] = dist[:, :ncols]
                self.idx[r0:r1] = idx[:, :ncols]
            else:
                _decode_rows(keys, rows, bits, self.dist[r0:r1], self.idx[r0:r1])
        ls = min(ncols, SHORT_COLS)
        self.short_dist = np.ascontiguousarray(self.dist[:, :ls])
        self.short_idx = np.ascontiguousarray(self.idx[:, :ls])
        #: (N, Ls // G) block summary: the last distance of every block of G short entries
        self.skip = np.ascontiguousarray(self.short_dist[:, _G - 1:(ls // _G) * _G:_G])


def list_columns(n: int, budget: int = LIST_BYTES) -> int:
    """Columns L of the two spaces' lists within ``budget`` bytes: N − 1, or fewer."""
    return int(max(1, min(n - 1, budget // (2 * 12 * max(n, 1)))))


def permuted_counts(x: np.ndarray, y: np.ndarray, perms: np.ndarray, kth: int, *,
                    lists: tuple[MarginalLists, MarginalLists] | None = None,
                    ncols: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Strict KSG counts of (x, y[π_b]) for every row π_b of ``perms``.

    x (N, dx), y (N, dy) float64; perms (B, N) integer, each row a permutation of 0..N−1;
    kth >= 1 with N > kth. ``lists``: precomputed ``(MarginalLists(x), MarginalLists(y))``
    (built here otherwise, with ``ncols`` columns, default :func:`list_columns`).
    Returns ``nx``, ``ny`` (B, N) int64: n_x,i and n_y,i of KSG on (x, y[π_b]) (see the module
    docstring), identical to ``knn_counts(x, y[π_b], kth=kth)[1:]``.
    """
    if not HAVE_NUMBA:
        raise RuntimeError("numba is not installed; the sorted-list permutation path needs it")
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    perms = np.ascontiguousarray(perms, dtype=np.int64)
    if lists is None:
        cols = list_columns(x.shape[0]) if ncols is None else ncols
        lists = (MarginalLists(x, cols), MarginalLists(y, cols))
    lx, ly = lists
    if lx.dist.shape[1] != ly.dist.shape[1] or lx.short_dist.shape[1] != ly.short_dist.shape[1]:
        raise ValueError("the x and y lists must have the same numbers of columns")
    return _permuted_counts(x, y, lx.short_dist, lx.short_idx, ly.short_dist, ly.short_idx,
                            lx.dist, lx.idx, ly.dist, ly.idx, lx.skip, ly.skip, perms, int(kth),
                            min(lx.skip.shape[1], MRANK // _G) - 1)
