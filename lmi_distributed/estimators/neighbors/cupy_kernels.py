"""CuPy raw CUDA kernels for KSG: tiled brute-force Chebyshev k-NN fused with strict counts.

One kernel, ``ksg_counts``, does everything: for problem b (grid y) and query i (one thread),
it streams the reference points through shared memory in tiles of TILE points, keeps the
``kth`` smallest joint distances in registers (branch-free insertion, ``kth`` is a compile-time
constant), then streams the tiles again and counts the strict marginal neighbours
(``‖x_j − q_x‖∞ < eps``, likewise for y). Layout is problem-major: arrays (B, N, d),
row-major; a batch stride of 0 shares one array between all problems (the permutation null
shares X and gathers permuted rows of Y).

- in-sample KSG (queries = reference, self excluded by index): ``knn_counts_batched``,
  ``ksg_pmi_batched``;
- out-of-sample queries against a reference sample: ``knn_counts_batched(..., qx, qy)``;
- many independent problems in one launch: the B axis;
- latent permutation null: ``permutation_null``.

Exactness: a distance is ``max_c |r_c − q_c|`` computed in the kernel dtype (float32 or float64)
with IEEE round-to-nearest subtraction (no FMA is possible: there are no multiplies), exact
``fabs`` and exact comparisons — the same operations, in the same dtype, as the tiled backend.
So the float64 kernels give counts identical to the CPU backends, and the float32 kernels give
counts identical to the tiled backend run on float32 numpy arrays (``tiled.knn_counts``).

cupy is imported lazily: importing this module never needs cupy or a GPU.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["knn_counts", "knn_counts_batched", "ksg_pmi_batched",
           "permutation_null", "KERNEL_SOURCE"]

KERNEL_SOURCE = r"""
#define DX {dx}
#define DY {dy}
#define KTH {kth}
#define TILE {tile}
typedef {real} real;
#define ABS(v) {abs}(v)
#define INF_R ({inf})

// Stage reference rows [t0, t0 + TILE) of both blocks in shared memory (zeros past N).
__device__ __forceinline__ void load_tile(real* sx, real* sy, const real* rxb, const real* ryb,
                                          const int t0, const int N)
{
    __syncthreads();
    for (int e = threadIdx.x; e < TILE * DX; e += blockDim.x) {
        const int jj = t0 + e / DX;
        sx[e] = jj < N ? rxb[(long long)t0 * DX + e] : (real)0;
    }
    for (int e = threadIdx.x; e < TILE * DY; e += blockDim.x) {
        const int jj = t0 + e / DY;
        sy[e] = jj < N ? ryb[(long long)t0 * DY + e] : (real)0;
    }
    __syncthreads();
}

