"""Exact Chebyshev kd-tree kernels (numba) for the "tree" backend's ``impl="kdtree"``.

Two trees are built per problem, arrays only:

- the *joint* tree over the (N, dx + dy) points, split only on x coordinates (the widest x
  coordinate of the node's points, at the median position). Its node boxes hold min/max of all
  dx + dy coordinates, so the box lower bound ``max_c dist(q_c, [lo_c, hi_c])`` bounds the joint
  distance (tighter than the x part alone), and the same tree, read on its first dx
  coordinates, is an x-only kd-tree for the strict x counts;
- a y tree over the (N, dy) points for the strict y counts.

The tree is complete and implicit (sklearn's layout): node i has children 2i + 1 and 2i + 2,
and holds the positions [start[i], end[i]) of the permuted points; leaves hold at most
``leaf_size`` points.

Queries (numba ``prange`` over chunks of queries):

- joint k-th distance: depth-first, nearer child first; a node is skipped when its box lower
  bound is >= the current k-th best distance; leaf points get the full joint distance with an
  early exit over coordinates; self is excluded by index (in-sample);
- strict count within radius r: a node whose box lower bound is >= r is skipped; a node whose
  box upper bound ``max_c max(|fl(lo_c - q_c)|, |fl(hi_c - q_c)|)`` is < r adds its size (less
  self); otherwise recurse; leaves test their points.

Exactness: every point distance is ``max_c |fl(r_c - q_c)|`` in float64, like the other
backends. ``fl(x - q)`` is monotone in x, so for x in [lo, hi]: ``|fl(x - q)| >= fl(lo - q)``
when q < lo, ``>= fl(q - hi)`` when q > hi, and ``<= max(|fl(lo - q)|, |fl(hi - q)|)``; the box
bounds are exact bounds of the float distances and pruning never changes a result. Counts are
therefore identical (integer equality) to the bitset, sweep, scipy and tiled implementations.
"""

from __future__ import annotations

import numpy as np

try:
    import numba as _nb

    HAVE_NUMBA = True
except Exception:  # pragma: no cover - exercised where numba is absent
    _nb = None
    HAVE_NUMBA = False

__all__ = ["HAVE_NUMBA", "KDTree", "kdtree_knn_counts", "LEAF_SIZE"]

#: maximum points per leaf (tuned on 8+8-dim Gaussian latents, N = 1e4 .. 1e5)
LEAF_SIZE = 16
#: queries per parallel work item (numba prange runs over chunks of this many queries)
_CHUNK = 256
#: maximum tree depth handled by the fixed-size traversal stack (2**60 leaves: never reached)
_STACK = 128


