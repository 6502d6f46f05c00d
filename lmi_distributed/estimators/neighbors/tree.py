"""CPU neighbour backend ("tree"): exact Chebyshev k-NN radii and strict marginal counts.

Algorithm: a sorted-axis sweep (a one-level "tree"). The reference points are sorted along
one coordinate; every query scans outward from its position in that order, and stops on each
side as soon as the gap along the sorting coordinate alone reaches the current bound (the
Chebyshev distance is at least that gap, and the gap grows monotonically along the sorted
order). Each candidate's distance is computed with an early exit over dimensions. In the
16-dimensional latent space of LMI, kd-trees and ball trees prune little, and this sweep is
several times faster than sklearn's KDTree while staying exact.

The kernels are compiled with numba (``parallel=True``) when numba is importable. Without numba
the backend falls back to ``scipy.spatial.cKDTree`` (slower, same numbers).

Every distance is ``max_c |r_c - q_c|`` evaluated in float64 (subtraction is correctly rounded,
``abs`` and ``max`` are exact, and ``|fl(a - b)| == |fl(b - a)|``), so this backend, the tiled
backend run in float64 and the CuPy kernels run in float64 see bit-identical distances and give
identical counts.
"""

from __future__ import annotations

import os
import threading

import numpy as np

__all__ = ["knn_counts", "HAVE_NUMBA", "available_impls", "auto_impl"]

try:  # numba is optional: it makes this backend ~10x faster than the scipy fallback
    import numba as _nb

    # numba's OpenMP threading layer shares libgomp with torch: its set_num_threads would
    # reset torch's intra-op thread count (e.g. a Ray worker pinned to 1 thread jumps to all
    # cores, and two such workers on 2 cores run ~5x slower). The workqueue layer touches no
    # OpenMP state. A user's NUMBA_THREADING_LAYER still wins.
    if "NUMBA_THREADING_LAYER" not in os.environ:
        _nb.config.THREADING_LAYER = "workqueue"
    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised where numba is absent
    _nb = None
    HAVE_NUMBA = False


_NUMBA_LOCK = threading.Lock()
#: below N * M pairs the numba kernels run single-threaded
_PARALLEL_MIN_PAIRS = 4_000_000


def available_impls() -> list[str]:
    """Implementations of this backend that can run here: the numba ones ("bitset", "kdtree",
    "sweep") where numba is installed, and "scipy"."""
    return (["bitset", "kdtree", "sweep"] if HAVE_NUMBA else []) + ["scipy"]


#: block length of the bitset kernels' two-level searches: the coarse array holds every
#: _BLK-th sorted value
_BLK = 16

#: from this many reference points on, "auto" picks the kd-tree/bitset kernels of kdtree.py
#: (measured on 8+8-dim latents, 2 threads: bitset 2.0 / 4.5 / 16.7 / 53.6 s at
#: N = 3e4 / 5e4 / 1e5 / 2e5, kdtree 2.6 / 6.2 / 18.3 / 50.2 s)
_KDTREE_MIN_N = 150_000


def auto_impl(n_ref: int) -> str:
    """The implementation ``impl="auto"`` runs for ``n_ref`` reference points."""
    if not HAVE_NUMBA:
        return "scipy"
    return "kdtree" if n_ref >= _KDTREE_MIN_N else "bitset"


# --------------------------------------------------------------------------------------------
# numba kernels
# --------------------------------------------------------------------------------------------
def _get_kernels():
    return _KERNELS


