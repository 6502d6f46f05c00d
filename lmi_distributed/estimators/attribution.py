"""Attribution (paper A.2.3): per-dimension explained variance of the cross-decoders.

For a pair's trained network (restored best weights, eval mode: no dropout) and its held-out
half, in the scale the network sees (z-scored, clipped):

* ``r2_x[j] = 1 - SSE_j / SST_j`` of ``D_YX(E_Y y)`` against ``x[:, j]`` -- how much of X's
  dimension j the latent of Y explains;
* ``r2_y[j]`` likewise for ``D_XY(E_X x)`` against ``y[:, j]``.

``SSE_j = sum_i (xhat_ij - x_ij)^2`` and ``SST_j = sum_i (x_ij - mean_j)^2`` over the held-out
rows (mean_j: the held-out mean). Normalising by each dimension's own variance avoids the
paper's caveat that a constant dimension looks "well explained" (zero reconstruction error):
a dimension that is constant on the held-out rows has no variance to explain and gets NaN,
never a number. R^2 is unitless, at most 1, and negative when the reconstruction is worse
than the held-out mean.
"""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["r2_from_sums", "r2_per_dim", "cross_decoder_r2"]


def r2_from_sums(sse: np.ndarray, target: np.ndarray) -> np.ndarray:
    """R^2 per dimension from the summed squared errors and the targets.

    ``sse``: (..., d) sums over rows of squared reconstruction errors; ``target``: (..., n, d)
    the values reconstructed. Returns (..., d) float64: ``1 - sse / SST``, NaN where the target
    dimension is constant over its n rows (max == min: nothing to explain).
    """
    t = np.asarray(target, dtype=np.float64)
    centred = t - t.mean(axis=-2, keepdims=True)
    sst = np.einsum("...nd,...nd->...d", centred, centred)
    constant = t.max(axis=-2) == t.min(axis=-2)
    with np.errstate(divide="ignore", invalid="ignore"):
        r2 = 1.0 - np.asarray(sse, dtype=np.float64) / sst
    return np.where(constant, np.nan, r2)


def r2_per_dim(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """R^2 per dimension of predictions ``pred`` against ``target``, both (..., n, d).
    Returns (..., d) float64; NaN for a dimension constant in ``target`` (see :func:`r2_from_sums`)."""
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {pred.shape} vs {target.shape}")
    return r2_from_sums(np.square(pred - target).sum(axis=-2), target)


@torch.no_grad()
def cross_decoder_r2(model, x: torch.Tensor, y: torch.Tensor, chunk: int) -> tuple[np.ndarray, np.ndarray]:
    """Held-out R^2 per dimension of both cross-decoders of P stacked pairs.

    ``model``: a :class:`~.networks.StackedCrossAE` (its current weights; no dropout masks are
    applied, i.e. eval mode); ``x`` (P, n, dx), ``y`` (P, n, dy): the held-out rows as the
    network sees them; ``chunk``: rows per forward pass (memory bound). One forward pass of the
    encoders and cross-decoders over the rows. Returns ``(r2_x (P, dx), r2_y (P, dy))`` float64.
    """
    P, n, dx = x.shape
    dy = y.shape[2]
    sse_x = torch.zeros(P, dx, dtype=torch.float64, device=x.device)
    sse_y = torch.zeros(P, dy, dtype=torch.float64, device=x.device)
    for s in range(0, n, chunk):
        xb, yb = x[:, s:s + chunk], y[:, s:s + chunk]
        zx, zy = model.encode(xb, yb)
        sse_x += (model.mlp("dyx", zy).float() - xb.float()).to(torch.float64).square().sum(dim=1)
        sse_y += (model.mlp("dxy", zx).float() - yb.float()).to(torch.float64).square().sum(dim=1)
    xs, ys = x.detach().float().cpu().numpy(), y.detach().float().cpu().numpy()
    return r2_from_sums(sse_x.cpu().numpy(), xs), r2_from_sums(sse_y.cpu().numpy(), ys)
