"""Benchmark the data layer: streaming ingest throughput and random-row gathers on a big store.

Writes a synthetic float32 embedding matrix (default 500k x 1024 = 2.05 GB) as .npy, ingests
it by streaming (no preprocessing, then with the `embedding` preprocessing: unit variance +
clip, two passes), then times random-row gathers (batches of 100 / 1000 / 10000 rows, sorted
vs unsorted, cold vs warm chunk cache). Prints a table and saves JSON to
jobs/results/benchmark_data.json. Big files go to bench_data/ and are removed unless --keep.

"cold" = this process's chunk cache emptied; the OS page cache is whatever the machine has
(the store was just written, so mostly warm). Shared-CPU machines give noisy numbers.

    python jobs/benchmark_data.py                 # 500k x 1024, 2 GB
    python jobs/benchmark_data.py --rows 50000    # quick
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def write_npy(path: Path, n: int, d: int, seed: int = 0) -> float:
    rng = np.random.default_rng(seed)
    scales = rng.uniform(0.5, 5, size=d).astype(np.float32)
    t0 = time.perf_counter()
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False,
                                                 "shape": (n, d)})
        for s in range(0, n, 20_000):
            k = min(20_000, n - s)
            f.write((rng.standard_normal((k, d), dtype=np.float32) * scales).tobytes())
    return time.perf_counter() - t0


def dir_bytes(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def time_gather(m, rows: np.ndarray, repeats: int, cold: bool) -> dict:
    from lmi_distributed.data import clear_cache

    lat = []
    if not cold:
        m.read_rows(rows)  # fill the cache
    for _ in range(repeats):
        if cold:
            clear_cache()
        t0 = time.perf_counter()
        out = m.read_rows(rows)
        lat.append(time.perf_counter() - t0)
    assert out.shape == (rows.size, m.n_features)
    med = statistics.median(lat)
    return {"latency_s_median": med, "latency_s_min": min(lat), "rows_per_s": rows.size / med,
            "MB_per_s_delivered": rows.size * m.n_features * 4 / 2**20 / med}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=500_000)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--dir", default=str(REPO / "bench_data"))
    ap.add_argument("--workers", type=int, default=None, help="Dask threads for ingest")
    ap.add_argument("--block-mb", type=float, default=16)
    ap.add_argument("--cache-mb", type=float, default=1024, help="chunk cache for the gathers")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-preprocess", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the .npy and the store")
    ap.add_argument("--out", default=str(REPO / "jobs" / "results" / "benchmark_data.json"))
    args = ap.parse_args(argv)

    from lmi_distributed.data import open_store, set_cache_bytes
    from lmi_distributed.data.ingest import ingest

    work = Path(args.dir) / f"bench-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    npy, store = work / "emb.npy", work / "store.zarr"
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                             "platform": platform.platform(), "note": "CPU shared with other jobs"},
                 "matrix": {"rows": args.rows, "cols": args.cols}}
    try:
        t_write = write_npy(npy, args.rows, args.cols)
        size_mb = npy.stat().st_size / 2**20
        res["matrix"].update({"npy_MB": size_mb, "npy_write_s": t_write})
        print(f"wrote {npy} ({size_mb:.0f} MB) in {t_write:.1f} s", flush=True)

        ingests = []
        for name, pp in (("raw", None), ("embedding", "embedding")):
            if pp and args.skip_preprocess:
                continue
            t0 = time.perf_counter()
            h = ingest(npy, store, name, preprocess=pp, block_bytes=int(args.block_mb * 2**20),
                       num_workers=args.workers)
            dt = time.perf_counter() - t0
            stored = dir_bytes(h.path) / 2**20
            row = {"matrix": name, "preprocess": pp or "none", "passes": 2 if pp else 1,
                   "seconds": dt, "input_MB_per_s": size_mb / dt,
                   "stored_MB": stored, "compression_ratio": size_mb / stored,
                   "chunk_rows": h.chunk_rows, "shard_rows": h.shard_rows}
            ingests.append(row)
            print(f"ingest {name}: {dt:.1f} s, {size_mb / dt:.0f} MB/s in, stored {stored:.0f} MB",
                  flush=True)
        res["ingest"] = ingests

        set_cache_bytes(int(args.cache_mb * 2**20))
        m = open_store(store).matrix("raw")
        rng = np.random.default_rng(1)
        gathers = []
        for batch in (100, 1000, 10_000):
            rows = rng.choice(args.rows, size=min(batch, args.rows), replace=False)
            for order in ("unsorted", "sorted"):
                r = np.sort(rows) if order == "sorted" else rows
                for cache in ("cold", "warm"):
                    g = time_gather(m, r, args.repeats, cold=cache == "cold")
                    g.update({"batch": int(r.size), "order": order, "cache": cache})
                    gathers.append(g)
                    print(f"gather {r.size:>6} {order:>8} {cache}: {g['latency_s_median'] * 1e3:9.1f} ms "
                          f"{g['rows_per_s']:>10.0f} rows/s", flush=True)
        # contiguous block for reference
        rows = np.arange(10_000) + args.rows // 3
        g = time_gather(m, rows, args.repeats, cold=True)
        g.update({"batch": 10_000, "order": "contiguous", "cache": "cold"})
        gathers.append(g)
        res["gather"] = gathers
        res["gather_settings"] = {"cache_MB": args.cache_mb, "chunk_rows": m.chunk_rows,
                                  "repeats": args.repeats,
                                  "cold": "chunk cache emptied; OS page cache not dropped"}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2))
    print()
    print(f"| matrix | {args.rows} x {args.cols} float32 ({res['matrix']['npy_MB']:.0f} MB) |")
    print("| ingest | passes | s | input MB/s | stored MB | ratio |")
    print("|---|---|---|---|---|---|")
    for r in res["ingest"]:
        print(f"| {r['preprocess']} | {r['passes']} | {r['seconds']:.1f} | {r['input_MB_per_s']:.0f} | "
              f"{r['stored_MB']:.0f} | {r['compression_ratio']:.2f} |")
    print()
    print("| gather rows | order | chunk cache | median latency (ms) | rows/s |")
    print("|---|---|---|---|---|")
    for g in res["gather"]:
        print(f"| {g['batch']} | {g['order']} | {g['cache']} | {g['latency_s_median'] * 1e3:.1f} | "
              f"{g['rows_per_s']:.0f} |")
    print(f"\nsaved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
