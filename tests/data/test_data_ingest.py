"""Ingest paths (npy, npz, zarr, parquet, csv, h5ad dense/CSR/CSC, AnnData zarr), errors, CLI."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from lmi_distributed.data import DataError, open_store
from lmi_distributed.data.ingest import ingest

RNG = np.random.default_rng(0)
EMB = RNG.normal(size=(300, 16)).astype(np.float32)
ACC = np.array([f"P{i:05d}" for i in range(300)])


def _check(h, expect, ids=None):
    np.testing.assert_array_equal(h.read_rows(np.arange(h.n_rows)), expect)
    if ids is not None:
        assert h.ids.tolist() == list(ids)


def test_npy(tmp_path):
    np.save(tmp_path / "e.npy", EMB)
    h = ingest(tmp_path / "e.npy", tmp_path / "s.zarr", "e")
    _check(h, EMB)
    prov = open_store(tmp_path / "s.zarr").provenance("e")
    assert prov["source"]["format"] == "npy" and prov["source"]["path"].endswith("e.npy")
    assert prov["preprocessing"] == []
    # float64 and 1-D inputs are converted
    np.save(tmp_path / "f.npy", EMB[:, 0].astype(np.float64))
    h = ingest(tmp_path / "f.npy", tmp_path / "s.zarr", "f")
    assert h.shape == (300, 1)


@pytest.mark.parametrize("compressed", [False, True])
def test_npz(tmp_path, compressed):
    save = np.savez_compressed if compressed else np.savez
    save(tmp_path / "e.npz", emb=EMB, ids=ACC)
    h = ingest(tmp_path / "e.npz", tmp_path / "s.zarr", "e")
    _check(h, EMB, ACC)
    assert not list(tmp_path.glob(".s.zarr.spool*"))  # spool cleaned up
    save(tmp_path / "two.npz", a=EMB, b=EMB)
    with pytest.raises(DataError, match=r"holds arrays \['a', 'b'\]; pass key="):
        ingest(tmp_path / "two.npz", tmp_path / "s.zarr", "t")
    h = ingest(tmp_path / "two.npz", tmp_path / "s.zarr", "t", key="b")
    _check(h, EMB)


def test_zarr_array(tmp_path):
    import zarr

    g = zarr.open_group(str(tmp_path / "in.zarr"), mode="w")
    g.create_array("emb", data=EMB, chunks=(64, 16))
    h = ingest(tmp_path / "in.zarr", tmp_path / "s.zarr", "z", key="emb")
    _check(h, EMB)
    a = zarr.open_array(str(tmp_path / "arr.zarr"), mode="w", shape=EMB.shape, dtype="f4",
                        chunks=(100, 16), zarr_format=2)
    a[:] = EMB
    _check(ingest(tmp_path / "arr.zarr", tmp_path / "s.zarr", "z2"), EMB)
    # a matrix of another store
    _check(ingest(tmp_path / "s.zarr", tmp_path / "t.zarr", "copy", key="z"), EMB)


def test_parquet_list_column(tmp_path):
    df = pd.DataFrame({"accession": ACC, "organism": "human", "emb": list(EMB)})
    df.to_parquet(tmp_path / "e.parquet", row_group_size=100)
    h = ingest(tmp_path / "e.parquet", tmp_path / "s.zarr", "p", id_column="accession")
    _check(h, EMB, ACC)
    assert h.obs["organism"].iloc[0] == "human"


def test_parquet_numeric_columns(tmp_path):
    cols = {f"f{j}": EMB[:, j] for j in range(16)}
    df = pd.DataFrame({"accession": ACC, "length": np.arange(300), **cols})
    df.to_parquet(tmp_path / "e.parquet")
    h = ingest(tmp_path / "e.parquet", tmp_path / "s.zarr", "p", id_column="accession",
               vector_columns=[f"f{j}" for j in range(16)])
    _check(h, EMB, ACC)
    assert h.obs["length"].tolist() == list(range(300))
    with pytest.raises(DataError, match="unknown id column 'acc'"):
        ingest(tmp_path / "e.parquet", tmp_path / "s.zarr", "q", id_column="acc")


def test_parquet_ragged_vectors(tmp_path):
    df = pd.DataFrame({"id": ["a", "b", "c"], "emb": [[1.0, 2.0], [1.0, 2.0], [1.0]]})
    df.to_parquet(tmp_path / "r.parquet")
    with pytest.raises(DataError, match=r"differ in length.*first rows: \[2\]"):
        ingest(tmp_path / "r.parquet", tmp_path / "s.zarr", "r", id_column="id")


def test_csv_numeric_and_list(tmp_path):
    df = pd.DataFrame({"id": ACC[:50], **{f"v{j}": EMB[:50, j] for j in range(16)}})
    df.to_csv(tmp_path / "e.csv", index=False, float_format="%.9g")
    h = ingest(tmp_path / "e.csv", tmp_path / "s.zarr", "c", id_column="id")
    _check(h, EMB[:50], ACC[:50])
    lst = pd.DataFrame({"id": ACC[:50], "vec": ["[" + ", ".join(f"{x:.9g}" for x in r) + "]" for r in EMB[:50]]})
    lst.to_csv(tmp_path / "l.tsv", sep="\t", index=False)
    h = ingest(tmp_path / "l.tsv", tmp_path / "s.zarr", "l", id_column="id", vector_columns="vec")
    _check(h, EMB[:50], ACC[:50])


def _anndata(X, layers=None):
    import anndata as ad

    n, d = X.shape
    obs = pd.DataFrame({"day": np.repeat([2, 6], n // 2), "clone": [f"c{i % 5}" for i in range(n)]},
                       index=[f"cell{i}" for i in range(n)])
    obs["clone"] = obs["clone"].astype("category")
    var = pd.DataFrame({"symbol": [f"G{j}" for j in range(d)]}, index=[f"ENSG{j}" for j in range(d)])
    return ad.AnnData(X=X, obs=obs, var=var, layers=layers or {})


COUNTS = sp.random(120, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
COUNTS.data = np.ceil(COUNTS.data * 20).astype(np.float32)


@pytest.mark.parametrize("kind", ["csr", "csc", "dense"])
def test_h5ad(tmp_path, kind):
    X = {"csr": COUNTS, "csc": COUNTS.tocsc(), "dense": COUNTS.toarray()}[kind]
    a = _anndata(X, layers={"counts2": COUNTS * 2})
    a.write_h5ad(tmp_path / "a.h5ad")
    h = ingest(tmp_path / "a.h5ad", tmp_path / "s.zarr", "cells", block_bytes=50 * 4 * 16)
    _check(h, COUNTS.toarray(), [f"cell{i}" for i in range(120)])
    assert h.obs["day"].tolist() == [2] * 60 + [6] * 60
    assert h.obs["clone"].iloc[6] == "c1"
    assert h.var["symbol"].tolist()[:2] == ["G0", "G1"]
    hl = ingest(tmp_path / "a.h5ad", tmp_path / "s.zarr", "layer", key="counts2")
    _check(hl, (COUNTS * 2).toarray())
    with pytest.raises(DataError, match=r"no element 'layers/nope'.*\['counts2'\]"):
        ingest(tmp_path / "a.h5ad", tmp_path / "s.zarr", "x", key="nope")


def test_anndata_zarr(tmp_path):
    import warnings

    a = _anndata(COUNTS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a.write_zarr(tmp_path / "a.zarr")
    h = ingest(tmp_path / "a.zarr", tmp_path / "s.zarr", "cells")
    _check(h, COUNTS.toarray(), [f"cell{i}" for i in range(120)])
    assert open_store(tmp_path / "s.zarr").provenance("cells")["source"]["format"] == "anndata-zarr"


def test_scanpy_example_dataset(tmp_path):
    """A real AnnData file: scanpy's bundled pbmc68k_reduced (dense, already scaled)."""
    sc = pytest.importorskip("scanpy")
    path = os.path.join(os.path.dirname(sc.__file__), "datasets", "10x_pbmc68k_reduced.h5ad")
    if not os.path.exists(path):
        pytest.skip("pbmc68k_reduced not bundled")
    import anndata as ad

    ref = ad.read_h5ad(path)
    h = ingest(path, tmp_path / "s.zarr", "pbmc")
    assert h.shape == ref.shape
    np.testing.assert_allclose(h.read_rows([0, 5, 699]), np.asarray(ref.X)[[0, 5, 699]], rtol=1e-6)
    assert h.ids.tolist() == ref.obs_names.tolist()
    assert set(ref.obs.columns) <= set(h.obs.columns)


