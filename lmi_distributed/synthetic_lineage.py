"""Synthetic lineage-traced single-cell data with closed-form MI (bits) between clonally related cells.

The model (paper 4.2: sister cells separated at day 2, sampled at days 2 and 6). Per clone ``c``:
a clone state ``s_c ~ N(0, I_k)`` (its state at the first timepoint) and, in the ``sister`` variant,
a clone factor ``f_c ~ N(0, I_k)`` that *appears after the first timepoint*. A cell of clone ``c``
sampled at the early timepoint has latent state ``z = a_early s_c + sqrt(1 - a_early^2) e`` and one
sampled at the late timepoint ``z = a_late s_c + b f_c + sqrt(1 - a_late^2 - b^2) e``, with ``e ~
N(0, I_k)`` its own noise (``b = 0`` in the ``markov`` variant). So every cell's latent is N(0, I_k)
and two *different* cells of one clone are jointly Gaussian with per-dimension correlation

* early vs late: ``r = a_early a_late``;
* late vs late (sisters): ``r = a_late^2 + b^2``;

hence ``I = -(k / 2) log2(1 - r^2)`` bits. In the ``markov`` variant the late sisters are
conditionally independent given the early state (they evolve in separate wells), so the data
processing inequality holds: ``I(late; late') <= I(early; late)`` (as ``a_late < a_early``). In the
``sister`` variant the shared factor ``f_c`` is a hidden variable the early cell does not carry, and
with the defaults ``I(late; late') > I(early; late)``: DPI violated (non-Markovian).

Each cell also has ``m`` independent noise latents ``u ~ N(0, I_m)``. Genes are
``warp([z, u] @ A)`` with ``A`` a random (k + m) x genes Gaussian matrix (full column rank, so
injective) and ``warp(v) = arcsinh(2 v)`` (strictly monotone): an injective map of the latents,
so the MI between cells' gene vectors equals that of their latents, the closed form above.

Pseudotime: ``chi2_k.cdf(|z|^2)`` in [0, 1], a deterministic function of the cell's latent. For a
Gaussian pair the expected pMI of a cell given its own latent is ``-(1/2) log2(1 - r^2) + r^2
(z_i^2 - 1) / (2 ln 2)`` per dimension, increasing in ``|z|^2``: the generator puts the clone
information in the cells far along this pseudotime, so pMI rises along it. The 2-D embedding is
``z[:, :2]`` (obs columns ``emb1``, ``emb2``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = ["LineageParams", "lineage_truth", "simulate_lineage", "lineage_anndata", "gaussian_mi_bits"]


@dataclass(frozen=True)
class LineageParams:
    """Parameters of :func:`simulate_lineage` (defaults: the demo's)."""

    variant: Literal["markov", "sister"] = "sister"
    clones: int = 600            # clones (one joint sample per clone per pairing)
    k: int = 2                   # latent dimensions that carry clone information
    m: int = 4                   # independent noise latents per cell
    genes: int = 1000            # genes (features)
    a_early: float = 0.9         # loading of an early cell on its clone state
    a_late: float = 0.55         # loading of a late cell on the clone state
    b_sister: float = 0.6        # loading of a late cell on the clone factor (sister variant)
    early_day: int = 2
    late_day: int = 6
    mean_extra_cells: float = 1.0  # per clone and day: 1 (early) or 2 (late) cells + Poisson(this)
    seed: int = 0

    def check(self) -> None:
        if self.variant not in ("markov", "sister"):
            raise ValueError(f"variant must be 'markov' or 'sister', got {self.variant!r}")
        if self.clones < 8 or self.k < 1 or self.m < 0 or self.genes < self.k + self.m:
            raise ValueError(f"need clones >= 8, k >= 1, m >= 0, genes >= k + m (got {self})")
        b = self.b_sister if self.variant == "sister" else 0.0
        if not (0 < self.a_early < 1 and 0 <= self.a_late < 1 and self.a_late ** 2 + b ** 2 < 1):
            raise ValueError("need 0 < a_early < 1, 0 <= a_late, a_late^2 + b_sister^2 < 1 "
                             f"(got a_early={self.a_early}, a_late={self.a_late}, b_sister={b})")
        if self.early_day == self.late_day:
            raise ValueError("early_day and late_day must differ")


def gaussian_mi_bits(r: float, k: int) -> float:
    """MI (bits) of k independent bivariate Gaussian dims with correlation r each."""
    return float(-(k / 2.0) * math.log2(1.0 - r * r)) + 0.0


def lineage_truth(p: LineageParams) -> dict:
    """Closed-form MI (bits) between two different cells of one clone, per condition pair.

    Keys ``"day{early}~day{late}"`` and ``"day{late}~day{late}_sister"`` (and reversed), plus the
    DPI comparison ``sister_vs_early``: ``long`` = I(late; late'), ``short`` = I(early; late),
    ``difference`` = long - short (> 0: DPI violated)."""
    p.check()
    b = p.b_sister if p.variant == "sister" else 0.0
    e, l = f"day{p.early_day}", f"day{p.late_day}"
    i_el = gaussian_mi_bits(p.a_early * p.a_late, p.k)
    i_ll = gaussian_mi_bits(p.a_late ** 2 + b ** 2, p.k)
    i_ee = gaussian_mi_bits(p.a_early ** 2, p.k)
    pairs = {f"{e}~{l}": i_el, f"{l}~{e}": i_el, f"{l}~{l}_sister": i_ll, f"{l}_sister~{l}": i_ll,
             f"{e}~{e}_sister": i_ee, f"{e}_sister~{e}": i_ee}
    return {"units": "bits", "variant": p.variant, "pairs": pairs,
            "comparisons": {"sister_vs_early": {"long": i_ll, "short": i_el, "difference": i_ll - i_el,
                                                "dpi_holds": bool(i_ll <= i_el)}}}


def simulate_lineage(p: LineageParams):
    """Cells of the model: returns (genes (n_cells, genes) float32, obs DataFrame).

    obs columns: ``clone`` (str barcode), ``day`` (int), ``pseudotime`` (float in [0, 1]),
    ``emb1``, ``emb2`` (2-D embedding); index: cell ids ``cell{i}``."""
    import pandas as pd
    from scipy.stats import chi2

    p.check()
    rng = np.random.default_rng(p.seed)
    b = p.b_sister if p.variant == "sister" else 0.0
    s = rng.standard_normal((p.clones, p.k))
    f = rng.standard_normal((p.clones, p.k))
    n_early = 1 + rng.poisson(p.mean_extra_cells, p.clones)
    n_late = 2 + rng.poisson(p.mean_extra_cells, p.clones)
    clone_e = np.repeat(np.arange(p.clones), n_early)
    clone_l = np.repeat(np.arange(p.clones), n_late)
    z_e = p.a_early * s[clone_e] + math.sqrt(1 - p.a_early ** 2) * rng.standard_normal((clone_e.size, p.k))
    z_l = (p.a_late * s[clone_l] + b * f[clone_l]
           + math.sqrt(1 - p.a_late ** 2 - b ** 2) * rng.standard_normal((clone_l.size, p.k)))
    z = np.concatenate([z_e, z_l])
    clone = np.concatenate([clone_e, clone_l])
    day = np.concatenate([np.full(clone_e.size, p.early_day), np.full(clone_l.size, p.late_day)])
    u = rng.standard_normal((z.shape[0], p.m))
    A = rng.standard_normal((p.k + p.m, p.genes)) / math.sqrt(p.k + p.m)
    genes = np.arcsinh(2.0 * (np.concatenate([z, u], axis=1) @ A)).astype(np.float32)
    emb = z[:, :2] if p.k >= 2 else np.concatenate([z[:, :1], u[:, :1]], axis=1)
    obs = pd.DataFrame({
        "clone": [f"c{c:05d}" for c in clone], "day": day.astype(np.int64),
        "pseudotime": chi2.cdf(np.sum(z ** 2, axis=1), df=p.k),
        "emb1": emb[:, 0], "emb2": emb[:, 1],
    }, index=pd.Index([f"cell{i}" for i in range(z.shape[0])], name="cell"))
    return genes, obs


def lineage_anndata(p: LineageParams):
    """The simulated cells as an ``anndata.AnnData`` (X: genes, obs as :func:`simulate_lineage`)."""
    import anndata as ad
    import pandas as pd

    X, obs = simulate_lineage(p)
    var = pd.DataFrame(index=pd.Index([f"g{j}" for j in range(X.shape[1])], name="gene"))
    return ad.AnnData(X=X, obs=obs, var=var)