extern "C" __global__ void ksg_counts(
    const real* __restrict__ qx, const real* __restrict__ qy,
    const real* __restrict__ rx, const real* __restrict__ ry,
    const long long qx_bs, const long long qy_bs,
    const long long rx_bs, const long long ry_bs,
    const int M, const int N, const int exclude_self,
    real* __restrict__ eps_out, int* __restrict__ nx_out, int* __restrict__ ny_out)
{
    __shared__ real sx[TILE * DX];
    __shared__ real sy[TILE * DY];
    const long long b = blockIdx.y;
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    const bool active = i < M;
    const real* qxb = qx + b * qx_bs;
    const real* qyb = qy + b * qy_bs;
    const real* rxb = rx + b * rx_bs;
    const real* ryb = ry + b * ry_bs;

    real q[DX];
    real p[DY];
#pragma unroll
    for (int c = 0; c < DX; ++c) q[c] = active ? qxb[(long long)i * DX + c] : (real)0;
#pragma unroll
    for (int c = 0; c < DY; ++c) p[c] = active ? qyb[(long long)i * DY + c] : (real)0;

    real best[KTH];
#pragma unroll
    for (int s = 0; s < KTH; ++s) best[s] = INF_R;

    // pass 1: kth smallest joint distance (self excluded by index when exclude_self)
    for (int t0 = 0; t0 < N; t0 += TILE) {
        load_tile(sx, sy, rxb, ryb, t0, N);
        if (active) {
            const int lim = min(TILE, N - t0);
            for (int t = 0; t < lim; ++t) {
                real d = (real)0;
#pragma unroll
                for (int c = 0; c < DX; ++c) {
                    const real a = ABS(sx[t * DX + c] - q[c]);
                    d = a > d ? a : d;
                }
#pragma unroll
                for (int c = 0; c < DY; ++c) {
                    const real a = ABS(sy[t * DY + c] - p[c]);
                    d = a > d ? a : d;
                }
                if (exclude_self && (t0 + t) == i) continue;
                if (d < best[KTH - 1]) {
                    real v = d;
#pragma unroll
                    for (int s = 0; s < KTH; ++s) {
                        const real bs = best[s];
                        const bool sw = v < bs;
                        best[s] = sw ? v : bs;
                        v = sw ? bs : v;
                    }
                }
            }
        }
    }
    const real eps = best[KTH - 1];

    // pass 2: strict marginal counts
    int cx = 0, cy = 0;
    for (int t0 = 0; t0 < N; t0 += TILE) {
        load_tile(sx, sy, rxb, ryb, t0, N);
        if (active) {
            const int lim = min(TILE, N - t0);
            for (int t = 0; t < lim; ++t) {
                real ax = (real)0, ay = (real)0;
#pragma unroll
                for (int c = 0; c < DX; ++c) {
                    const real a = ABS(sx[t * DX + c] - q[c]);
                    ax = a > ax ? a : ax;
                }
#pragma unroll
                for (int c = 0; c < DY; ++c) {
                    const real a = ABS(sy[t * DY + c] - p[c]);
                    ay = a > ay ? a : ay;
                }
                const bool self = exclude_self && (t0 + t) == i;
                cx += (!self && ax < eps) ? 1 : 0;
                cy += (!self && ay < eps) ? 1 : 0;
            }
        }
    }
    if (active) {
        const long long o = b * (long long)M + i;
        eps_out[o] = eps;
        nx_out[o] = cx;
        ny_out[o] = cy;
    }
}
"""

_DTYPES = {
    "float32": ("float", "fabsf", "__int_as_float(0x7f800000)", 4),
    "float64": ("double", "fabs", "__longlong_as_double(0x7ff0000000000000LL)", 8),
}
_CACHE: dict = {}
BLOCK = 128


def _cupy():
    import cupy

    return cupy


def _tile_for(dx: int, dy: int, size: int) -> int:
    tile = 128
    while tile > 8 and tile * (dx + dy) * size > 40 * 1024:
        tile //= 2
    return tile


def _kernel(dx: int, dy: int, kth: int, dtype: str):
    key = (dx, dy, kth, dtype)
    if key not in _CACHE:
        real, absf, inf, size = _DTYPES[dtype]
        src = KERNEL_SOURCE.replace("{dx}", str(dx)).replace("{dy}", str(dy)) \
            .replace("{kth}", str(kth)).replace("{tile}", str(_tile_for(dx, dy, size))) \
            .replace("{real}", real).replace("{abs}", absf).replace("{inf}", inf)
        _CACHE[key] = _cupy().RawKernel(src, "ksg_counts", options=("--std=c++14",))
    return _CACHE[key]


def _as3d(cp, a, dtype, name):
    a = cp.asarray(a, dtype=dtype)
    if a.ndim == 2:
        return cp.ascontiguousarray(a), 0, True
    if a.ndim != 3:
        raise ValueError(f"{name} must be (N, d) or (B, N, d), got shape {a.shape}")
    a = cp.ascontiguousarray(a)
    return a, a.shape[1] * a.shape[2], False


def knn_counts_batched(rx: Any, ry: Any, qx: Any = None, qy: Any = None, *, kth: int,
                       dtype: str = "float32"):
    """Batched joint kth radius and strict counts on the GPU.

    rx (B, N, dx), ry (B, N, dy): reference samples, one problem per leading index; a 2-D
    (N, d) array is shared by all problems (batch stride 0). qx (B, M, dx), qy (B, M, dy):
    out-of-sample queries, or ``None`` for in-sample (queries = reference, self excluded by
    index; then M = N). ``dtype``: "float32" or "float64" (the compute dtype).
    Returns cupy arrays eps (B, M) of ``dtype``, nx and ny (B, M) int32.
    """
    cp = _cupy()
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be one of {tuple(_DTYPES)}, got {dtype!r}")
    npdt = np.dtype(dtype)
    rx, rx_bs, rx_shared = _as3d(cp, rx, npdt, "rx")
    ry, ry_bs, ry_shared = _as3d(cp, ry, npdt, "ry")
    insample = qx is None
    if insample:
        qx, qx_bs, qx_shared, qy, qy_bs, qy_shared = rx, rx_bs, rx_shared, ry, ry_bs, ry_shared
    else:
        qx, qx_bs, qx_shared = _as3d(cp, qx, npdt, "qx")
        qy, qy_bs, qy_shared = _as3d(cp, qy, npdt, "qy")
    batches = [a.shape[0] for a, s in ((rx, rx_shared), (ry, ry_shared), (qx, qx_shared),
                                       (qy, qy_shared)) if not s]
    nb = batches[0] if batches else 1
    if any(b != nb for b in batches):
        raise ValueError(f"inconsistent batch sizes {batches}")
    n, dx = rx.shape[-2], rx.shape[-1]
    dy = ry.shape[-1]
    m = qx.shape[-2]
    if ry.shape[-2] != n or qy.shape[-2] != m or qx.shape[-1] != dx or qy.shape[-1] != dy:
        raise ValueError("shape mismatch between x and y blocks")
    if not 1 <= kth <= n - (1 if insample else 0):
        raise ValueError(f"kth={kth} out of range for N={n}")
    eps = cp.empty((nb, m), dtype=npdt)
    nx = cp.empty((nb, m), dtype=cp.int32)
    ny = cp.empty((nb, m), dtype=cp.int32)
    if m == 0 or nb == 0:
        return eps, nx, ny
    ker = _kernel(dx, dy, int(kth), dtype)
    grid_x = (m + BLOCK - 1) // BLOCK
    for b0 in range(0, nb, 65535):  # grid.y limit
        b1 = min(nb, b0 + 65535)

        def off(a, bs):
            return a if bs == 0 else a[b0:b1]

        ker((grid_x, b1 - b0), (BLOCK,),
            (off(qx, qx_bs), off(qy, qy_bs), off(rx, rx_bs), off(ry, ry_bs),
             np.int64(qx_bs), np.int64(qy_bs), np.int64(rx_bs), np.int64(ry_bs),
             np.int32(m), np.int32(n), np.int32(1 if insample else 0),
             eps[b0:b1], nx[b0:b1], ny[b0:b1]))
    return eps, nx, ny


def knn_counts(rx: Any, ry: Any, qx: Any = None, qy: Any = None, *, kth: int,
               dtype: str = "float64"):
    """Single-problem wrapper of ``knn_counts_batched``: 2-D inputs, (M,) cupy outputs."""
    cp = _cupy()
    add = (lambda a: None if a is None else cp.asarray(a)[None])
    eps, nx, ny = knn_counts_batched(add(rx), add(ry), add(qx), add(qy), kth=kth, dtype=dtype)
    return eps[0], nx[0], ny[0]


def _digamma_table(cp, n: int):
    from scipy.special import digamma

    tab = digamma(np.arange(n + 2, dtype=np.float64))
    tab[0] = -np.inf
    return cp.asarray(tab)


def ksg_pmi_batched(x: Any, y: Any, *, k: int = 3, dtype: str = "float32"):
    """KSG-1 pMI in bits for B independent problems at once: x (B, N, dx), y (B, N, dy).

    Returns a cupy float64 array (B, N); ``.mean(axis=1)`` gives the B MI estimates.
    """
    cp = _cupy()
    _, nx, ny = knn_counts_batched(x, y, kth=k, dtype=dtype)
    n = nx.shape[1]
    tab = _digamma_table(cp, n)
    from scipy.special import digamma

    const = float(digamma(k) + digamma(n))
    return (const - tab[nx + 1] - tab[ny + 1]) / math.log(2.0)


def permutation_null(x: Any, y: Any, perms: np.ndarray, *, k: int = 3,
                     dtype: str = "float32", chunk: int | None = None) -> np.ndarray:
    """KSG MI (bits) of (x, y[π_b]) for each row π_b of ``perms`` (P, N), on the GPU.

    x (N, dx) is shared by every problem (batch stride 0); y's permuted copies (chunk, N, dy)
    are gathered on the device, ``chunk`` permutations per launch. Returns numpy (P,) float64.
    """
    cp = _cupy()
    npdt = np.dtype(dtype)
    x = cp.ascontiguousarray(cp.asarray(x, dtype=npdt))
    y = cp.ascontiguousarray(cp.asarray(y, dtype=npdt))
    n = x.shape[0]
    perms_d = cp.asarray(perms, dtype=cp.int64)
    p_total = perms_d.shape[0]
    if chunk is None:  # keep the gathered y copies under ~1 GiB
        chunk = max(1, min(8192, (1 << 30) // max(1, n * y.shape[1] * npdt.itemsize)))
    tab = _digamma_table(cp, n)
    from scipy.special import digamma

    const = float(digamma(k) + digamma(n))
    out = cp.empty((p_total,), dtype=cp.float64)
    for s in range(0, p_total, chunk):
        e = min(p_total, s + chunk)
        yp = y[perms_d[s:e]]  # (c, N, dy)
        _, nx, ny = knn_counts_batched(x, yp, kth=k, dtype=dtype)
        out[s:e] = ((const - tab[nx + 1] - tab[ny + 1]) / math.log(2.0)).mean(axis=1)
    return cp.asnumpy(out)
