"""Out-of-core preprocessing (paper appendix A.4), block by block with Dask.

Steps, in this order, each optional (a :class:`PreprocessConfig` field) and recorded in
provenance:

1. ``normalize_total``: divide each row by its total and multiply by the target (1e4 for
   expression); rows with total 0 stay 0 (as ``scanpy.pp.normalize_total``).
2. ``log1p``: natural log(1 + x).
3. ``n_top_genes``: keep the top-n highly variable genes, Seurat flavour (Scanpy's default
   ``flavor="seurat"``; see :mod:`.hvg`), columns kept in their original order.
4. ``scale``: per column, subtract the mean (``zero_center``) and divide by the standard
   deviation (ddof=1, as ``scanpy.pp.scale``; a zero std is treated as 1).
5. ``clip``: clip values to ``[-clip, clip]``.

Presets: ``expression`` = 1-5 with (1e4, log1p, 1000 genes, scale, 10); ``embedding`` = 4-5
(unit variance per column, clip +-10); ``none``.

Pass 1 (only when HVG or scale is on) streams row blocks and computes per-column count, mean and
M2 (sum of squared deviations) per block in float64, combined across blocks with Chan et al.'s
parallel formula; it also finds non-finite rows. Pass 2 applies the transform per block and
writes shard-aligned blocks to the store. Both run as Dask graphs on the threaded (or
synchronous) scheduler -- never Dask-on-Ray (it breaks on Zarr v3 arrays).
"""
from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .validation import DataError

__all__ = ["PreprocessConfig", "normalize_log_block", "block_moments", "combine_moments",
           "transform_block"]


class PreprocessConfig(BaseModel):
    """Which preprocessing steps to apply at ingest, with their parameters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    normalize_total: float | None = Field(None, gt=0, description="target total per row")
    log1p: bool = False
    n_top_genes: int | None = Field(None, ge=1, description="Seurat-flavour HVGs to keep")
    hvg_flavor: Literal["seurat"] = "seurat"
    hvg_n_bins: int = Field(20, ge=1)
    scale: bool = False
    zero_center: bool = True
    clip: float | None = Field(None, gt=0)

    @classmethod
    def preset(cls, name: str, **overrides) -> "PreprocessConfig":
        """``none`` | ``expression`` | ``embedding`` (module docstring), with field overrides."""
        presets = {
            "none": {},
            "expression": dict(normalize_total=1e4, log1p=True, n_top_genes=1000, scale=True,
                               clip=10.0),
            "embedding": dict(scale=True, clip=10.0),
        }
        if name not in presets:
            raise DataError(f"unknown preprocessing preset {name!r}; use one of {list(presets)}")
        return cls(**{**presets[name], **overrides})

    @property
    def is_identity(self) -> bool:
        return not (self.normalize_total or self.log1p or self.n_top_genes or self.scale
                    or self.clip)

    @property
    def needs_stats(self) -> bool:
        return bool(self.n_top_genes or self.scale)

    def steps(self) -> list[dict]:
        """Provenance: the applied steps with their parameters, in order."""
        out: list[dict] = []
        if self.normalize_total:
            out.append({"step": "normalize_total", "target_sum": self.normalize_total,
                        "zero_total_rows": "left at 0"})
        if self.log1p:
            out.append({"step": "log1p", "base": "e"})
        if self.n_top_genes:
            out.append({"step": "highly_variable_genes", "flavor": self.hvg_flavor,
                        "n_top_genes": self.n_top_genes, "n_bins": self.hvg_n_bins,
                        "statistics": "mean and var (ddof=1) of expm1(X), as scanpy flavor='seurat'"})
        if self.scale:
            out.append({"step": "scale", "zero_center": self.zero_center, "ddof": 1,
                        "zero_std": "treated as 1"})
        if self.clip:
            out.append({"step": "clip", "min": -self.clip, "max": self.clip})
        return out


def normalize_log_block(b: np.ndarray, cfg: PreprocessConfig) -> np.ndarray:
    """Steps 1-2 on a dense block (rows, genes) -> float32 (rows, genes)."""
    b = np.array(b, dtype=np.float32, copy=True) if (cfg.normalize_total or cfg.log1p) else \
        np.asarray(b, dtype=np.float32)
    if cfg.normalize_total:
        tot = b.sum(axis=1, dtype=np.float64)
        factor = tot / cfg.normalize_total
        factor[factor == 0] = 1.0
        b /= factor.astype(np.float32)[:, None]
    if cfg.log1p:
        np.log1p(b, out=b)
    return b


def block_moments(b: np.ndarray) -> np.ndarray:
    """Per-column (count, mean, M2) of a float block -> float64 (3, d); M2 = sum of squared
    deviations from the block mean."""
    n = b.shape[0]
    out = np.zeros((3, b.shape[1]), dtype=np.float64)
    if n == 0:
        return out
    s = np.add.reduce(b, axis=0, dtype=np.float64)
    mean = s / n
    tmp = np.subtract(b, mean.astype(b.dtype))
    np.square(tmp, out=tmp)
    out[0] = n
    out[1] = mean
    out[2] = np.add.reduce(tmp, axis=0, dtype=np.float64)
    return out


def combine_moments(parts) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Chan et al. combination of block moments -> (count, mean, var with ddof=1)."""
    n = mean = m2 = None
    for p in parts:
        nb, mb, m2b = p[0], p[1], p[2]
        if n is None:
            n, mean, m2 = nb.copy(), mb.copy(), m2b.copy()
            continue
        tot = n + nb
        with np.errstate(invalid="ignore", divide="ignore"):
            delta = mb - mean
            frac = np.where(tot > 0, nb / np.where(tot > 0, tot, 1), 0)
            mean = mean + delta * frac
            m2 = m2 + m2b + delta * delta * n * frac
        n = tot
    with np.errstate(invalid="ignore", divide="ignore"):
        var = np.where(n > 1, m2 / np.maximum(n - 1, 1), np.nan)
    return n, mean, var


def transform_block(b: np.ndarray, cfg: PreprocessConfig, keep: np.ndarray | None,
                    mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray:
    """Steps 1-5 on a raw block -> float32 (rows, n_out). ``keep``: column indices (HVGs);
    ``mean``/``std``: per kept column (float32) for scaling."""
    y = normalize_log_block(b, cfg)
    if keep is not None:
        y = y[:, keep]
    elif (cfg.scale or cfg.clip) and np.may_share_memory(y, b):
        y = y.copy()
    if cfg.scale:
        if cfg.zero_center:
            y -= mean
        y /= std
    if cfg.clip:
        np.clip(y, -cfg.clip, cfg.clip, out=y)
    return np.ascontiguousarray(y, dtype=np.float32)