# -------------------------------------------------------------------- errors

def test_nonfinite_rows_named(tmp_path):
    bad = EMB.copy()
    bad[[7, 123, 200], 3] = [np.nan, np.inf, -np.inf]
    np.savez(tmp_path / "b.npz", X=bad, ids=ACC)
    with pytest.raises(DataError, match=r"3 of 300 rows contain NaN or inf; first rows: \[7, 123, 200\] "
                                        r"\(ids \['P00007', 'P00123', 'P00200'\]\)"):
        ingest(tmp_path / "b.npz", tmp_path / "s.zarr", "b")
    assert not (tmp_path / "s.zarr").exists()  # nothing left behind
    with pytest.raises(DataError, match=r"rows contain NaN or inf.*preprocessing needs finite"):
        ingest(tmp_path / "b.npz", tmp_path / "s.zarr", "b", preprocess="embedding", on_nonfinite="allow")
    h = ingest(tmp_path / "b.npz", tmp_path / "s.zarr", "b", on_nonfinite="allow")
    assert np.isnan(h.read_rows([7])[0, 3])


def test_truncated_npy(tmp_path):
    np.save(tmp_path / "e.npy", EMB)
    data = (tmp_path / "e.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"npy input .*t\.npy.*(truncated|corrupt)"):
        ingest(tmp_path / "t.npy", tmp_path / "s.zarr", "t")
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.parametrize("compressed", [False, True])
def test_truncated_npz(tmp_path, compressed):
    (np.savez_compressed if compressed else np.savez)(tmp_path / "e.npz", X=EMB)
    data = (tmp_path / "e.npz").read_bytes()
    (tmp_path / "t.npz").write_bytes(data[: int(len(data) * 0.6)])
    with pytest.raises(DataError, match=r"npz input .*t\.npz.*(truncated|corrupt)"):
        ingest(tmp_path / "t.npz", tmp_path / "s.zarr", "t")
    assert not (tmp_path / "s.zarr").exists()


def test_truncated_h5ad(tmp_path):
    _anndata(COUNTS).write_h5ad(tmp_path / "a.h5ad")
    data = (tmp_path / "a.h5ad").read_bytes()
    (tmp_path / "t.h5ad").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"h5ad input .*t\.h5ad.*(truncated|corrupt)"):
        ingest(tmp_path / "t.h5ad", tmp_path / "s.zarr", "t")
    assert not (tmp_path / "s.zarr").exists()