if HAVE_NUMBA:
    nb = _nb

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def cheb_below(a, b, cur):  # pragma: no cover - jitted
        # Chebyshev distance of the 1-D rows a and b, with an early exit: once the running
        # maximum reaches cur the returned value is only known to be >= cur.
        dist = 0.0
        for c in range(a.shape[0]):
            t = abs(a[c] - b[c])
            if t > dist:
                dist = t
                if dist >= cur:
                    break
        return dist

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def cheb_full(a, b):  # pragma: no cover - jitted
        # Chebyshev distance of the 1-D rows a and b, no early exit (branch-free: faster than
        # cheb_below when the row is known to be close, e.g. a candidate within a bound)
        dist = 0.0
        for c in range(a.shape[0]):
            dist = max(dist, abs(a[c] - b[c]))
        return dist

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def cheb_within(a, b, r):  # pragma: no cover - jitted
        # True when the Chebyshev distance of the 1-D rows a and b is strictly below r
        for c in range(a.shape[0]):
            if abs(a[c] - b[c]) >= r:
                return False
        return True

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def insert_best(best, dist):  # pragma: no cover - jitted
        # insert dist into the ascending array best (length kth), dropping its largest entry
        s = best.shape[0] - 1
        while s > 0 and best[s - 1] > dist:
            best[s] = best[s - 1]
            s -= 1
        best[s] = dist

    @nb.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
    def kth_radius(ref, axis, q, qaxis, qpos, self_pos, kth):  # pragma: no cover - jitted
        # ref (N, d) sorted by ref[:, axis]; q (M, d); qpos (M,) start positions in that order;
        # self_pos (M,) position to skip (-1: none). Returns the kth smallest distance.
        n = ref.shape[0]
        m_total = q.shape[0]
        out = np.empty(m_total, dtype=np.float64)
        for m in nb.prange(m_total):
            best = np.full(kth, np.inf)
            qa = q[m, axis]
            sp = self_pos[m]
            lo = qpos[m] - 1
            hi = qpos[m]
            lo_open = lo >= 0
            hi_open = hi < n
            while lo_open or hi_open:
                cur = best[kth - 1]
                # pick the side whose next candidate is closer along the sort axis
                glo = np.inf
                ghi = np.inf
                if lo_open:
                    glo = abs(ref[lo, axis] - qa)
                    if glo >= cur:
                        lo_open = False
                        glo = np.inf
                if hi_open:
                    ghi = abs(ref[hi, axis] - qa)
                    if ghi >= cur:
                        hi_open = False
                        ghi = np.inf
                if not (lo_open or hi_open):
                    break
                if hi_open and (not lo_open or ghi <= glo):
                    j = hi
                    hi += 1
                    if hi >= n:
                        hi_open = False
                else:
                    j = lo
                    lo -= 1
                    if lo < 0:
                        lo_open = False
                if j == sp:
                    continue
                dist = cheb_below(ref[j], q[m], cur)
                if dist < cur:
                    insert_best(best, dist)
            out[m] = best[kth - 1]
        return out

    @nb.njit(parallel=True, cache=True, fastmath=False, boundscheck=False)
    def strict_count(ref, axis, q, qpos, self_pos, radius):  # pragma: no cover - jitted
        # counts #{j != self: max_c |ref_j,c - q_c| < radius}, ref sorted by ref[:, axis]
        n = ref.shape[0]
        m_total = q.shape[0]
        out = np.zeros(m_total, dtype=np.int64)
        for m in nb.prange(m_total):
            r = radius[m]
            qa = q[m, axis]
            sp = self_pos[m]
            cnt = 0
            j = qpos[m]
            while j < n:
                if abs(ref[j, axis] - qa) >= r:
                    break
                if j != sp and cheb_within(ref[j], q[m], r):
                    cnt += 1
                j += 1
            j = qpos[m] - 1
            while j >= 0:
                if abs(ref[j, axis] - qa) >= r:
                    break
                if j != sp and cheb_within(ref[j], q[m], r):
                    cnt += 1
                j -= 1
            out[m] = cnt
        return out

    _KERNELS = {"kth_radius": kth_radius, "strict_count": strict_count}
else:  # pragma: no cover
    _KERNELS = {}


