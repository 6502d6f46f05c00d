"""Exact KSG neighbour kernels (numba): kd-tree with 64-point leaves whose points are bitset words.

``tree.knn_counts(..., impl="kdtree")``. Why not a plain kd-tree: in the 8-dim marginal spaces
of LMI latents a Chebyshev ball holding ~1 % of the points spans about half the range of every
coordinate, so a kd-tree (sklearn's, or one written here) still scans 7-30 % of the points per
query (N = 1e5 .. 1e4) one by one. Here the tree only decides *which 64-point words* to look
at, and the points of those words are tested 64 at a time with per-coordinate bitsets.

Layout of one *space* (the joint (x, y) points, or the y points):

- a complete kd-tree over blocks of 64 consecutive positions (node i has children 2i + 1 and
  2i + 2 and covers blocks [bstart[i], bend[i])); a node is split at a block boundary near its
  median along its widest *split* coordinate (the joint space splits on x coordinates only, so
  that its tree, read on the first dx coordinates, is an x-space tree too); node boxes
  ``lo``, ``hi`` hold min/max of *all* coordinates of the node's points. Point p of the tree
  order is bit p.
- per coordinate c: the values sorted (``s[c]``), the bit of each sorted position
  (``ordbit[c]``) and prefix bitsets ``tab[c, b]`` = bits of the first b·g positions of c's
  order (the bitset backend's tables, with bits in tree order).

Strict count of {j != self: max_{c in C} |fl(x_jc - q_c)| < r}: walk the tree; a node whose box
lower bound over C is >= r is skipped, a node whose box upper bound is < r adds its size, and
the leaves left (single words) form a word list. For each c in C the slab
{p: |fl(s[c][p] - q_c)| < r} is a contiguous run [lo, hi) of c's order (binary search with the
exact predicate); its bitset on the listed words is tab[c, hb] ^ tab[c, lb] (the prefix rows
nearest to hi and lo) plus <= g single-bit fixes; it is ANDed into the words, and words that
become zero leave the list. The
count is the popcount of what is left. Joint k-th distance: an upper bound U (k-th distance to the
points within 128 tree positions of the query, which are nearby points) gives the candidates {D <= U} the same
way (all coordinates), which are scanned with exact distances (self excluded by index).

Exactness: every distance is ``max_c |fl(r_c - q_c)|`` in float64, as in the other backends.
``fl(x - q)`` is monotone in x, so the box bounds built from ``fl(lo - q)``, ``fl(q - hi)`` and
``|fl(lo - q)|``, ``|fl(hi - q)|`` bound the float distances exactly, and pruning never changes
a result: counts are identical (integer equality) to the bitset, sweep, scipy and tiled
implementations, ties and duplicated points included.
"""

from __future__ import annotations

import math

import numpy as np

try:
    import numba as _nb

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised where numba is absent
    _nb = None
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "BitTree", "kdtree_knn_counts"]

#: memory budget of the prefix tables of one space (bytes) and most prefix rows per coordinate;
#: g (positions between two prefix rows, ~ single-bit fixes per slab) is the smallest that fits
#: both, but at least _G_MIN (N = 1e4: g = 16, 13 MB; 1e5: g = 98, 200 MB; 1e6: g ~ 4000, 512 MB)
_TABLE_BYTES = 512 * 2**20
_MAX_ROWS = 1024
_G_MIN = 16
#: leaves hold 2**_LEAF_SHIFT points (>= 6: whole bitset words)
_LEAF_SHIFT = 6
#: queries per parallel work item (numba prange runs over chunks of this many queries)
_CHUNK = 64
#: traversal stack size (the tree depth is ~log2(N / 64) + 1)
_STACK = 256
#: the joint upper bound scans the tree positions within _WINDOW of the query's position
_WINDOW = 128