def test_corrupt_parquet(tmp_path):
    pd.DataFrame({"id": ACC, "emb": list(EMB)}).to_parquet(tmp_path / "e.parquet")
    data = (tmp_path / "e.parquet").read_bytes()
    (tmp_path / "t.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"parquet input .*t\.parquet.*(truncated|corrupt)"):
        ingest(tmp_path / "t.parquet", tmp_path / "s.zarr", "t", id_column="id")


def test_failed_ingest_into_existing_store_leaves_it_unchanged(tmp_path):
    np.save(tmp_path / "e.npy", EMB)
    ingest(tmp_path / "e.npy", tmp_path / "s.zarr", "good")
    bad = EMB.copy()
    bad[5, 0] = np.nan
    np.save(tmp_path / "b.npy", bad)
    with pytest.raises(DataError):
        ingest(tmp_path / "b.npy", tmp_path / "s.zarr", "bad")
    s = open_store(tmp_path / "s.zarr")
    assert s.matrix_names == ["good"]
    assert not (tmp_path / "s.zarr" / "matrices" / "bad").exists()
    assert not (tmp_path / "s.zarr" / ".staging").exists()


def test_missing_and_unknown_format(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        ingest(tmp_path / "nope.npy", tmp_path / "s.zarr", "x")
    (tmp_path / "x.bin").write_bytes(b"123")
    with pytest.raises(DataError, match="cannot tell the format"):
        ingest(tmp_path / "x.bin", tmp_path / "s.zarr", "x")


# -------------------------------------------------------------------- CLI

def test_cli_ingest_and_list(tmp_path, capsys):
    from lmi_distributed.cli.main import main

    pd.DataFrame({"accession": ACC, "emb": list(EMB)}).to_parquet(tmp_path / "e.parquet")
    rc = main(["ingest", str(tmp_path / "e.parquet"), str(tmp_path / "s.zarr"), "--name", "prot",
               "--id-column", "accession", "--vector-columns", "emb", "--preprocess", "embedding",
               "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert '"matrix": "prot"' in out and '"preprocessing": ["scale", "clip"]' in out
    h = open_store(tmp_path / "s.zarr").matrix("prot")
    ref = np.clip((EMB - EMB.mean(0)) / EMB.std(0, ddof=1), -10, 10)
    np.testing.assert_allclose(h.read_rows(np.arange(300)), ref, atol=1e-5)
    assert main(["ingest", "--list", str(tmp_path / "s.zarr")]) == 0
    assert "prot\t300 x 16" in capsys.readouterr().out
    rc = main(["ingest", str(tmp_path / "e.parquet"), str(tmp_path / "s.zarr"), "--name", "prot",
               "--id-column", "accession", "--quiet"])
    assert rc == 2
    assert "already exists" in capsys.readouterr().err


def test_cli_list_with_free_form_provenance(tmp_path, capsys):
    from lmi_distributed.cli.main import main
    from lmi_distributed.data import write_matrix

    write_matrix(tmp_path / "d.zarr", "X0", EMB[:10], provenance={"source": "synthetic"})
    assert main(["ingest", "--list", str(tmp_path / "d.zarr")]) == 0
    assert "X0\t10 x 16" in capsys.readouterr().out