if HAVE_NUMBA:
    nb = _nb

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
    def _build(pts, nsplit, n_nodes):  # pragma: no cover - jitted
        # pts (N, d); splits on coordinates [0, nsplit). Returns perm (N,), start, end
        # (n_nodes,), lo, hi (n_nodes, d) boxes of each node's points.
        n, d = pts.shape
        perm = np.arange(n)
        start = np.empty(n_nodes, dtype=np.int64)
        end = np.empty(n_nodes, dtype=np.int64)
        lo = np.empty((n_nodes, d), dtype=np.float64)
        hi = np.empty((n_nodes, d), dtype=np.float64)
        start[0] = 0
        end[0] = n
        for i in range(n_nodes):
            s = start[i]
            e = end[i]
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
            if 2 * i + 1 < n_nodes:
                best = 0
                wid = -1.0
                for c in range(nsplit):
                    w = hi[i, c] - lo[i, c]
                    if w > wid:
                        wid = w
                        best = c
                mid = s + ((e - s) >> 1)
                if e - s > 1:
                    _select(perm, pts, best, s, e, mid)
                start[2 * i + 1] = s
                end[2 * i + 1] = mid
                start[2 * i + 2] = mid
                end[2 * i + 2] = e
        return perm, start, end, lo, hi

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _box_lb(lo, hi, node, q, c0, c1, cur):  # pragma: no cover - jitted
        # exact lower bound of max_c |fl(x_c - q_c)|, c in [c0, c1), over the node's box;
        # stops early (returning a value >= cur) once cur is reached
        lb = 0.0
        for c in range(c0, c1):
            qc = q[c]
            t = lo[node, c] - qc
            if t > lb:
                lb = t
            else:
                t = qc - hi[node, c]
                if t > lb:
                    lb = t
            if lb >= cur:
                return lb
        return lb

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _leaf_dist(ptsT, s, e, q, c0, c1, acc):  # pragma: no cover - jitted
        # acc[j - s] = max_{c in [c0, c1)} |fl(ptsT[c, j] - q[c])| for j in [s, e), coordinate
        # by coordinate over the points (a loop the compiler vectorizes; abs and max are exact)
        m = e - s
        for j in range(m):
            acc[j] = 0.0
        for c in range(c0, c1):
            qc = q[c]
            row = ptsT[c, s:e]
            for j in range(m):
                t = abs(row[j] - qc)
                a = acc[j]
                acc[j] = t if t > a else a

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _knn_one(pts, ptsT, start, end, lo, hi, n_nodes, first_leaf, q, selfpos, kth, best,
                 stack, stack_lb, acc):  # pragma: no cover - jitted
        # kth smallest distance max_c |fl(pts[j, c] - q[c])| over j != selfpos (all coords)
        d = pts.shape[1]
        for t in range(kth):
            best[t] = np.inf
        sp = 0
        stack[0] = 0
        stack_lb[0] = 0.0
        sp = 1
        while sp > 0:
            sp -= 1
            node = stack[sp]
            cur = best[kth - 1]
            if stack_lb[sp] >= cur:
                continue
            if node >= first_leaf:
                s0 = start[node]
                e0 = end[node]
                _leaf_dist(ptsT, s0, e0, q, 0, d, acc)
                for j in range(s0, e0):
                    dist = acc[j - s0]
                    if j == selfpos:
                        continue
                    cur = best[kth - 1]
                    if dist < cur:
                        s = kth - 1
                        while s > 0 and best[s - 1] > dist:
                            best[s] = best[s - 1]
                            s -= 1
                        best[s] = dist
                continue
            a = 2 * node + 1
            b = a + 1
            la = _box_lb(lo, hi, a, q, 0, d, cur)
            lb = _box_lb(lo, hi, b, q, 0, d, cur)
            # push the farther child first so that the nearer one is visited next
            if la <= lb:
                if lb < cur:
                    stack[sp] = b
                    stack_lb[sp] = lb
                    sp += 1
                if la < cur:
                    stack[sp] = a
                    stack_lb[sp] = la
                    sp += 1
            else:
                if la < cur:
                    stack[sp] = a
                    stack_lb[sp] = la
                    sp += 1
                if lb < cur:
                    stack[sp] = b
                    stack_lb[sp] = lb
                    sp += 1
        return best[kth - 1]

    @nb.njit(inline="always", cache=True, boundscheck=False)
    def _count_one(ptsT, start, end, lo, hi, first_leaf, q, c0, c1, selfpos, r, stack, acc):
        # pragma: no cover - jitted
        # #{j != selfpos: max_{c in [c0, c1)} |fl(pts[j, c] - q[c])| < r}
        if not r > 0:
            return 0
        cnt = 0
        stack[0] = 0
        sp = 1
        while sp > 0:
            sp -= 1
            node = stack[sp]
            # lower and upper bound of the node's distances in one pass
            lb = 0.0
            ub = 0.0
            pruned = False
            for c in range(c0, c1):
                qc = q[c]
                tl = lo[node, c] - qc
                th = hi[node, c] - qc
                if tl > lb:
                    lb = tl
                    if lb >= r:
                        pruned = True
                        break
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
            s = start[node]
            e = end[node]
            if ub < r:
                cnt += e - s
                if selfpos >= s and selfpos < e:
                    cnt -= 1
                continue
            if node >= first_leaf:
                _leaf_dist(ptsT, s, e, q, c0, c1, acc)
                for j in range(e - s):
                    cnt += acc[j] < r
                if selfpos >= s and selfpos < e:
                    cnt -= 1  # distance 0 < r
                continue
            stack[sp] = 2 * node + 1
            stack[sp + 1] = 2 * node + 2
            sp += 2
        return cnt

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def knn_radius(pts, ptsT, start, end, lo, hi, first_leaf, q, selfpos, kth, chunk):
        # pragma: no cover - jitted
        # q (M, d) queries, selfpos (M,) tree position of each query's own point or -1
        m_total = q.shape[0]
        n_nodes = start.shape[0]
        out = np.empty(m_total, dtype=np.float64)
        leaf_max = 1
        for i in range(first_leaf, n_nodes):
            leaf_max = max(leaf_max, end[i] - start[i])
        nchunk = (m_total + chunk - 1) // chunk
        for ch in nb.prange(nchunk):
            best = np.empty(kth, dtype=np.float64)
            stack = np.empty(_STACK, dtype=np.int64)
            stack_lb = np.empty(_STACK, dtype=np.float64)
            acc = np.empty(leaf_max, dtype=np.float64)
            for m in range(ch * chunk, min(m_total, (ch + 1) * chunk)):
                out[m] = _knn_one(pts, ptsT, start, end, lo, hi, n_nodes, first_leaf, q[m],
                                  selfpos[m], kth, best, stack, stack_lb, acc)
        return out

    @nb.njit(parallel=True, cache=True, boundscheck=False)
    def strict_count(ptsT, start, end, lo, hi, first_leaf, q, c0, c1, selfpos, radius, chunk):
        # pragma: no cover - jitted
        m_total = q.shape[0]
        out = np.zeros(m_total, dtype=np.int64)
        leaf_max = 1
        for i in range(first_leaf, start.shape[0]):
            leaf_max = max(leaf_max, end[i] - start[i])
        nchunk = (m_total + chunk - 1) // chunk
        for ch in nb.prange(nchunk):
            stack = np.empty(_STACK, dtype=np.int64)
            acc = np.empty(leaf_max, dtype=np.float64)
            for m in range(ch * chunk, min(m_total, (ch + 1) * chunk)):
                out[m] = _count_one(ptsT, start, end, lo, hi, first_leaf, q[m], c0, c1,
                                    selfpos[m], radius[m], stack, acc)
        return out