class _Sorted:
    """Reference points sorted along their widest coordinate, with query start positions."""

    def __init__(self, ref: np.ndarray):
        spread = ref.max(axis=0) - ref.min(axis=0) if ref.shape[0] else np.zeros(ref.shape[1])
        self.axis = int(np.argmax(spread))
        self.order = np.argsort(ref[:, self.axis], kind="stable")
        self.ref = np.ascontiguousarray(ref[self.order])
        self.rank = np.empty_like(self.order)
        self.rank[self.order] = np.arange(self.order.size)

    def start(self, q: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """(qpos, self_pos) for queries ``q``; ``None`` means the reference itself (in-sample)."""
        if q is None:
            return self.rank, self.rank
        qpos = np.searchsorted(self.ref[:, self.axis], q[:, self.axis], side="left").astype(np.int64)
        return qpos, np.full(q.shape[0], -1, dtype=np.int64)


def _numba_knn_counts(rx, ry, qx, qy, kth):
    ker = _get_kernels()
    rj = np.hstack([rx, ry])
    qj = None if qx is None else np.ascontiguousarray(np.hstack([qx, qy]))
    sj = _Sorted(rj)
    qpos, spos = sj.start(qj)
    qarr = sj.ref if qj is None else qj
    if qj is None:  # in-sample: iterate in sorted order (cache friendly), map back
        eps_sorted = ker["kth_radius"](sj.ref, sj.axis, sj.ref, sj.axis,
                                       np.arange(rj.shape[0], dtype=np.int64),
                                       np.arange(rj.shape[0], dtype=np.int64), kth)
        eps = np.empty_like(eps_sorted)
        eps[sj.order] = eps_sorted
    else:
        ordq = np.argsort(qpos, kind="stable")
        e = ker["kth_radius"](sj.ref, sj.axis, np.ascontiguousarray(qarr[ordq]), sj.axis,
                              qpos[ordq], spos[ordq], kth)
        eps = np.empty_like(e)
        eps[ordq] = e
    counts = []
    for r, q in ((rx, qx), (ry, qy)):
        s = _Sorted(r)
        if q is None:
            c_sorted = ker["strict_count"](s.ref, s.axis, s.ref,
                                           np.arange(r.shape[0], dtype=np.int64),
                                           np.arange(r.shape[0], dtype=np.int64),
                                           np.ascontiguousarray(eps[s.order]))
            c = np.empty_like(c_sorted)
            c[s.order] = c_sorted
        else:
            qpos_m, spos_m = s.start(q)
            ordq = np.argsort(qpos_m, kind="stable")
            cs = ker["strict_count"](s.ref, s.axis, np.ascontiguousarray(q[ordq]), qpos_m[ordq],
                                     spos_m[ordq], np.ascontiguousarray(eps[ordq]))
            c = np.empty_like(cs)
            c[ordq] = cs
        counts.append(c)
    return eps, counts[0], counts[1]


# --------------------------------------------------------------------------------------------
# numba bitset kernels (default implementation)
#
# Points are stored in the order of one "primary" coordinate; point p of that order is bit p.
# For every coordinate c, S[c] holds the sorted values and ordbit[c] the bit of each sorted
# position; T[c, b] is the bitset of the first b*G positions in that order (a prefix table
# sampled every G positions). The strict range {p: |S[c][p] - q_c| < r} is contiguous,
# [lo, hi), found by a two-level binary search with the exact floating-point predicate; its
# bitset is T[c, hb] ^ T[c, lb] (the prefix rows nearest to hi and lo) plus at most G single-bit
# fixes. ANDing the per-coordinate
# bitsets of a block of coordinates and counting bits gives the strict Chebyshev count; the
# primary coordinate's range is a contiguous run of bits and limits the words touched.
# The joint k-th distance: an upper bound U (k-th distance to a strided subsample) gives a
# candidate bitset {D <= U} whose members are scanned with exact distances.
# --------------------------------------------------------------------------------------------
def _get_bit_kernels():
    return _BITS


if HAVE_NUMBA:
    # popcount / count-trailing-zeros in plain numba (LLVM turns the SWAR idiom into popcnt);
    # llvmlite intrinsics would block numba's on-disk cache
    _M1 = np.uint64(0x5555555555555555)
    _M2 = np.uint64(0x3333333333333333)
    _M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
    _H01 = np.uint64(0x0101010101010101)

    @nb.njit(cache=True, inline="always")
    def popc(x):  # pragma: no cover - compiled
        x = x - ((x >> np.uint64(1)) & _M1)
        x = (x & _M2) + ((x >> np.uint64(2)) & _M2)
        x = (x + (x >> np.uint64(4))) & _M4
        return (x * _H01) >> np.uint64(56)

    @nb.njit(cache=True, inline="always")
    def cttz(x):  # pragma: no cover - compiled
        return popc((x & (~x + np.uint64(1))) - np.uint64(1))

    one = np.uint64(1)
    allones = np.uint64(0xFFFFFFFFFFFFFFFF)

    @nb.njit(cache=True, inline="always")
    def first_gt(s, q, t):  # pragma: no cover - compiled
        # first p with (s[p] - q) > t ; s sorted ascending, (s[p] - q) monotone in p
        lo = 0
        hi = s.shape[0]
        while lo < hi:
            mid = (lo + hi) >> 1
            if s[mid] - q > t:
                hi = mid
            else:
                lo = mid + 1
        return lo

    @nb.njit(cache=True, inline="always")
    def first_ge(s, q, t):  # pragma: no cover - compiled
        lo = 0
        hi = s.shape[0]
        while lo < hi:
            mid = (lo + hi) >> 1
            if s[mid] - q >= t:
                hi = mid
            else:
                lo = mid + 1
        return lo

    @nb.njit(cache=True, inline="always")
    def first_gt2(s, cs, q, t):  # pragma: no cover - compiled
        # first_gt(s, q, t) in two levels: cs[b] = s[_BLK*b + _BLK - 1] is small enough to stay
        # in cache, so only the final block's one or two cache lines are fetched from memory
        lo = first_gt(cs, q, t) * _BLK
        return lo + first_gt(s[lo:lo + _BLK], q, t)

    @nb.njit(cache=True, inline="always")
    def first_ge2(s, cs, q, t):  # pragma: no cover - compiled
        lo = first_ge(cs, q, t) * _BLK
        return lo + first_ge(s[lo:lo + _BLK], q, t)

    @nb.njit(parallel=True, cache=True)
    def sort_columns(xbt, prim):  # pragma: no cover - compiled
        # xbt (d, n): per coordinate c, ordbit[c] = stable ascending order of xbt[c] (the
        # identity for the primary coordinate, already sorted) and s[c] = xbt[c][ordbit[c]]
        d, n = xbt.shape
        ordbit = np.empty((d, n), dtype=np.int64)
        s = np.empty((d, n), dtype=np.float64)
        for c in nb.prange(d):
            if c == prim:
                for p in range(n):
                    ordbit[c, p] = p
            else:
                ordbit[c] = np.argsort(xbt[c], kind="mergesort")
            for p in range(n):
                s[c, p] = xbt[c, ordbit[c, p]]
        return ordbit, s

    @nb.njit(cache=True)
    def build_tables(ordbit, g, w):  # pragma: no cover - compiled
        d, n = ordbit.shape
        nblk = n // g
        tab = np.zeros((d, nblk + 1, w), dtype=np.uint64)
        for c in nb.prange(d):
            for b in range(1, nblk + 1):
                for ww in range(w):
                    tab[c, b, ww] = tab[c, b - 1, ww]
                for p in range((b - 1) * g, b * g):
                    bit = ordbit[c, p]
                    tab[c, b, bit >> 6] |= one << np.uint64(bit & 63)
        return tab

    @nb.njit(cache=True, inline="always")
    def and_ranges(acc, tmp, s, cs, ordbit, tab, g, n, c0, c1, prim, q, r):  # pragma: no cover
        # acc <- bitset of {p: |s[c][p] - q[c]| < r for all c in [c0, c1)}; returns (w0, w1)
        # (the word range that may be non-zero; w0 == w1 means empty)
        nwords = acc.shape[0]
        if prim >= c0 and prim < c1:
            lo = first_gt2(s[prim], cs[prim], q[prim], -r)
            hi = first_ge2(s[prim], cs[prim], q[prim], r)
            if lo >= hi:
                return 0, 0
            w0 = lo >> 6
            w1 = (hi + 63) >> 6
            for ww in range(w0, w1):
                acc[ww] = allones
            acc[w0] &= allones << np.uint64(lo & 63)
            rem = hi - ((w1 - 1) << 6)
            if rem < 64:
                acc[w1 - 1] &= (one << np.uint64(rem)) - one
        else:
            w0 = 0
            w1 = nwords
            for ww in range(nwords):
                acc[ww] = allones
            rem = n - ((nwords - 1) << 6)
            if rem < 64:
                acc[nwords - 1] = (one << np.uint64(rem)) - one
        nblk = tab.shape[1] - 1
        for c in range(c0, c1):
            if c == prim:
                continue
            sc = s[c]
            lo = first_gt2(sc, cs[c], q[c], -r)
            hi = first_ge2(sc, cs[c], q[c], r)
            if lo >= hi:
                return 0, 0
            # the nearest sampled prefix row on each side (T[b] ^ T[lo] = the positions between
            # b*g and lo, toggled one by one): about g/4 single-bit fixes per end on average
            lb = min((lo + (g >> 1)) // g, nblk)
            hb = min((hi + (g >> 1)) // g, nblk)
            tl = tab[c, lb]
            th = tab[c, hb]
            for ww in range(w0, w1):
                tmp[ww] = th[ww] ^ tl[ww]
            # single-bit fixes may land outside [w0, w1): tmp is full length and those words
            # are never read
            oc = ordbit[c]
            for p in range(min(hb * g, hi), max(hb * g, hi)):
                bit = oc[p]
                tmp[bit >> 6] ^= one << np.uint64(bit & 63)
            for p in range(min(lb * g, lo), max(lb * g, lo)):
                bit = oc[p]
                tmp[bit >> 6] ^= one << np.uint64(bit & 63)
            anyset = np.uint64(0)
            for ww in range(w0, w1):
                v = acc[ww] & tmp[ww]
                acc[ww] = v
                anyset |= v
            if anyset == 0:
                return 0, 0
        return w0, w1

    # Each parallel kernel below runs its queries in chunks (numba prange) and every chunk calls
    # a serial function compiled on its own. Measured at N = 1e4 (8+8 dims, one thread): bits_knn
    # 0.25 -> 0.14 s (median of 9) against the same loops written inside the prange body, which
    # numba's parfor lowering optimises less well; the whole KSG on 2 threads 0.21 -> 0.16 s.
    @nb.njit(cache=True)
    def _count_range(s, cs, ordbit, tab, g, n, c0, c1, prim, q, self_bit, radius, m0, m1,
                     out):  # pragma: no cover
        nwords = (n + 63) >> 6
        acc = np.empty(nwords, dtype=np.uint64)
        tmp = np.empty(nwords, dtype=np.uint64)
        for m in range(m0, m1):
            r = radius[m]
            if not r > 0:
                out[m] = 0
                continue
            w0, w1 = and_ranges(acc, tmp, s, cs, ordbit, tab, g, n, c0, c1, prim, q[m], r)
            cnt = 0
            for ww in range(w0, w1):
                cnt += int(popc(acc[ww]))
            if self_bit[m] >= 0 and w1 > w0:
                cnt -= 1  # the point itself (distance 0 < r) is in every range
            out[m] = cnt

    @nb.njit(parallel=True, cache=True)
    def bits_count(s, cs, ordbit, tab, g, n, c0, c1, prim, q, self_bit, radius, nchunk):  # pragma: no cover
        m_total = q.shape[0]
        out = np.empty(m_total, dtype=np.int64)
        nchunk = max(1, min(m_total, nchunk))
        for ch in nb.prange(nchunk):
            _count_range(s, cs, ordbit, tab, g, n, c0, c1, prim, q, self_bit, radius,
                         ch * m_total // nchunk, (ch + 1) * m_total // nchunk, out)
        return out

    @nb.njit(cache=True)
    def _knn_range(xb, s, cs, ordbit, tab, g, n, prim, q, self_bit, bound, kth, m0, m1,
                   out):  # pragma: no cover
        d = xb.shape[1]
        nwords = (n + 63) >> 6
        acc = np.empty(nwords, dtype=np.uint64)
        tmp = np.empty(nwords, dtype=np.uint64)
        best = np.empty(kth, dtype=np.float64)
        for m in range(m0, m1):
            r = np.nextafter(bound[m], np.inf)
            w0, w1 = and_ranges(acc, tmp, s, cs, ordbit, tab, g, n, 0, d, prim, q[m], r)
            for t in range(kth):
                best[t] = np.inf
            sb = self_bit[m]
            qm = q[m]
            for ww in range(w0, w1):
                word = acc[ww]
                while word != 0:
                    j = (ww << 6) + int(cttz(word))
                    word &= word - one
                    if j == sb:
                        continue
                    dist = cheb_full(xb[j], qm)   # every candidate is within the bound
                    if dist < best[kth - 1]:
                        insert_best(best, dist)
            out[m] = best[kth - 1]

    @nb.njit(parallel=True, cache=True)
    def bits_knn(xb, s, cs, ordbit, tab, g, n, prim, q, self_bit, bound, kth, nchunk):  # pragma: no cover
        # kth smallest joint distance to the points of xb (bit order), self bit excluded;
        # candidates are {D <= bound} (bound >= the answer is required)
        m_total = q.shape[0]
        out = np.empty(m_total, dtype=np.float64)
        nchunk = max(1, min(m_total, nchunk))
        for ch in nb.prange(nchunk):
            _knn_range(xb, s, cs, ordbit, tab, g, n, prim, q, self_bit, bound, kth,
                       ch * m_total // nchunk, (ch + 1) * m_total // nchunk, out)
        return out

    @nb.njit(cache=True)
    def _bound_range(subt, q, self_sub, kth, m0, m1, out):  # pragma: no cover - compiled
        d, ns = subt.shape
        dist = np.empty(ns, dtype=np.float64)
        best = np.empty(kth, dtype=np.float64)
        for m in range(m0, m1):
            qm = q[m]
            row = subt[0]
            q0 = qm[0]
            for j in range(ns):
                dist[j] = abs(row[j] - q0)
            for c in range(1, d):
                row = subt[c]
                qc = qm[c]
                for j in range(ns):
                    t = abs(row[j] - qc)
                    dist[j] = t if t > dist[j] else dist[j]
            if self_sub[m] >= 0:
                dist[self_sub[m]] = np.inf
            for t in range(kth):
                best[t] = np.inf
            for j in range(ns):
                if dist[j] < best[kth - 1]:
                    insert_best(best, dist[j])
            out[m] = best[kth - 1]

    @nb.njit(parallel=True, cache=True)
    def brute_bound(subt, q, self_sub, kth, nchunk):  # pragma: no cover - compiled
        # kth smallest Chebyshev distance from each query q[m] to the columns of subt (d, S),
        # column self_sub[m] excluded (-1: none). Brute force, coordinate-major so that the
        # inner loop over columns vectorises; exact (max of |a - b| does not depend on order).
        m_total = q.shape[0]
        out = np.empty(m_total, dtype=np.float64)
        nchunk = max(1, min(m_total, nchunk))
        for ch in nb.prange(nchunk):
            _bound_range(subt, q, self_sub, kth, ch * m_total // nchunk,
                         (ch + 1) * m_total // nchunk, out)
        return out

    _BITS = {"build_tables": build_tables, "sort_columns": sort_columns, "bits_count": bits_count,
             "bits_knn": bits_knn, "brute_bound": brute_bound}
else:  # pragma: no cover
    _BITS = {}


class _BitSpace:
    """Points in primary-coordinate order with per-coordinate sorted values and prefix tables."""

    def __init__(self, pts: np.ndarray, prim: int, col_orders: np.ndarray | None = None):
        # col_orders (d, n), optional: for each coordinate, the input rows in ascending order
        # of that coordinate (saves the argsorts when another space already sorted them)
        n, d = pts.shape
        self.n, self.d, self.prim = n, d, prim
        self.perm = (np.argsort(pts[:, prim], kind="stable") if col_orders is None
                     else col_orders[prim])
        self.xb = np.ascontiguousarray(pts[self.perm])
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.perm] = np.arange(n)
        if col_orders is None:  # sort every coordinate (in parallel)
            ordbit, self.s = _get_bit_kernels()["sort_columns"](
                np.ascontiguousarray(self.xb.T), prim)
        else:
            ordbit = np.empty((d, n), dtype=np.int64)
            for c in range(d):
                ordbit[c] = np.arange(n) if c == prim else self.rank[col_orders[c]]
            self.s = np.ascontiguousarray(np.take_along_axis(self.xb.T, ordbit, axis=1))
        self.ordbit = ordbit
        self.cs = np.ascontiguousarray(self.s[:, _BLK - 1::_BLK])  # coarse level of searches
        words = (n + 63) // 64
        # prefix rows every g positions: a smaller g means fewer single-bit fixes per range
        # (about g/2 on average) but bigger tables; keep the tables under ~4 MB (cache-sized)
        g = 8
        while d * (n // g + 1) * words * 8 > _TABLE_BYTES and g < 8192:
            g *= 2
        self.g = g
        self.tab = _get_bit_kernels()["build_tables"](ordbit, g, words)


#: memory budget of the prefix tables of one bit space
_TABLE_BYTES = 4 * 2**20

#: subsample stride for the joint upper bound: ~kth * step candidates per query are scanned
_SUBSAMPLE_STEP = 32


def _widest(a: np.ndarray) -> int:
    return int(np.argmax(a.max(axis=0) - a.min(axis=0)))


def _bitset_knn_counts(rx, ry, qx, qy, kth):
    ker = _get_bit_kernels()
    n, dx = rx.shape
    insample = qx is None
    pts = np.hstack([rx, ry])
    js = _BitSpace(pts, _widest(rx))
    if insample:
        q = js.xb
        self_bit = np.arange(n, dtype=np.int64)
    else:
        q = np.ascontiguousarray(np.hstack([qx, qy]))
        self_bit = np.full(q.shape[0], -1, dtype=np.int64)
    # upper bound: kth distance to a strided subsample of the primary order (self excluded),
    # by brute force over the subsample (vectorised)
    step = max(1, min(_SUBSAMPLE_STEP, (n - 1) // (kth + 1)))
    nchunk = 64 * _nb.get_num_threads()
    subt = np.ascontiguousarray(js.xb[::step].T)
    if insample:
        self_sub = np.where(self_bit % step == 0, self_bit // step, -1).astype(np.int64)
    else:
        self_sub = np.full(q.shape[0], -1, dtype=np.int64)
    bound = ker["brute_bound"](subt, q, self_sub, kth, nchunk)
    eps = ker["bits_knn"](js.xb, js.s, js.cs, js.ordbit, js.tab, js.g, n, js.prim, q, self_bit,
                          bound, kth, nchunk)
    nx = ker["bits_count"](js.s, js.cs, js.ordbit, js.tab, js.g, n, 0, dx, js.prim, q, self_bit,
                           eps, nchunk)
    # the y coordinates were sorted for the joint space already: reuse those orders
    ys = _BitSpace(ry, _widest(ry), col_orders=js.perm[js.ordbit[dx:]])
    if insample:
        qy_ = ys.xb
        yself = np.arange(n, dtype=np.int64)
        eps_y = np.ascontiguousarray(eps[js.rank[ys.perm]])
    else:
        qy_ = np.ascontiguousarray(qy)
        yself = self_bit
        eps_y = eps
    ny = ker["bits_count"](ys.s, ys.cs, ys.ordbit, ys.tab, ys.g, n, 0, ry.shape[1], ys.prim, qy_,
                           yself, eps_y, nchunk)
    if insample:  # back from the orders of the two spaces to the input order
        eps = eps[js.rank]
        nx = nx[js.rank]
        ny = ny[ys.rank]
    return eps, nx, ny


def _scipy_knn_counts(rx, ry, qx, qy, kth):
    from scipy.spatial import cKDTree

    insample = qx is None
    rj = np.hstack([rx, ry])
    qj = rj if insample else np.hstack([qx, qy])
    kq = kth + 1 if insample else kth  # in-sample: the query itself is the 0-th neighbour
    dist, _ = cKDTree(rj).query(qj, k=kq, p=np.inf, workers=-1)
    dist = dist.reshape(qj.shape[0], kq)
    eps = np.ascontiguousarray(dist[:, kq - 1], dtype=np.float64)
    # strict "< eps" == "<= nextafter(eps, 0)" for floats; eps == 0 counts nothing
    r = np.nextafter(eps, 0.0)
    counts = []
    for ref, q in ((rx, rx if insample else qx), (ry, ry if insample else qy)):
        c = cKDTree(ref).query_ball_point(q, r, p=np.inf, return_length=True, workers=-1)
        c = np.asarray(c, dtype=np.int64)
        if insample:
            c = c - (eps > 0)  # the point itself (distance 0) was counted
        c[eps <= 0] = 0
        counts.append(c)
    return eps, counts[0], counts[1]


def knn_counts(ref_x: np.ndarray, ref_y: np.ndarray, query_x: np.ndarray | None = None,
               query_y: np.ndarray | None = None, *, kth: int, impl: str = "auto"
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Joint k-th neighbour radius and strict marginal counts (CPU, float64).

    ref_x (N, dx), ref_y (N, dy): reference sample. query_x (M, dx), query_y (M, dy): queries;
    ``None`` means in-sample (queries = reference, each point excluding itself by index).
    Returns ``eps`` (M,) float64, the ``kth`` smallest joint Chebyshev distance (max of the x-
    and y-block max-norms) from the query to the reference points (self excluded in-sample), and
    ``nx``, ``ny`` (M,) int64: #{reference j (≠ self): ‖x_j − q_x‖∞ < eps} (strict), same for y.
    ``impl``: "bitset" (numba bitset kernels), "kdtree" (numba kd-tree over bitset words,
    ``kdtree.py``), "sweep" (numba sorted-axis sweep), "scipy" (cKDTree) or "auto"
    (``auto_impl(N)``: "bitset" below ``_KDTREE_MIN_N`` reference points, else "kdtree";
    "scipy" without numba). All give identical results.
    """
    rx = np.ascontiguousarray(ref_x, dtype=np.float64)
    ry = np.ascontiguousarray(ref_y, dtype=np.float64)
    qx = None if query_x is None else np.ascontiguousarray(query_x, dtype=np.float64)
    qy = None if query_y is None else np.ascontiguousarray(query_y, dtype=np.float64)
    if impl == "auto":
        impl = auto_impl(rx.shape[0])
    if impl in ("kdtree", "bitset", "sweep"):
        if not HAVE_NUMBA:
            raise RuntimeError("numba is not installed; use impl='scipy'")
        # numba's default (workqueue) threading layer must not be entered by two threads at once
        # small problems run on one thread: thread start-up and the end-of-loop barrier cost
        # more than they save there (and much more on a shared, oversubscribed machine)
        m = rx.shape[0] if qx is None else qx.shape[0]
        with _NUMBA_LOCK:
            prev = _nb.get_num_threads()
            if rx.shape[0] * m < _PARALLEL_MIN_PAIRS:
                _nb.set_num_threads(1)
            try:
                if impl == "kdtree":
                    from lmi_distributed.estimators.neighbors.kdtree import kdtree_knn_counts

                    return kdtree_knn_counts(rx, ry, qx, qy, int(kth))
                if impl == "bitset":
                    return _bitset_knn_counts(rx, ry, qx, qy, int(kth))
                return _numba_knn_counts(rx, ry, qx, qy, int(kth))
            finally:
                _nb.set_num_threads(prev)
    if impl == "scipy":
        return _scipy_knn_counts(rx, ry, qx, qy, int(kth))
    raise ValueError(f"unknown tree implementation {impl!r}")
