"""Ingest: input file -> (optional out-of-core preprocessing) -> a matrix in a store.

``ingest(source, store, name, ...)`` streams the input in row blocks (see :mod:`.sources`),
runs the preprocessing of :mod:`.preprocess` as Dask graphs on the threaded or synchronous
scheduler, and writes shard-aligned blocks into a staged matrix that is renamed into the store
only when complete (:class:`.store.MatrixWriter`). Peak memory is about
``num_workers * (a few) * block_bytes`` plus the row metadata, independent of the matrix size.
"""
from __future__ import annotations

import math
import os
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .preprocess import (PreprocessConfig, block_moments, combine_moments, normalize_log_block,
                         transform_block)
from .sources import Source, open_source
from .store import (DEFAULT_CHUNK_BYTES, DEFAULT_SHARD_BYTES, MatrixHandle, MatrixWriter,
                    _pow2_floor, _write_owner, clean_stale_staging)
from .validation import DataError, first_few

__all__ = ["ingest", "ingest_source", "resolve_preprocess"]

DEFAULT_BLOCK_BYTES = 16 * 2**20


def resolve_preprocess(preprocess: Any) -> PreprocessConfig:
    """None / "none" / "expression" / "embedding" / dict / PreprocessConfig -> PreprocessConfig."""
    if preprocess is None:
        return PreprocessConfig()
    if isinstance(preprocess, PreprocessConfig):
        return preprocess
    if isinstance(preprocess, str):
        return PreprocessConfig.preset(preprocess)
    if isinstance(preprocess, Mapping):
        d = dict(preprocess)
        preset = d.pop("preset", None)
        return PreprocessConfig.preset(preset, **d) if preset else PreprocessConfig(**d)
    raise DataError(f"preprocess must be a preset name, a dict or PreprocessConfig, got "
                    f"{type(preprocess).__name__}")


def _dask_config(scheduler: str, num_workers: int | None):
    import dask

    if scheduler not in ("threads", "synchronous", "sync", "single-threaded"):
        raise DataError(f"scheduler must be 'threads' or 'synchronous' (Dask-on-Ray is not "
                        f"supported with Zarr v3), got {scheduler!r}")
    cfg = {"scheduler": "threads" if scheduler == "threads" else "synchronous"}
    if scheduler == "threads":
        cfg["num_workers"] = num_workers or min(4, os.cpu_count() or 1)
    return dask.config.set(cfg)


def _source_dask(src: Source, in_rows: int):
    import dask.array as da

    return da.from_array(src, chunks=(in_rows, src.n_cols), name=f"lmi-src-{uuid.uuid4().hex}",
                         asarray=False, fancy=False, lock=False, meta=np.empty((0, 0), np.float32))


def _nonfinite_error(src: Source, bad: np.ndarray, what: str) -> DataError:
    labels = f"first rows: {first_few(bad)}"
    if src.ids is not None:
        labels += f" (ids {first_few(np.asarray(src.ids)[bad[:5]])})"
    return DataError(f"{what}: {bad.size} of {src.n_rows} rows contain NaN or inf; {labels}. "
                     "Fix or drop those rows, or pass on_nonfinite='allow' (no preprocessing) to "
                     "store them as they are.")


def _check_unique_ids(ids, what: str) -> None:
    """DataError naming the first row ids that occur more than once, and their rows."""
    import pandas as pd

    idx = pd.Index(np.asarray(ids).astype(str))
    if idx.is_unique:
        return
    dup = idx[idx.duplicated()].unique()
    rows = np.flatnonzero(idx.isin(dup[:1]))
    raise DataError(f"{what}: {len(dup)} row ids occur more than once, e.g. {first_few(dup)} "
                    f"({dup[0]!r} at rows {first_few(rows)}); ids must be unique to select or "
                    "align rows by id. Fix them, or pass on_duplicate_ids='allow' "
                    "(--allow-duplicate-ids) to keep them")