if HAVE_NUMBA:
    nb = _nb
    from lmi_distributed.estimators.neighbors.tree import (  # noqa: E402 - numba helpers
        cheb_below, cheb_full, first_ge, first_gt, insert_best, popc)

    _ONE = np.uint64(1)
    _ALL = np.uint64(0xFFFFFFFFFFFFFFFF)

    @nb.njit(cache=True, boundscheck=False)
    def _select(perm, pts, dim, s, e, kpos):  # pragma: no cover - jitted
        # reorder perm[s:e] so that perm[kpos] holds the point with the kpos-th smallest value
        # of coordinate dim, smaller-or-equal ones before it and larger-or-equal ones after it
        # (quickselect with a three-way partition: many equal values stay linear)
        lo = s
        hi = e - 1
        while lo < hi:
            a = pts[perm[lo], dim]
            b = pts[perm[(lo + hi) >> 1], dim]
            c = pts[perm[hi], dim]
            if a > b:
                a, b = b, a
            if b > c:
                b = c
            pivot = a if a > b else b  # median of three
            lt = lo
            i = lo
            gt = hi
            while i <= gt:
                v = pts[perm[i], dim]
                if v < pivot:
                    t = perm[lt]
                    perm[lt] = perm[i]
                    perm[i] = t
                    lt += 1
                    i += 1
                elif v > pivot:
                    t = perm[gt]
                    perm[gt] = perm[i]
                    perm[i] = t
                    gt -= 1
                else:
                    i += 1
            if kpos < lt:
                hi = lt - 1
            elif kpos > gt:
                lo = gt + 1
            else:
                return

    @nb.njit(cache=True, boundscheck=False)
    def _build(pts, nsplit, n_nodes, bsh):  # pragma: no cover - jitted
        # pts (N, d); splits on coordinates [0, nsplit) at block (2**bsh points) boundaries.
        # Returns perm (N,), bstart, bend (n_nodes,) block ranges, lo, hi (n_nodes, d) boxes.
        n, d = pts.shape
        perm = np.arange(n)
        bstart = np.zeros(n_nodes, dtype=np.int64)
        bend = np.zeros(n_nodes, dtype=np.int64)
        lo = np.empty((n_nodes, d), dtype=np.float64)
        hi = np.empty((n_nodes, d), dtype=np.float64)
        bend[0] = (n + (1 << bsh) - 1) >> bsh
        for i in range(n_nodes):
            bs = bstart[i]
            be = bend[i]
            s = bs << bsh
            e = min(n, be << bsh)
            for c in range(d):
                lo[i, c] = np.inf
                hi[i, c] = -np.inf
            for p in range(s, e):
                row = pts[perm[p]]
                for c in range(d):
                    v = row[c]
                    if v < lo[i, c]:
                        lo[i, c] = v
                    if v > hi[i, c]:
                        hi[i, c] = v
            if be - bs >= 2:
                best = 0
                wid = -1.0
                for c in range(nsplit):
                    w = hi[i, c] - lo[i, c]
                    if w > wid:
                        wid = w
                        best = c
                bm = (bs + be) >> 1
                _select(perm, pts, best, s, e, bm << bsh)
                bstart[2 * i + 1] = bs
                bend[2 * i + 1] = bm
                bstart[2 * i + 2] = bm
                bend[2 * i + 2] = be
        return perm, bstart, bend, lo, hi

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _walk(lo, hi, bstart, bend, bsh, n, q, c0, c1, r, selfbit, stack, wl, use_full):
        # pragma: no cover - jitted
        # words of the leaves whose box (coordinates [c0, c1)) may hold points at distance < r
        # go to wl; with use_full, nodes entirely within distance < r are counted instead
        # (returned count excludes selfbit). Returns (number of words, count of full nodes).
        nw = 0
        full = 0
        stack[0] = 0
        sp = 1
        while sp > 0:
            sp -= 1
            node = stack[sp]
            lb = 0.0
            ub = 0.0
            pruned = False
            for c in range(c0, c1):
                qc = q[c]
                tl = lo[node, c] - qc
                th = hi[node, c] - qc
                if tl > lb:
                    lb = tl
                if -th > lb:
                    lb = -th
                if lb >= r:
                    pruned = True
                    break
                u = abs(tl)
                if u > ub:
                    ub = u
                u = abs(th)
                if u > ub:
                    ub = u
            if pruned:
                continue
            bs = bstart[node]
            be = bend[node]
            if use_full and ub < r:
                s = bs << bsh
                e = min(n, be << bsh)
                full += e - s
                if selfbit >= s and selfbit < e:
                    full -= 1
                continue
            if be - bs <= 1:
                for w in range(bs << (bsh - 6), min((n + 63) >> 6, be << (bsh - 6))):
                    wl[nw] = w
                    nw += 1
                continue
            stack[sp] = 2 * node + 2
            stack[sp + 1] = 2 * node + 1
            sp += 2
        return nw, full

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _and_slabs(acc, tmp, wl, nw, n, s, ordbit, tab, g, c0, c1, q, r, selfbit):
        # pragma: no cover - jitted
        # acc[w] for w in wl[:nw] <- bits of {p in word w, p != selfbit:
        # |fl(s[c][.] - q_c)| < r for all c in [c0, c1)}; words that become 0 are dropped.
        # Returns the new number of words.
        nwords = (n + 63) >> 6
        for t in range(nw):
            acc[wl[t]] = _ALL
        last = nwords - 1
        rem = n - (last << 6)
        if rem < 64:
            acc[last] &= (_ONE << np.uint64(rem)) - _ONE  # harmless if not listed
        if selfbit >= 0:
            acc[selfbit >> 6] &= ~(_ONE << np.uint64(selfbit & 63))
        nblk = tab.shape[1] - 1
        for c in range(c0, c1):
            if nw == 0:
                break
            sc = s[c]
            qc = q[c]
            lo_ = first_gt(sc, qc, -r)
            hi_ = first_ge(sc, qc, r)
            if lo_ >= hi_:
                return 0
            # the nearest prefix row on each side, then the positions in between toggled
            # one by one (about g/4 single-bit fixes per end on average)
            lb = min((lo_ + (g >> 1)) // g, nblk)
            hb = min((hi_ + (g >> 1)) // g, nblk)
            tl = tab[c, lb]
            th = tab[c, hb]
            for t in range(nw):
                w = wl[t]
                tmp[w] = th[w] ^ tl[w]
            oc = ordbit[c]
            for p in range(min(hb * g, hi_), max(hb * g, hi_)):
                bit = oc[p]
                tmp[bit >> 6] ^= _ONE << np.uint64(bit & 63)
            for p in range(min(lb * g, lo_), max(lb * g, lo_)):
                bit = oc[p]
                tmp[bit >> 6] ^= _ONE << np.uint64(bit & 63)
            k = 0
            for t in range(nw):
                w = wl[t]
                v = acc[w] & tmp[w]
                if v != 0:
                    acc[w] = v
                    wl[k] = w
                    k += 1
            nw = k
        return nw

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def bt_count(lo, hi, bstart, bend, bsh, n, s, ordbit, tab, g, c0, c1, q, selfbit, radius,
                 chunk):  # pragma: no cover - jitted
        # (M,) int64 #{p != selfbit[m]: max_{c in [c0, c1)} |fl(x_pc - q_mc)| < radius[m]}
        m_total = q.shape[0]
        nwords = (n + 63) >> 6
        out = np.zeros(m_total, dtype=np.int64)
        nchunk = (m_total + chunk - 1) // chunk
        for ch in nb.prange(nchunk):
            acc = np.empty(nwords, dtype=np.uint64)
            tmp = np.empty(nwords, dtype=np.uint64)
            wl = np.empty(nwords, dtype=np.int64)
            stack = np.empty(_STACK, dtype=np.int64)
            for m in range(ch * chunk, min(m_total, (ch + 1) * chunk)):
                r = radius[m]
                if not r > 0:
                    continue
                qm = q[m]
                sb = selfbit[m]
                nw, cnt = _walk(lo, hi, bstart, bend, bsh, n, qm, c0, c1, r, sb, stack, wl, True)
                nw = _and_slabs(acc, tmp, wl, nw, n, s, ordbit, tab, g, c0, c1, qm, r, sb)
                for t in range(nw):
                    cnt += int(popc(acc[wl[t]]))
                out[m] = cnt
        return out

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def bt_knn(pts, lo, hi, bstart, bend, bsh, n, s, ordbit, tab, g, q, selfbit, bound, kth,
               chunk):  # pragma: no cover - jitted
        # (M,) kth smallest max_c |fl(x_pc - q_mc)| over p != selfbit[m] (all coordinates);
        # candidates are {D <= bound[m]}, so bound[m] >= the answer is required
        m_total = q.shape[0]
        d = pts.shape[1]
        nwords = (n + 63) >> 6
        out = np.empty(m_total, dtype=np.float64)
        nchunk = (m_total + chunk - 1) // chunk
        for ch in nb.prange(nchunk):
            acc = np.empty(nwords, dtype=np.uint64)
            tmp = np.empty(nwords, dtype=np.uint64)
            wl = np.empty(nwords, dtype=np.int64)
            stack = np.empty(_STACK, dtype=np.int64)
            best = np.empty(kth, dtype=np.float64)
            for m in range(ch * chunk, min(m_total, (ch + 1) * chunk)):
                r = np.nextafter(bound[m], np.inf)  # D <= bound  <=>  D < r
                qm = q[m]
                sb = selfbit[m]
                nw, _ = _walk(lo, hi, bstart, bend, bsh, n, qm, 0, d, r, sb, stack, wl, False)
                nw = _and_slabs(acc, tmp, wl, nw, n, s, ordbit, tab, g, 0, d, qm, r, sb)
                for t in range(kth):
                    best[t] = np.inf
                for t in range(nw):
                    w = wl[t]
                    word = acc[w]
                    while word != 0:
                        low = word & (~word + _ONE)
                        j = (w << 6) + int(popc(low - _ONE))
                        word ^= low
                        dist = cheb_full(pts[j], qm)   # every candidate is within the bound
                        if dist < best[kth - 1]:
                            insert_best(best, dist)
                out[m] = best[kth - 1]
        return out

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def bt_window_bound(pts, lo, hi, bstart, bend, bsh, q, selfbit, kth, half, chunk):
        # pragma: no cover - jitted
        # (M,) kth smallest distance from q[m] to the points at tree positions within
        # ``half`` of a centre (self excluded): >= the kth distance to all points. The centre
        # is the query's own position in-sample, else the leaf reached by descending the tree
        # towards the nearer child box; nearby tree positions are nearby points.
        m_total = q.shape[0]
        n, d = pts.shape
        out = np.empty(m_total, dtype=np.float64)
        nchunk = (m_total + chunk - 1) // chunk
        for ch in nb.prange(nchunk):
            best = np.empty(kth, dtype=np.float64)
            for m in range(ch * chunk, min(m_total, (ch + 1) * chunk)):
                qm = q[m]
                sb = selfbit[m]
                if sb >= 0:
                    centre = sb
                else:
                    node = 0
                    while bend[node] - bstart[node] > 1:
                        a = 2 * node + 1
                        la = 0.0
                        lb = 0.0
                        for c in range(d):
                            la = max(la, lo[a, c] - qm[c], qm[c] - hi[a, c])
                            lb = max(lb, lo[a + 1, c] - qm[c], qm[c] - hi[a + 1, c])
                        node = a if la <= lb else a + 1
                    centre = min(n - 1, (bstart[node] << bsh) + (1 << (bsh - 1)))
                for t in range(kth):
                    best[t] = np.inf
                for j in range(max(0, centre - half), min(n, centre + half + 1)):
                    if j == sb:
                        continue
                    cur = best[kth - 1]
                    dist = cheb_below(pts[j], qm, cur)
                    if dist < cur:
                        insert_best(best, dist)
                out[m] = best[kth - 1]
        return out


def _leaf_shift(n: int) -> int:
    """log2 of the points per leaf block for n points (a multiple of 64)."""
    return _LEAF_SHIFT

def _n_nodes(n: int, bsh: int) -> int:
    """Nodes of the complete tree over ceil(n / 2**bsh) blocks (leaves hold at most one)."""
    blocks = max(1, -(-n // (1 << bsh)))
    levels = max(0, math.ceil(math.log2(blocks)))
    return (1 << (levels + 1)) - 1


class BitTree:
    """One space: kd-tree over 64-point blocks plus per-coordinate prefix bitsets.

    pts (N, d) float64; the tree splits on coordinates [0, nsplit). Attributes: ``perm`` (N,)
    tree position -> input row, ``rank`` its inverse, ``pts`` (N, d) points in tree order,
    ``bstart``/``bend``/``lo``/``hi`` the nodes, ``s`` (d, N) sorted values, ``ordbit`` (d, N)
    the tree position of each sorted position, ``tab`` (d, N // g + 1, ceil(N / 64)) uint64
    prefix bitsets every ``g`` sorted positions.
    """

    def __init__(self, pts: np.ndarray, nsplit: int | None = None,
                 table_bytes: int | None = None, leaf_shift: int | None = None):
        from lmi_distributed.estimators.neighbors.tree import _get_bit_kernels

        pts = np.ascontiguousarray(pts, dtype=np.float64)
        n, d = pts.shape
        self.n, self.d = n, d
        nsplit = d if nsplit is None else int(nsplit)
        self.bsh = _leaf_shift(n) if leaf_shift is None else int(leaf_shift)
        self.perm, self.bstart, self.bend, self.lo, self.hi = _build(pts, nsplit,
                                                                     _n_nodes(n, self.bsh),
                                                                     self.bsh)
        self.pts = np.ascontiguousarray(pts[self.perm])
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.perm] = np.arange(n)
        ordbit = np.argsort(self.pts, axis=0, kind="stable").T
        self.ordbit = np.ascontiguousarray(ordbit, dtype=np.int64)
        self.s = np.ascontiguousarray(np.take_along_axis(self.pts.T, self.ordbit, axis=1))
        words = (n + 63) // 64
        budget = _TABLE_BYTES if table_bytes is None else int(table_bytes)
        rows = max(2, min(_MAX_ROWS, budget // max(1, d * words * 8)))  # per coordinate
        self.g = max(_G_MIN, -(-n // (rows - 1)))
        self.tab = _get_bit_kernels()["build_tables"](self.ordbit, self.g, words)

    def count(self, q: np.ndarray, c0: int, c1: int, selfbit: np.ndarray, radius: np.ndarray
              ) -> np.ndarray:
        """(M,) int64 #{p != selfbit: max_{c0<=c<c1} |pts_pc - q_c| < radius} for q (M, >= c1)."""
        return bt_count(self.lo, self.hi, self.bstart, self.bend, self.bsh, self.n, self.s, self.ordbit,
                        self.tab, self.g, int(c0), int(c1), q, selfbit, radius, _CHUNK)

    def knn(self, q: np.ndarray, selfbit: np.ndarray, bound: np.ndarray, kth: int
            ) -> np.ndarray:
        """(M,) kth smallest Chebyshev distance over all d coordinates (self excluded), given
        ``bound`` (M,) >= the answer."""
        return bt_knn(self.pts, self.lo, self.hi, self.bstart, self.bend, self.bsh, self.n, self.s,
                      self.ordbit, self.tab, self.g, q, selfbit, bound, int(kth), _CHUNK)


def kdtree_knn_counts(rx: np.ndarray, ry: np.ndarray, qx: np.ndarray | None,
                      qy: np.ndarray | None, kth: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tree.knn_counts`` semantics (float64 C-contiguous inputs; qx None = in-sample).

    rx (N, dx), ry (N, dy), qx (M, dx), qy (M, dy). Returns eps (M,) float64, the kth joint
    Chebyshev distance, and strict counts nx, ny (M,) int64 (see ``tree.knn_counts``)."""
    n, dx = rx.shape
    dy = ry.shape[1]
    insample = qx is None
    jt = BitTree(np.hstack([rx, ry]), nsplit=dx)
    if insample:
        q = jt.pts  # queries in tree order: neighbouring queries walk the same nodes
        jself = np.arange(n, dtype=np.int64)
    else:
        q = np.ascontiguousarray(np.hstack([qx, qy]))
        jself = np.full(q.shape[0], -1, dtype=np.int64)
    bound = bt_window_bound(jt.pts, jt.lo, jt.hi, jt.bstart, jt.bend, jt.bsh, q, jself, int(kth),
                            _WINDOW, _CHUNK)
    eps = jt.knn(q, jself, bound, kth)
    nx = jt.count(q, 0, dx, jself, eps)
    yt = BitTree(ry)
    if insample:
        qy_ = yt.pts
        yself = np.arange(n, dtype=np.int64)
        eps_y = np.ascontiguousarray(eps[jt.rank[yt.perm]])
    else:
        qy_ = np.ascontiguousarray(qy)
        yself = jself
        eps_y = eps
    ny = yt.count(qy_, 0, dy, yself, eps_y)
    if insample:  # back from the tree orders to the input order
        eps = eps[jt.rank]
        nx = nx[jt.rank]
        ny = ny[yt.rank]
    return eps, nx, ny
