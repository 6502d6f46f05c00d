"""`lmi-distributed ls STORE`: list the matrices of a dataset store (``ingest --list`` too).

Example::

    lmi-distributed ls data/store.zarr
    lmi-distributed ls data/store.zarr --json
"""
from __future__ import annotations

import argparse
import json


def matrix_rows(store_path: str) -> list[dict]:
    """One dict per complete matrix of the store: name, rows, features, uid, chunk_rows,
    preprocessing steps and provenance source (a path, or the free-form source text)."""
    from lmi_distributed.data import open_store

    store = open_store(store_path)
    out = []
    for name in store.matrix_names:
        m = store.matrix(name)
        prov = m.provenance
        steps = [s.get("step", "?") for s in prov.get("preprocessing", []) if isinstance(s, dict)]
        src = prov.get("source", "")
        src = src.get("path", "") if isinstance(src, dict) else str(src)
        out.append({"name": name, "rows": int(m.shape[0]), "features": int(m.shape[1]), "uid": m.uid,
                    "chunk_rows": int(m.chunk_rows), "steps": steps, "source": src})
    return out


def print_matrices(store_path: str, as_json: bool = False) -> int:
    """Print the store's matrices (tab-separated lines, or one JSON list); returns 0."""
    rows = matrix_rows(store_path)
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"(no matrices in {store_path})")
    for r in rows:
        print(f"{r['name']}\t{r['rows']} x {r['features']}\tuid={r['uid']}\tchunk_rows={r['chunk_rows']}\t"
              f"steps={','.join(r['steps']) or '-'}\t{r['source'] or '-'}")
    return 0


def _ls(args: argparse.Namespace) -> int:
    return print_matrices(args.store, args.json)


def register(subparsers) -> None:
    """Add the ``ls`` subcommand."""
    p = subparsers.add_parser(
        "ls", help="list the matrices of a dataset store (name, rows x features, uid, steps, source)",
        description="List the matrices of a dataset store: name, rows x features, uid, chunk rows, "
                    "preprocessing steps and the source they were ingested from.",
        epilog="example: lmi-distributed ls data/store.zarr --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("store", help="dataset store directory")
    p.add_argument("--json", action="store_true", help="print one JSON list")
    p.set_defaults(func=_ls)
