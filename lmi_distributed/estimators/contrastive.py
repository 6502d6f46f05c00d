"""An auxiliary dependence-seeking term for the LMI training loss: InfoNCE on the latents.

Why: the paper's loss (self + cross reconstruction MSE) spends the 8 latent dims on the
directions that carry the most *variance*. When the dependence between X and Y lives in a few
low-variance directions (or in 2 of 25 equally scaled dims, as in BMI's sparse Gaussians), the
latents can miss it and KSG reports far less than the truth. InfoNCE (van den Oord et al. 2018)
rewards latents whose pairs (zx_i, zy_i) are distinguishable from mismatched pairs
(zx_i, zy_j), i.e. latents that carry the dependence, whatever its variance.

The estimate keeps its meaning: the latents are still E_X(x) and E_Y(y), functions of X alone
and of Y alone, fitted on the training rows; KSG runs on the held-out rows, so by the data
processing inequality the quantity estimated is I(E_X X; E_Y Y) <= I(X; Y). The term only
changes which functions are fitted. It is on by default (weight 1, chosen by the accuracy suite,
docs/estimator.md); weight 0 (``lmi.PAPER``) is the paper's loss, bit for bit.

Critic: separable, cosine similarity over a temperature, ``s_ij = <zx_i, zy_j> / (|zx_i| |zy_j| tau)``;
loss = symmetric cross-entropy of the B x B similarity matrix against the diagonal (in nats,
mean over the B rows, average of the X->Y and Y->X directions). Pure torch, batched over pairs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["info_nce", "ContrastiveTerm"]

_EPS = 1e-8       # guards the cosine normalisation of an all-zero latent row


def info_nce(zx: torch.Tensor, zy: torch.Tensor, temperature: float) -> torch.Tensor:
    """Symmetric InfoNCE loss per pair, nats, shape (P,).

    ``zx``, ``zy``: (P, B, latent) latents of B joint rows of each of P pairs (row i of zx and
    row i of zy are a joint sample; the other B - 1 rows are its negatives). ``temperature`` > 0.
    The loss is ``log B - (InfoNCE bound)``, so it lies in [0, ~log B] when the latents carry
    no dependence and falls as they carry more. B = 1 gives 0 (no negatives).
    """
    if zx.shape != zy.shape or zx.ndim != 3:
        raise ValueError(f"zx and zy must both be (P, B, latent), got {tuple(zx.shape)} and {tuple(zy.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    P, B, _ = zx.shape
    a = zx.float() / (zx.float().norm(dim=2, keepdim=True) + _EPS)
    b = zy.float() / (zy.float().norm(dim=2, keepdim=True) + _EPS)
    logits = torch.bmm(a, b.transpose(1, 2)) / temperature           # (P, B, B)
    target = torch.arange(B, device=zx.device).expand(P, B)
    xy = F.cross_entropy(logits.reshape(P * B, B), target.reshape(-1), reduction="none").view(P, B)
    yx = F.cross_entropy(logits.transpose(1, 2).reshape(P * B, B), target.reshape(-1),
                         reduction="none").view(P, B)
    return 0.5 * (xy.mean(dim=1) + yx.mean(dim=1))


class ContrastiveTerm:
    """``weight * info_nce(E_X x, E_Y y)`` per pair: the auxiliary term the trainer adds to the
    LMI loss (:func:`.training.train_pairs` ``aux_loss=``), in training and in the held-out loss
    that early stopping watches.

    ``weight`` >= 0 (loss units: the LMI loss is a sum of four MSEs of z-scored data, about 2-4
    at the start; InfoNCE is at most about log B nats); ``temperature`` > 0; ``chunk``: rows per
    InfoNCE block of the held-out loss (the training batch size, so that the held-out term sees
    as many negatives per row as the training term does).
    """

    def __init__(self, weight: float, temperature: float, chunk: int):
        if weight < 0 or not temperature > 0 or chunk < 2:
            raise ValueError(f"need weight >= 0, temperature > 0, chunk >= 2; got {weight}, {temperature}, {chunk}")
        self.weight, self.temperature, self.chunk = float(weight), float(temperature), int(chunk)

    def from_latents(self, zx: torch.Tensor, zy: torch.Tensor) -> torch.Tensor:
        """Training term of a minibatch's latents ``zx``, ``zy`` (P, B, latent) -> (P,) (what the
        trainer calls, with the latents of its loss's forward pass)."""
        return self.weight * info_nce(zx, zy, self.temperature)

    @torch.no_grad()
    def held_out(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Held-out term over all N rows of ``x`` (P, N, dx), ``y`` (P, N, dy), in consecutive
        blocks of ``chunk`` rows (the last block, if shorter than 2 rows, joins the previous
        one); the row-weighted mean over blocks. Returns (P,) float64."""
        n = x.shape[1]
        starts = list(range(0, n, self.chunk))
        if len(starts) > 1 and n - starts[-1] < 2:
            starts.pop()
        bounds = starts[1:] + [n]
        tot = torch.zeros(x.shape[0], dtype=torch.float64, device=x.device)
        for s, e in zip(starts, bounds):
            zx, zy = model.encode(x[:, s:e], y[:, s:e])
            tot += info_nce(zx, zy, self.temperature).to(torch.float64) * (e - s)
        return self.weight * tot / n
