"""`lmi-distributed ingest`: put a file into a dataset store (optionally preprocessed).

Examples::

    lmi-distributed ingest proteome.parquet data/store.zarr --name prot \
        --id-column accession --vector-columns embedding --preprocess embedding
    lmi-distributed ingest experiment1.h5ad data/store.zarr --name cells \
        --preprocess expression --n-top-genes 1000
    lmi-distributed ingest --list data/store.zarr
"""
from __future__ import annotations

import argparse
import json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="ingest .npy/.npz/Zarr/.h5ad/AnnData-Zarr/Parquet/CSV into a dataset store",
        description="Ingest a matrix file into a Zarr v3 dataset store, streaming row blocks "
                    "(never the whole file in memory), with optional out-of-core preprocessing.",
    )
    p.add_argument("source", nargs="?", help="input file (.npy .npz .zarr .h5ad .parquet .csv .tsv)")
    p.add_argument("store", help="dataset store directory (created if missing)")
    p.add_argument("--name", help="matrix name in the store (default: input file stem)")
    p.add_argument("--list", action="store_true", help="list the matrices of STORE and exit (same as `ls STORE`)")
    p.add_argument("--format", help="input format (default: from the extension)")
    p.add_argument("--key", help="npz member / zarr array path / AnnData 'X' or layer name")
    p.add_argument("--id-column", help="table column holding row ids (e.g. UniProt accession)")
    p.add_argument("--vector-columns",
                   help="comma-separated numeric columns, or one list column (default: auto)")
    p.add_argument("--obs-columns", help="comma-separated table columns to keep as row metadata")
    p.add_argument("--preprocess", default="none", choices=["none", "expression", "embedding"],
                   help="preset: expression = normalize 1e4, log1p, top-n HVG (Seurat), scale, "
                        "clip 10; embedding = scale, clip 10")
    p.add_argument("--target-sum", type=float, help="override normalize_total target")
    p.add_argument("--n-top-genes", type=int, help="override number of HVGs (0: keep all)")
    p.add_argument("--no-log1p", action="store_true")
    p.add_argument("--no-scale", action="store_true")
    p.add_argument("--clip", type=float, help="override clip value (0: no clipping)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing matrix")
    p.add_argument("--allow-nonfinite", action="store_true",
                   help="store rows with NaN/inf instead of failing (no preprocessing only)")
    p.add_argument("--allow-duplicate-ids", action="store_true",
                   help="keep row ids that occur more than once (default: error)")
    p.add_argument("--block-mb", type=float, default=16.0, help="input MiB per block (memory)")
    p.add_argument("--workers", type=int, help="Dask threads (default: min(4, cores))")
    p.add_argument("--synchronous", action="store_true", help="Dask synchronous scheduler")
    p.add_argument("--compressor", default="lz4", choices=["lz4", "zstd", "none"])
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run)


def _csv(s):
    return None if s is None else [c.strip() for c in s.split(",") if c.strip()]


def run(args: argparse.Namespace) -> int:
    """Run `ingest`; every failure is an LMIError with a one-line message (no traceback)."""
    from lmi_distributed.errors import DataError, LMIError
    from lmi_distributed.data.validation import describe_exc

    try:
        return _run(args)
    except LMIError as exc:
        text = " ".join(str(exc).split())  # the CLI prints one `error:` line
        if text == str(exc):
            raise
        raise type(exc)(text) from exc
    except OSError as exc:  # e.g. the store's file system is read-only or full
        raise DataError(f"ingest into {args.store}: {describe_exc(exc)}") from exc


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lmi_distributed.errors import DataError

    if args.list:  # alias of `lmi-distributed ls STORE`
        from lmi_distributed.cli.ls import print_matrices

        return print_matrices(args.store if args.source is None else args.source)
    if not args.source:
        raise DataError("ingest: give SOURCE and STORE (or --list STORE)")
    from lmi_distributed.data.ingest import ingest
    from lmi_distributed.data.preprocess import PreprocessConfig

    over = {}
    if args.target_sum is not None:
        over["normalize_total"] = args.target_sum or None
    if args.n_top_genes is not None:
        over["n_top_genes"] = args.n_top_genes or None
    if args.no_log1p:
        over["log1p"] = False
    if args.no_scale:
        over["scale"] = False
    if args.clip is not None:
        over["clip"] = args.clip or None
    try:
        cfg = PreprocessConfig.preset(args.preprocess, **over)
    except ValueError as exc:
        raise DataError(f"ingest: invalid preprocessing options ({exc})") from None
    vcols = _csv(args.vector_columns)
    if vcols is not None and len(vcols) == 1:
        vcols = vcols[0]
    name = args.name or Path(args.source).name.split(".")[0]
    log = None if args.quiet else (lambda s: print(f"[ingest] {s}", flush=True))
    h = ingest(
        args.source, args.store, name, format=args.format, key=args.key,
        id_column=args.id_column, vector_columns=vcols, obs_columns=_csv(args.obs_columns),
        preprocess=cfg, overwrite=args.overwrite,
        on_nonfinite="allow" if args.allow_nonfinite else "error",
        on_duplicate_ids="allow" if args.allow_duplicate_ids else "error",
        block_bytes=int(args.block_mb * 2**20), compressor=args.compressor,
        scheduler="synchronous" if args.synchronous else "threads", num_workers=args.workers,
        log=log,
    )
    ing = h.provenance.get("ingest", {})
    summary = {"store": str(h.store_path), "matrix": h.name, "shape": list(h.shape),
               "chunk_rows": h.chunk_rows, "shard_rows": h.shard_rows,
               "preprocessing": [s["step"] for s in h.provenance.get("preprocessing", [])],
               "seconds": ing.get("seconds"), "input_MB_per_s": ing.get("input_MB_per_s")}
    print(json.dumps(summary))
    return 0