def ingest_source(
    src: Source,
    store: str | os.PathLike,
    name: str,
    *,
    preprocess: Any = None,
    overwrite: bool = False,
    on_nonfinite: str = "error",
    on_duplicate_ids: str = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int | None = None,
    compressor: str = "lz4",
    scheduler: str = "threads",
    num_workers: int | None = None,
    extra_provenance: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> MatrixHandle:
    """Ingest an opened :class:`Source` (see :func:`ingest`)."""
    import dask
    from dask import delayed

    cfg = resolve_preprocess(preprocess)
    if on_nonfinite not in ("error", "allow"):
        raise DataError(f"on_nonfinite must be 'error' or 'allow', got {on_nonfinite!r}")
    what = f"ingest of {src.format} input {src.path}" + (f" [{src.key}]" if src.key else "")
    n, d_in = src.n_rows, src.n_cols
    if n == 0:
        raise DataError(f"{what}: the input has no rows")
    if src.ids is not None and len(src.ids) != n:
        raise DataError(f"{what}: {len(src.ids)} row ids for {n} rows")
    if on_duplicate_ids not in ("error", "allow"):
        raise DataError(f"on_duplicate_ids must be 'error' or 'allow', got {on_duplicate_ids!r}")
    if src.ids is not None and on_duplicate_ids == "error":
        _check_unique_ids(src.ids, what)
    say = log or (lambda s: None)
    t0 = time.perf_counter()
    in_rows = max(1, min(n, _pow2_floor(block_bytes / (d_in * 4))))
    X = _source_dask(src, in_rows)
    starts = np.concatenate([[0], np.cumsum(X.chunks[0])[:-1]]).astype(np.int64)
    steps = cfg.steps()
    keep = None
    mean_out = std_out = None
    hvg_table = None
    stats_summary: dict = {}

    with _dask_config(scheduler, num_workers):
        if cfg.needs_stats:
            # ---- pass 1: per-block moments + non-finite rows
            def block_stats(b, start):
                bad = np.flatnonzero(~np.isfinite(b).all(axis=1)) + start
                if bad.size:
                    return bad, None, None
                y = normalize_log_block(b, cfg)
                mh = block_moments(np.expm1(y)) if cfg.n_top_genes else None
                ms = block_moments(y) if cfg.scale else None
                return bad, mh, ms

            blocks = X.to_delayed().ravel()
            tasks = [delayed(block_stats)(b, int(s)) for b, s in zip(blocks, starts)]
            say(f"pass 1/2: statistics over {len(tasks)} blocks of {in_rows} rows")
            res = dask.compute(*tasks)
            bad = np.concatenate([r[0] for r in res])
            if bad.size:
                err = _nonfinite_error(src, bad, what)
                raise DataError(str(err) + " (preprocessing needs finite input)") \
                    if on_nonfinite == "allow" else err
            if cfg.n_top_genes:
                from .hvg import seurat_hvg

                _, hm, hv = combine_moments([r[1] for r in res])
                hvg_table = seurat_hvg(hm, hv, cfg.n_top_genes, cfg.hvg_n_bins)
                keep = np.flatnonzero(hvg_table["highly_variable"].to_numpy())
                if keep.size == 0:
                    raise DataError(f"{what}: highly-variable-gene selection kept no genes")
                stats_summary["n_genes_in"] = int(d_in)
                stats_summary["n_genes_kept"] = int(keep.size)
                steps = [dict(s, n_selected=int(keep.size)) if s["step"] == "highly_variable_genes"
                         else s for s in steps]
            if cfg.scale:
                _, sm, sv = combine_moments([r[2] for r in res])
                sd = np.sqrt(sv)
                sd[~np.isfinite(sd) | (sd == 0)] = 1.0
                if keep is not None:
                    sm, sd = sm[keep], sd[keep]
                mean_out = sm.astype(np.float32)
                std_out = sd.astype(np.float32)
                stats_summary["n_constant_columns"] = int((sd == 1.0).sum())
        d_out = d_in if keep is None else int(keep.size)

        # ---- pass 2: transform + write shard-aligned blocks
        with MatrixWriter(store, name, n, d_out, overwrite=overwrite, chunk_bytes=chunk_bytes,
                          shard_bytes=shard_bytes or min(DEFAULT_SHARD_BYTES, block_bytes), block_bytes=block_bytes,
                          compressor=compressor) as w:
            lay = w.layout
            if cfg.is_identity:
                Y = X
            else:
                Y = X.map_blocks(transform_block, cfg, keep, mean_out, std_out,
                                 chunks=(X.chunks[0], (d_out,)), dtype=np.float32,
                                 meta=np.empty((0, 0), np.float32))
            if Y.chunks[0][0] != lay.block_rows or len(Y.chunks[0]) != math.ceil(n / lay.block_rows):
                Y = Y.rechunk({0: lay.block_rows, 1: d_out})
            arr = w.array
            check = cfg.is_identity and on_nonfinite == "error"

            def write(b, start):
                b = np.asarray(b, dtype=np.float32)
                arr[start:start + b.shape[0]] = b
                if check:
                    return np.flatnonzero(~np.isfinite(b).all(axis=1)) + start
                return np.zeros(0, np.int64)

            ostarts = np.concatenate([[0], np.cumsum(Y.chunks[0])[:-1]]).astype(np.int64)
            tasks = [delayed(write)(b, int(s)) for b, s in zip(Y.to_delayed().ravel(), ostarts)]
            say(f"pass {'2/2' if cfg.needs_stats else '1/1'}: writing {len(tasks)} blocks of "
                f"{lay.block_rows} rows (chunks {lay.chunk_rows} rows, shards {lay.shard_rows})")
            res = dask.compute(*tasks)
            bad = np.concatenate(res) if res else np.zeros(0, np.int64)
            if bad.size:
                raise _nonfinite_error(src, bad, what)

            var = _output_var(src, keep, hvg_table, mean_out, std_out, d_out)
            seconds = time.perf_counter() - t0
            mb = n * d_in * 4 / 2**20
            prov = {
                "source": src.describe(),
                "preprocessing": steps,
                "preprocessing_config": cfg.model_dump(),
                "statistics": stats_summary,
                "ingest": {
                    "rows": n, "features_in": d_in, "features_out": d_out,
                    "seconds": round(seconds, 3),
                    "input_MB_per_s": round(mb / seconds, 2) if seconds > 0 else None,
                    "block_rows_in": in_rows, "block_rows_out": lay.block_rows,
                    "scheduler": scheduler, "num_workers": num_workers,
                    "on_nonfinite": on_nonfinite, "on_duplicate_ids": on_duplicate_ids,
                },
            }
            if getattr(src, "converted_from", None):
                prov["source"]["converted_from"] = src.converted_from
            prov.update(dict(extra_provenance or {}))
            extra = {"hvg.parquet": hvg_table.assign(
                feature=_feature_names(src, d_in))} if hvg_table is not None else None
            return w.finish(ids=src.ids, obs=src.obs, var=var, provenance=prov,
                            extra_files=extra)


def _feature_names(src: Source, d: int) -> np.ndarray:
    if src.var is not None and len(src.var) == d:
        return src.var.index.astype(str).to_numpy()
    return np.arange(d).astype(str)


def _output_var(src: Source, keep, hvg_table, mean_out, std_out, d_out: int):
    import pandas as pd

    if src.var is None and hvg_table is None and mean_out is None:
        return None
    names = _feature_names(src, src.n_cols)
    if src.var is not None and len(src.var) == src.n_cols:
        var = src.var.copy()
        var.index = pd.Index(names, name="feature")
    else:
        var = pd.DataFrame(index=pd.Index(names, name="feature"))
    if hvg_table is not None:
        for c in ("means", "dispersions", "dispersions_norm"):
            var[f"hvg_{c}"] = hvg_table[c].to_numpy()
    if keep is not None:
        var = var.iloc[keep]
    if mean_out is not None:
        var["scale_mean"] = mean_out
        var["scale_std"] = std_out
    var = var.copy()
    var.insert(0, "source_column", keep if keep is not None else np.arange(d_out))
    return var


def ingest(
    source: str | os.PathLike,
    store: str | os.PathLike,
    name: str,
    *,
    format: str | None = None,
    key: str | None = None,
    id_column: str | None = None,
    vector_columns: Sequence[str] | str | None = None,
    obs_columns: Sequence[str] | None = None,
    preprocess: Any = None,
    overwrite: bool = False,
    on_nonfinite: str = "error",
    on_duplicate_ids: str = "error",
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    shard_bytes: int | None = None,
    compressor: str = "lz4",
    scheduler: str = "threads",
    num_workers: int | None = None,
    spool_dir: str | os.PathLike | None = None,
    log: Callable[[str], None] | None = None,
) -> MatrixHandle:
    """Ingest a file into matrix ``name`` of the store at ``store`` (created if missing).

    source: .npy, .npz (``key`` = member), Zarr array or group (``key`` = array path), AnnData
    .h5ad or .zarr (``key`` = "X" or a layer name), Parquet/CSV/TSV tables (``id_column``,
    ``vector_columns`` = numeric columns or one list column, ``obs_columns`` = metadata to keep).
    preprocess: None/"none", "expression", "embedding", a dict of :class:`PreprocessConfig`
    fields (optionally with "preset"), or a PreprocessConfig.
    on_nonfinite: "error" (default; DataError naming the rows) or "allow" (store as is;
    read_pair reports them later; not allowed with preprocessing).
    on_duplicate_ids: "error" (default; DataError naming the repeated ids) or "allow".
    block_bytes: input bytes per Dask block (memory ~ num_workers * a few * block_bytes).
    shard_bytes: shard size (default: min(16 MiB, block_bytes); a write task writes one shard).
    Returns the new matrix's handle. On any failure nothing is left in the store.
    """
    clean_stale_staging(Path(store).resolve())  # debris of killed ingests (see store.py)
    spool = Path(spool_dir) if spool_dir is not None else \
        Path(store).resolve().parent / f".{Path(store).name}.spool-{uuid.uuid4().hex[:8]}"
    src = None
    try:
        if spool_dir is None:
            spool.mkdir(parents=True, exist_ok=True)
            _write_owner(spool)
        src = open_source(source, format=format, key=key, id_column=id_column,
                          vector_columns=vector_columns, obs_columns=obs_columns, spool_dir=spool)
        return ingest_source(src, store, name, preprocess=preprocess, overwrite=overwrite,
                             on_nonfinite=on_nonfinite, on_duplicate_ids=on_duplicate_ids,
                             block_bytes=block_bytes,
                             chunk_bytes=chunk_bytes, shard_bytes=shard_bytes,
                             compressor=compressor, scheduler=scheduler,
                             num_workers=num_workers, log=log)
    finally:
        if src is not None:
            src.close()
        if spool_dir is None:
            import shutil

            shutil.rmtree(spool, ignore_errors=True)
