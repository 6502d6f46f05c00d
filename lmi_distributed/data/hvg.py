"""Highly variable genes, Seurat flavour (as ``scanpy.pp.highly_variable_genes(flavor="seurat")``,
Scanpy's default), from per-gene summary statistics so it runs after a streaming pass.

Given, per gene, the mean and the unbiased (ddof=1) variance of ``expm1(X)`` where X is the
log1p-normalised expression (i.e. of the normalised counts):

1. ``mean[mean == 0] = 1e-12``; ``dispersion = var / mean``; ``dispersion[dispersion == 0] = nan``;
   ``dispersion = log(dispersion)``; ``mean = log1p(mean)``;
2. bin genes by mean into ``n_bins`` (20) equal-width bins (``pandas.cut``);
3. within each bin, ``dispersions_norm = (dispersion - bin mean) / bin std`` (std ddof=1);
   a bin holding a single gene gets ``dispersions_norm = 1`` (bin mean 0, bin std = its value);
4. with ``n_top_genes``: the cut-off is the n-th highest non-NaN normalised dispersion and genes
   with ``dispersions_norm >= cutoff`` are kept (NaN counts as -inf). Ties at the cut-off can keep
   more than n genes, exactly as Scanpy does.
"""
from __future__ import annotations

import numpy as np

__all__ = ["seurat_hvg"]


def seurat_hvg(mean: np.ndarray, var: np.ndarray, n_top_genes: int, n_bins: int = 20):
    """Seurat-flavour HVG table: DataFrame(means, dispersions, dispersions_norm, highly_variable).

    ``mean``, ``var``: (n_genes,) float64 statistics of ``expm1`` of the log-normalised data,
    ``var`` with ddof=1. Returns one row per gene, in the input order.
    """
    import pandas as pd

    mean = np.array(mean, dtype=np.float64, copy=True)
    var = np.asarray(var, dtype=np.float64)
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        dispersion = var / mean
        dispersion[dispersion == 0] = np.nan
        dispersion = np.log(dispersion)
    mean = np.log1p(mean)
    df = pd.DataFrame({"means": mean, "dispersions": dispersion})
    df["mean_bin"] = pd.cut(df["means"], bins=n_bins)
    grouped = df.groupby("mean_bin", observed=True)["dispersions"]
    stats = grouped.agg(avg="mean", dev="std")
    one = stats["dev"].isnull()
    stats.loc[one, "dev"] = stats.loc[one, "avg"]
    stats.loc[one, "avg"] = 0
    per_gene = stats.loc[df["mean_bin"]].set_index(df.index)
    df["dispersions_norm"] = (df["dispersions"] - per_gene["avg"]) / per_gene["dev"]
    dn = df["dispersions_norm"].to_numpy()
    n_top = min(int(n_top_genes), len(df))
    valid = np.sort(dn[~np.isnan(dn)])[::-1]
    if valid.size == 0:
        df["highly_variable"] = False
    else:
        cut = valid[min(n_top, valid.size) - 1]
        df["highly_variable"] = np.nan_to_num(dn, nan=-np.inf) >= cut
    df["mean_bin"] = df["mean_bin"].astype(str)
    return df