def _n_nodes(n: int, leaf_size: int) -> int:
    """Nodes of the complete tree whose leaves hold at most ``leaf_size`` of ``n`` points."""
    levels = 1
    while (n >> (levels - 1)) > leaf_size and levels < 60:
        levels += 1
    # a node at depth L holds floor or ceil of n / 2**L points: make sure ceil fits too
    while -(-n // (1 << (levels - 1))) > leaf_size and levels < 60:
        levels += 1
    return (1 << levels) - 1


class KDTree:
    """Complete kd-tree over ``pts`` (N, d) float64, split on coordinates [0, nsplit).

    Attributes: ``perm`` (N,) int64, tree position -> input row; ``rank`` (N,), the inverse;
    ``pts`` (N, d) the points in tree order (contiguous); ``start``, ``end`` (n_nodes,) the
    positions of each node; ``lo``, ``hi`` (n_nodes, d) the boxes; ``first_leaf`` the index of
    the first leaf (nodes >= first_leaf are leaves).
    """

    def __init__(self, pts: np.ndarray, nsplit: int | None = None, leaf_size: int = LEAF_SIZE):
        pts = np.ascontiguousarray(pts, dtype=np.float64)
        n, d = pts.shape
        nsplit = d if nsplit is None else int(nsplit)
        n_nodes = _n_nodes(max(n, 1), max(1, int(leaf_size)))
        self.n_nodes = n_nodes
        self.first_leaf = n_nodes // 2
        self.perm, self.start, self.end, self.lo, self.hi = _build(pts, nsplit, n_nodes)
        self.pts = np.ascontiguousarray(pts[self.perm])
        self.ptsT = np.ascontiguousarray(self.pts.T)
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.perm] = np.arange(n)

    def knn(self, q: np.ndarray, selfpos: np.ndarray, kth: int) -> np.ndarray:
        """(M,) k-th smallest Chebyshev distance over all d coordinates from q (M, d);
        ``selfpos`` (M,) the tree position to exclude (-1: none)."""
        return knn_radius(self.pts, self.ptsT, self.start, self.end, self.lo, self.hi, self.first_leaf, q,
                          selfpos, int(kth), _CHUNK)

    def count(self, q: np.ndarray, c0: int, c1: int, selfpos: np.ndarray, radius: np.ndarray
              ) -> np.ndarray:
        """(M,) int64 #{j != selfpos: max_{c0<=c<c1} |pts_jc - q_c| < radius} for q (M, >= c1)."""
        return strict_count(self.ptsT, self.start, self.end, self.lo, self.hi, self.first_leaf,
                            q, int(c0), int(c1), selfpos, radius, _CHUNK)


def kdtree_knn_counts(rx: np.ndarray, ry: np.ndarray, qx: np.ndarray | None,
                      qy: np.ndarray | None, kth: int, leaf_size: int = LEAF_SIZE
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``tree.knn_counts`` semantics (float64, C-contiguous inputs; qx None = in-sample).

    Returns eps (M,) float64 and strict counts nx, ny (M,) int64 (see ``tree.knn_counts``)."""
    n, dx = rx.shape
    dy = ry.shape[1]
    insample = qx is None
    jt = KDTree(np.hstack([rx, ry]), nsplit=dx, leaf_size=leaf_size)
    yt = KDTree(ry, leaf_size=leaf_size)
    if insample:
        # queries in joint-tree order (neighbouring queries walk the same nodes)
        q = jt.pts
        jself = np.arange(n, dtype=np.int64)
    else:
        q = np.ascontiguousarray(np.hstack([qx, qy]))
        jself = np.full(q.shape[0], -1, dtype=np.int64)
    eps = jt.knn(q, jself, kth)
    nx = jt.count(q, 0, dx, jself, eps)
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
