"""Preprocessing steps (paper A.4) against direct numpy computations, streamed in many blocks."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lmi_distributed.data import open_store
from lmi_distributed.data.hvg import seurat_hvg
from lmi_distributed.data.ingest import ingest
from lmi_distributed.data.preprocess import PreprocessConfig, block_moments, combine_moments


def _counts(n=400, g=120, seed=0):
    rng = np.random.default_rng(seed)
    lam = rng.gamma(0.5, 2.0, size=g) * rng.uniform(0.2, 3, size=(n, 1))
    C = rng.poisson(lam).astype(np.float32)
    C[:, 7] = 0  # a gene never expressed
    C[11] = 0  # a cell with no counts
    return C


C = _counts()
SMALL_BLOCK = 120 * 4 * 13  # 13-row input blocks: many blocks, uneven last block


def _ref_norm(C, target=1e4):
    tot = C.astype(np.float64).sum(1)
    f = tot / target
    f[f == 0] = 1
    return (C / f[:, None]).astype(np.float32)


def _ref_hvg(mean, var, n_top, n_bins=20):
    """Independent Seurat-flavour HVG: explicit loops over the bins of pandas.cut."""
    mean = mean.copy()
    mean[mean == 0] = 1e-12
    with np.errstate(divide="ignore", invalid="ignore"):
        disp = var / mean
    disp[disp == 0] = np.nan
    with np.errstate(divide="ignore"):
        disp = np.log(disp)
    lm = np.log1p(mean)
    codes = pd.cut(lm, bins=n_bins).codes
    norm = np.full_like(disp, np.nan)
    for b in np.unique(codes):
        idx = np.flatnonzero(codes == b)
        vals = disp[idx]
        ok = vals[~np.isnan(vals)]
        if ok.size == 1 and idx.size == 1:
            norm[idx] = 1.0
            continue
        mu = ok.mean() if ok.size else np.nan
        sd = ok.std(ddof=1) if ok.size > 1 else np.nan
        if ok.size == 1:  # one non-nan value: pandas std is nan -> treated like a single gene
            norm[idx] = vals / mu
        else:
            norm[idx] = (vals - mu) / sd
    valid = np.sort(norm[~np.isnan(norm)])[::-1]
    cut = valid[min(n_top, valid.size) - 1]
    return np.nan_to_num(norm, nan=-np.inf) >= cut, norm


def _ingest_npy(tmp_path, A, name, **kw):
    np.save(tmp_path / f"{name}.npy", A)
    return ingest(tmp_path / f"{name}.npy", tmp_path / "s.zarr", name,
                  block_bytes=SMALL_BLOCK, **kw)


def _all(h):
    return h.read_rows(np.arange(h.n_rows))


def test_moments_combination_matches_numpy():
    rng = np.random.default_rng(3)
    A = (rng.normal(size=(1000, 7)) * [1, 10, 1e3, 1e-3, 5, 5, 5] + 100).astype(np.float32)
    parts = [block_moments(A[i:i + 37]) for i in range(0, 1000, 37)]
    n, mean, var = combine_moments(parts)
    assert (n == 1000).all()
    np.testing.assert_allclose(mean, A.astype(np.float64).mean(0), rtol=1e-6)
    np.testing.assert_allclose(var, A.astype(np.float64).var(0, ddof=1), rtol=1e-4)


def test_normalize_total(tmp_path):
    h = _ingest_npy(tmp_path, C, "n", preprocess={"normalize_total": 1e4})
    out = _all(h)
    np.testing.assert_allclose(out, _ref_norm(C), rtol=1e-6)
    np.testing.assert_allclose(out[np.arange(400) != 11].sum(1), 1e4, rtol=1e-4)
    assert (out[11] == 0).all()
    assert h.provenance["preprocessing"][0] == {"step": "normalize_total", "target_sum": 1e4,
                                                "zero_total_rows": "left at 0"}


def test_log1p(tmp_path):
    h = _ingest_npy(tmp_path, C, "l", preprocess={"log1p": True})
    np.testing.assert_allclose(_all(h), np.log1p(C), rtol=1e-6)
    assert [s["step"] for s in h.provenance["preprocessing"]] == ["log1p"]


def test_scale_and_clip_embedding(tmp_path):
    rng = np.random.default_rng(5)
    E = (rng.standard_t(2, size=(500, 30)) * rng.uniform(0.1, 50, 30)).astype(np.float32)
    E[:, 4] = 3.0  # constant column -> 0 after centring
    h = _ingest_npy(tmp_path, E, "e", preprocess="embedding")
    sd = E.astype(np.float64).std(0, ddof=1)
    sd[sd == 0] = 1
    ref = np.clip((E - E.astype(np.float64).mean(0)) / sd, -10, 10)
    out = _all(h)
    np.testing.assert_allclose(out, ref, atol=2e-5)
    assert out.max() == pytest.approx(10) and out.min() == pytest.approx(-10)  # clipping engaged
    assert (out[:, 4] == 0).all()
    np.testing.assert_allclose(h.var["scale_std"].to_numpy()[:4], sd[:4], rtol=1e-5)
    # clip alone, scale alone
    h2 = _ingest_npy(tmp_path, E, "c", preprocess={"clip": 2.5})
    np.testing.assert_array_equal(_all(h2), np.clip(E, -2.5, 2.5))
    h3 = _ingest_npy(tmp_path, E, "s", preprocess={"scale": True})
    np.testing.assert_allclose(_all(h3), (E - E.astype(np.float64).mean(0)) / sd, atol=1e-4, rtol=1e-5)
    h4 = _ingest_npy(tmp_path, E, "u", preprocess={"scale": True, "zero_center": False})
    np.testing.assert_allclose(_all(h4), E / sd, rtol=1e-5)


def test_hvg_selection_matches_direct_numpy(tmp_path):
    L = np.log1p(_ref_norm(C))
    Eraw = np.expm1(L).astype(np.float64)
    # n_top=25: the 25th/26th normalised dispersions are not tied (2-gene bins give exact
    # +-1/sqrt(2) ties, where float rounding -- in Scanpy too -- decides)
    keep_ref, norm_ref = _ref_hvg(Eraw.mean(0), Eraw.var(0, ddof=1), 25)
    h = _ingest_npy(tmp_path, C, "h", preprocess={"normalize_total": 1e4, "log1p": True,
                                                   "n_top_genes": 25})
    keep = h.var["source_column"].to_numpy()
    assert keep.tolist() == np.flatnonzero(keep_ref).tolist()
    assert h.shape == (400, keep.size) and keep.size == 25
    np.testing.assert_allclose(_all(h), L[:, keep], rtol=1e-6)
    full = pd.read_parquet(h.path / "hvg.parquet")
    np.testing.assert_allclose(full["means"].to_numpy(), np.log1p(Eraw.mean(0)), rtol=1e-6, atol=1e-11)
    np.testing.assert_allclose(full["dispersions_norm"].to_numpy(), norm_ref, rtol=1e-5, atol=1e-6, equal_nan=True)
    step = [s for s in h.provenance["preprocessing"] if s["step"] == "highly_variable_genes"][0]
    assert step["flavor"] == "seurat" and step["n_top_genes"] == 25 and step["n_selected"] == keep.size


def test_hvg_single_gene_bin_and_ties():
    mean = np.array([1.0, 1.1, 1.2, 1.05, 50.0, 0.0])
    var = np.array([2.0, 1.0, 3.0, 2.5, 400.0, 0.0])
    df = seurat_hvg(mean, var, n_top_genes=2, n_bins=20)
    assert df["dispersions_norm"].iloc[4] == pytest.approx(1.0)  # alone in its bin
    assert np.isnan(df["dispersions"].iloc[5])
    assert df["highly_variable"].sum() == 2
    assert not df["highly_variable"].iloc[5]
    df = seurat_hvg(mean, var, n_top_genes=100)  # more than there are genes -> every valid gene
    assert df["highly_variable"].sum() == 5


def test_expression_pipeline_against_numpy(tmp_path):
    import anndata as ad

    ad.AnnData(sp.csr_matrix(C), obs=pd.DataFrame(index=[f"c{i}" for i in range(400)]),
               var=pd.DataFrame(index=[f"g{j}" for j in range(120)])).write_h5ad(tmp_path / "x.h5ad")
    h = ingest(tmp_path / "x.h5ad", tmp_path / "s.zarr", "expr",
               preprocess=PreprocessConfig.preset("expression", n_top_genes=25),
               block_bytes=SMALL_BLOCK)
    L = np.log1p(_ref_norm(C)).astype(np.float64)
    keep_ref, _ = _ref_hvg(np.expm1(L).mean(0), np.expm1(L).var(0, ddof=1), 25)
    Lk = L[:, keep_ref]
    ref = np.clip((Lk - Lk.mean(0)) / Lk.std(0, ddof=1), -10, 10)
    np.testing.assert_allclose(_all(h), ref, atol=3e-5)
    assert h.var.index.tolist() == [f"g{j}" for j in np.flatnonzero(keep_ref)]
    prov = open_store(tmp_path / "s.zarr").provenance("expr")
    assert [s["step"] for s in prov["preprocessing"]] == [
        "normalize_total", "log1p", "highly_variable_genes", "scale", "clip"]
    assert prov["preprocessing_config"]["n_top_genes"] == 25
    assert prov["source"]["format"] == "h5ad"


def test_synchronous_scheduler_same_result(tmp_path):
    a = _ingest_npy(tmp_path, C, "t", preprocess="embedding")
    np.save(tmp_path / "y.npy", C)
    b = ingest(tmp_path / "y.npy", tmp_path / "s.zarr", "y", preprocess="embedding",
               block_bytes=SMALL_BLOCK, scheduler="synchronous")
    np.testing.assert_array_equal(_all(a), _all(b))


def test_against_scanpy_if_available(tmp_path):
    sc = pytest.importorskip("scanpy")
    import anndata as ad

    adata = ad.AnnData(C.copy())
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.highly_variable_genes(adata, n_top_genes=25, flavor="seurat")
    hv = adata.var["highly_variable"].to_numpy()
    adata = adata[:, hv].copy()
    sc.pp.scale(adata, max_value=10)
    h = _ingest_npy(tmp_path, C, "sc", preprocess=PreprocessConfig.preset("expression", n_top_genes=25))
    assert h.var["source_column"].tolist() == np.flatnonzero(hv).tolist()
    np.testing.assert_allclose(_all(h), np.asarray(adata.X), atol=1e-4)
