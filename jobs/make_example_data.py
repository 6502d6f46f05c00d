"""Build the synthetic data behind the example study configs (``configs/example_*.yaml``).

    python jobs/make_example_data.py                 # data/ under the repo root, example sizes
    python jobs/make_example_data.py --small --out /tmp/ex   # tiny stores (the tests use these)

Writes, matching the configs exactly (matrix names, obs and id columns, column blocks):

``cells.zarr`` (configs/example_explicit_pairs.yaml): matrices ``rna`` (2500 features),
  ``atac`` (1000) and ``adt`` (40) over the same cell ids ``cell00000..``, each matrix in its own
  random row order (so only ``pairing: {rule: aligned, "on": ids}`` pairs the right rows);
  obs ``batch`` in {'b1', 'b2'} (about 60 % 'b1'; 'b2' carries a batch offset in ``adt``).
``lineage.zarr`` (configs/example_grouped.yaml): matrix ``rna`` (1000 features), obs ``day``
  in {2, 4, 6} (int) and ``clone`` (barcode string; a few cells without a barcode). Most clones
  have cells on every day (1-3 cells per clone and day).
``proteins.zarr`` + ``interactions.csv`` (configs/example_x_by_y_join.yaml): proteins with
  UniProt-like accession ids; ``esm`` (1280) and ``prott5`` (1024) ingested from Parquet tables
  (id column ``accession``, list column ``embedding``, ``embedding`` preprocessing: unit
  variance, clip +-10), ``go`` (300 binary GO-term annotations, about 85 % of the proteins)
  ingested from a CSV table. ``interactions.csv`` (columns ``protein_a``, ``protein_b``) lists
  one row per interacting pair, plus a few rows whose ids are in no table and a few duplicate
  rows (the config's ``missing: drop`` and the join's ``drop_duplicates`` remove them).

Generative model and the truth (``<store>_truth.json``, bits, per config pair; pass it with
``--set data.truth=data/cells_truth.json`` to get estimate-vs-truth in the report). Every
matrix is ``x = s * Q @ (z + e) + eps`` with ``z`` a k=4 dimensional latent shared by the paired
variables, ``e ~ N(0, tau^2 I)`` the view's own latent noise, ``Q`` (d x k) dense random
orthonormal columns and small per-feature noise ``eps`` (each feature gets 40 % of its variance
from the latent, so an autoencoder sees the structure), so the truth is exact (low-rank Gaussian
formula, :func:`pair_truth`):

* explicit: one latent per cell shared by all three modalities; noise-to-signal tau^2 =
  0.25 (rna), 1.0 (atac), 0.5 (adt). Truth: rna~atac ~1.46 bits, rna~protein ~1.79 bits,
  rna_hvg~atac ~1.46 bits (the first 2000 of 2500 genes already pin the rna latent down).
* grouped: one latent state per clone and day, a Markov chain over days (corr 0.9 per step), so
  sister cells share information across days; tau^2 = 0.25. Truth: day2~day4 and day4~day6
  ~2.07 bits, day2~day6 ~1.55 bits.
* join: interacting proteins come in pairs whose latents correlate (r = 0.85 per dim); esm
  (tau^2 0.25, the signal spread over both 640-column halves, so each half sees about half of
  it), prott5 (tau^2 0.4). Truth: esm_a~prott5 and esm_b~prott5 ~1.5 bits; go_terms is a
  thresholded (binary, ~8 % ones) view, for which the number written (~1.35 bits, the Gaussian
  channel before thresholding) is an upper bound (data processing inequality): expect less.

Nothing here is biology; it is a test bed with known answers. Uses only the public data API
(``lmi_distributed.data.write_matrix`` and ``ingest``).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

K = 4  # latent dimensions shared between paired variables

SIZES = {
    # example sizes: seconds to build; a full paper-default run is still long on a CPU
    "full": {"cells": 2000, "clones": 800, "proteins": 3000},
    "small": {"cells": 64, "clones": 40, "proteins": 120},
}
DIMS = {"rna": 2500, "atac": 1000, "adt": 40, "lineage_rna": 1000, "esm": 1280, "prott5": 1024, "go": 300}
TAU2 = {"rna": 0.25, "atac": 1.0, "adt": 0.5, "lineage_rna": 0.25, "esm": 0.25, "prott5": 0.4, "go": 0.5}
SCALE = 3.0          # s: signal scale; the noise sd is s * tau
DAY_CORR = 0.9       # clone state correlation between consecutive days
PARTNER_CORR = 0.85  # latent correlation of interacting proteins
SIGNAL_FRAC = 0.4   # share of each feature's variance that comes from the (noisy) latent


# ----------------------------------------------------------------------------- truth
def _info(S: np.ndarray, Ms: list[np.ndarray]) -> float:
    """I(views; z) in bits for z ~ N(0, S) and views x_i = A_i z + noise, M_i = A_i^T A_i / sigma_i^2."""
    m = S.shape[0]
    return 0.5 * float(np.linalg.slogdet(np.eye(m) + S @ sum(Ms))[1]) / np.log(2.0)


def gaussian_mi(S: np.ndarray, Ma: np.ndarray, Mb: np.ndarray) -> float:
    """MI (bits) of two conditionally independent linear-Gaussian views of z ~ N(0, S):
    I(a; b) = I(a; z) + I(b; z) - I(a, b; z)."""
    return _info(S, [Ma]) + _info(S, [Mb]) - _info(S, [Ma, Mb])


def _loading(rng, d: int, k: int = K) -> np.ndarray:
    q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return q  # (d, k), dense orthonormal columns


def _feature_noise(d: int, tau2: float) -> float:
    """Per-feature noise variance giving each feature a SIGNAL_FRAC share of latent variance."""
    return SCALE ** 2 * (1 + tau2) * K / d * (1 - SIGNAL_FRAC) / SIGNAL_FRAC


def _view(rng, z: np.ndarray, q: np.ndarray, tau2: float) -> np.ndarray:
    """x = s Q (z + e) + eps: e ~ N(0, tau2 I_k) view-specific latent noise, eps per feature."""
    n, d = z.shape[0], q.shape[0]
    lat = z + np.sqrt(tau2) * rng.standard_normal((n, K))
    eps = np.sqrt(_feature_noise(d, tau2)) * rng.standard_normal((n, d))
    return (SCALE * lat @ q.T + eps).astype(np.float32)


def pair_truth(S_shared: np.ndarray, a: tuple, b: tuple) -> float:
    """Exact MI (bits) between two views of a shared Gaussian latent (covariance S_shared).

    a, b: ``(q_rows, block, tau2, d)``: the loading rows the variable reads (a column block of the
    matrix), the latent block (start) it views, its latent noise and its matrix's d (feature noise).
    The latent is extended by each view's own noise e, so every view is x = A L + white noise.
    """
    m = S_shared.shape[0]
    L = m + 2 * K
    S = np.zeros((L, L))
    S[:m, :m] = S_shared
    Ms = []
    for j, (q, blk, tau2, d) in enumerate((a, b)):
        S[m + j * K:m + (j + 1) * K, m + j * K:m + (j + 1) * K] = tau2 * np.eye(K)
        A = np.zeros((q.shape[0], L))
        A[:, blk:blk + K] = SCALE * q
        A[:, m + j * K:m + (j + 1) * K] = SCALE * q
        Ms.append(A.T @ A / _feature_noise(d, tau2))
    return gaussian_mi(S, Ms[0], Ms[1])


def _write_truth(path: Path, pairs: dict[str, float], note: str) -> None:
    path.write_text(json.dumps({"units": "bits", "note": note,
                                "pairs": {k: round(v, 4) for k, v in pairs.items()}}, indent=2))


# ---------------------------------------------------------------------- staging
class _Staged:
    """Build a store under a temporary sibling name and move it into place at the end."""

    def __init__(self, final: Path):
        self.final = final
        self.tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"

    def __enter__(self) -> Path:
        return self.tmp

    def __exit__(self, exc_type, *_):
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.final.exists():
            shutil.rmtree(self.final)
        os.replace(self.tmp, self.final)
        return False


# ------------------------------------------------------------------------ explicit
def build_cells(out: Path, n: int, seed: int = 0) -> dict:
    """cells.zarr: rna / atac / adt over the same cells, rows in different orders."""
    from lmi_distributed.data import write_matrix

    rng = np.random.default_rng(seed)
    ids = np.array([f"cell{i:05d}" for i in range(n)])
    batch = np.where(rng.random(n) < 0.6, "b1", "b2")
    z = rng.standard_normal((n, K))
    q = {m: _loading(rng, DIMS[m]) for m in ("rna", "atac", "adt")}
    data = {m: _view(rng, z, q[m], TAU2[m]) for m in q}
    data["adt"] += np.where(batch == "b2", 1.5, 0.0)[:, None].astype(np.float32)  # batch effect
    with _Staged(out / "cells.zarr") as store:
        for m, x in data.items():
            order = rng.permutation(n)  # each matrix in its own row order
            obs = pd.DataFrame({"batch": pd.Categorical(batch[order]),
                                "n_counts": rng.integers(500, 5000, n)})
            write_matrix(str(store), m, x[order], ids=ids[order], obs=obs,
                         provenance={"source": "jobs/make_example_data.py", "model": "x = s Q z + eps",
                                     "k": K, "tau2": TAU2[m], "seed": seed})
    S = np.eye(K)
    v = {m: (q[m], 0, TAU2[m], DIMS[m]) for m in q}
    v["rna_hvg"] = (q["rna"][:2000], 0, TAU2["rna"], DIMS["rna"])
    truth = {"rna~atac": pair_truth(S, v["rna"], v["atac"]),
             "rna~protein": pair_truth(S, v["rna"], v["adt"]),
             "rna_hvg~atac": pair_truth(S, v["rna_hvg"], v["atac"])}
    _write_truth(out / "cells_truth.json", truth, "exact (linear Gaussian, k=4 shared cell latent)")
    return {"n_cells": n, "n_b1": int((batch == "b1").sum()), "truth": truth}


# ------------------------------------------------------------------------- grouped
def build_lineage(out: Path, n_clones: int, seed: int = 1) -> dict:
    """lineage.zarr: cells of clones on days 2/4/6; one clone state per (clone, day), a Markov chain."""
    from lmi_distributed.data import write_matrix

    rng = np.random.default_rng(seed)
    days = (2, 4, 6)
    barcodes = np.array(["".join(rng.choice(list("ACGT"), 12)) + f"-{c}" for c in range(n_clones)])
    c = [rng.standard_normal((n_clones, K))]
    for _ in days[1:]:
        c.append(DAY_CORR * c[-1] + np.sqrt(1 - DAY_CORR ** 2) * rng.standard_normal((n_clones, K)))
    q = {d: _loading(rng, DIMS["lineage_rna"]) for d in days}  # day-specific expression programs
    blocks, obs = [], []
    for di, d in enumerate(days):
        present = rng.random(n_clones) < 0.9          # most clones are sampled on every day
        counts = np.where(present, rng.integers(1, 4, n_clones), 0)
        clone_idx = np.repeat(np.arange(n_clones), counts)
        blocks.append(_view(rng, c[di][clone_idx], q[d], TAU2["lineage_rna"]))
        bc = barcodes[clone_idx].astype(object)
        bc[rng.random(bc.size) < 0.03] = None            # a few cells lost their barcode
        obs.append(pd.DataFrame({"day": np.full(clone_idx.size, d, dtype=np.int64), "clone": bc}))
    X = np.concatenate(blocks)
    ob = pd.concat(obs, ignore_index=True)
    order = rng.permutation(len(ob))
    X, ob = X[order], ob.iloc[order].reset_index(drop=True)
    ids = [f"lc{i:06d}" for i in range(len(ob))]
    with _Staged(out / "lineage.zarr") as store:
        write_matrix(str(store), "rna", X, ids=ids, obs=ob,
                     provenance={"source": "jobs/make_example_data.py", "model": "clone-state Markov chain",
                                 "k": K, "tau2": TAU2["lineage_rna"], "day_corr": DAY_CORR, "seed": seed})
    S = np.kron(np.array([[DAY_CORR ** abs(i - j) for j in range(3)] for i in range(3)]), np.eye(K))
    v = {d: (q[d], i * K, TAU2["lineage_rna"], DIMS["lineage_rna"]) for i, d in enumerate(days)}
    truth = {f"day{a}~day{b}": pair_truth(S, v[a], v[b]) for i, a in enumerate(days) for b in days[i + 1:]}
    _write_truth(out / "lineage_truth.json", truth,
                 "exact for one random cell per shared clone (linear Gaussian clone states)")
    return {"n_cells": len(ob), "truth": truth}


# ---------------------------------------------------------------------------- join
def _accessions(rng, n: int) -> np.ndarray:
    out, seen = [], set()
    while len(out) < n:
        a = rng.choice(list("OPQ")) + str(rng.integers(0, 10)) + "".join(
            rng.choice(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), 3)) + str(rng.integers(0, 10))
        if a not in seen:
            seen.add(a)
            out.append(a)
    return np.array(out)


def build_proteins(out: Path, n_proteins: int, seed: int = 2) -> dict:
    """proteins.zarr (esm, prott5 from Parquet; go from CSV) and interactions.csv."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmi_distributed.data import ingest

    rng = np.random.default_rng(seed)
    acc = _accessions(rng, n_proteins + 40)
    acc, ghosts = acc[:n_proteins], acc[n_proteins:]          # ghosts: ids in no table
    n_pairs = int(0.4 * n_proteins)                           # 80 % of proteins in a pair, rest alone
    w = rng.standard_normal((n_proteins, K))
    a_idx, b_idx = np.arange(n_pairs), n_pairs + np.arange(n_pairs)
    w[b_idx] = PARTNER_CORR * w[a_idx] + np.sqrt(1 - PARTNER_CORR ** 2) * w[b_idx]
    q = {m: _loading(rng, DIMS[m]) for m in ("esm", "prott5", "go")}
    esm = _view(rng, w, q["esm"], TAU2["esm"]) + 0.2          # raw embedding offsets; ingest scales
    prott5 = _view(rng, w, q["prott5"], TAU2["prott5"])
    go_latent = _view(rng, w, q["go"], TAU2["go"])
    go_sd = np.sqrt(SCALE ** 2 * (1 + TAU2["go"]) * K / DIMS["go"] / SIGNAL_FRAC)
    go = (go_latent > 1.4 * go_sd).astype(np.float32)        # sparse binary annotations (~8 %)
    go_keep = rng.random(n_proteins) < 0.85                   # not every protein has GO terms

    spool = out / f".tmp-{uuid.uuid4().hex[:8]}-tables"
    spool.mkdir(parents=True)
    length = rng.integers(50, 2000, n_proteins)
    try:
        with _Staged(out / "proteins.zarr") as store:
            for name, emb in (("esm", esm), ("prott5", prott5)):
                order = rng.permutation(n_proteins)
                t = pa.table({"accession": acc[order],
                              "embedding": pa.FixedSizeListArray.from_arrays(
                                  pa.array(emb[order].ravel()), emb.shape[1]),
                              "length": length[order]})
                pq.write_table(t, spool / f"{name}.parquet")
                ingest(spool / f"{name}.parquet", str(store), name, id_column="accession",
                       vector_columns="embedding", preprocess="embedding", num_workers=1)
            keep = np.flatnonzero(go_keep)
            keep = keep[rng.permutation(keep.size)]
            gdf = pd.DataFrame(go[keep].astype(np.int8), columns=[f"GO_{j:07d}" for j in range(DIMS["go"])])
            gdf.insert(0, "accession", acc[keep])
            gdf.to_csv(spool / "go.csv", index=False)
            ingest(spool / "go.csv", str(store), "go", id_column="accession", preprocess="none",
                   num_workers=1)
    finally:
        shutil.rmtree(spool, ignore_errors=True)

    # interactions: one row per interacting pair (the a-side protein in protein_a),
    # plus rows naming unknown accessions and a few duplicates
    rows = [(acc[i], acc[j]) for i, j in zip(a_idx, b_idx)]
    n_bad = max(3, n_pairs // 20)
    rows += [(ghosts[i % len(ghosts)], acc[b_idx[i]]) for i in range(n_bad)]
    rows += [(acc[a_idx[i]], ghosts[-1 - i % len(ghosts)]) for i in range(n_bad)]
    rows += [rows[i] for i in range(3)]
    rows = [rows[i] for i in rng.permutation(len(rows))]
    pd.DataFrame(rows, columns=["protein_a", "protein_b"]).to_csv(out / "interactions.csv", index=False)

    S = np.block([[np.eye(K), PARTNER_CORR * np.eye(K)], [PARTNER_CORR * np.eye(K), np.eye(K)]])
    va = {"esm_a": (q["esm"][:640], 0, TAU2["esm"], DIMS["esm"]),
          "esm_b": (q["esm"][640:], 0, TAU2["esm"], DIMS["esm"])}
    vb = {"prott5": (q["prott5"], K, TAU2["prott5"], DIMS["prott5"]),
          "go_terms": (q["go"], K, TAU2["go"], DIMS["go"])}
    truth = {f"{x}~{y}": pair_truth(S, va[x], vb[y]) for x in va for y in vb}
    _write_truth(out / "proteins_truth.json", truth,
                 "exact for esm~prott5 (linear Gaussian); go_terms: upper bound (binary view of a "
                 "Gaussian channel)")
    return {"n_proteins": n_proteins, "n_pairs": n_pairs, "truth": truth}


# ---------------------------------------------------------------------------- main
def build_all(out: str | os.PathLike, small: bool = False, only: list[str] | None = None,
              log=print) -> dict:
    out = Path(out).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    size = SIZES["small" if small else "full"]
    builders = {"explicit": lambda: build_cells(out, size["cells"]),
                "grouped": lambda: build_lineage(out, size["clones"]),
                "join": lambda: build_proteins(out, size["proteins"])}
    info = {}
    for key in only or list(builders):
        info[key] = builders[key]()
        log(f"{key}: {json.dumps({k: v for k, v in info[key].items() if k != 'truth'})}; truth (bits): "
            + ", ".join(f"{p} {b:.2f}" for p, b in info[key]["truth"].items()))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(REPO / "data"), help="output folder (default: data/ in the repo root)")
    ap.add_argument("--small", action="store_true", help="tiny row counts (feature dims kept), for tests")
    ap.add_argument("--only", action="append", choices=["explicit", "grouped", "join"],
                    help="build only this example (repeatable)")
    args = ap.parse_args(argv)
    build_all(args.out, small=args.small, only=args.only)
    print(f"written to {Path(args.out).resolve()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
