"""Hand-written readers vs the maintained library that could replace each of them.

Four pieces of the data layer re-implement something a library offers. For each, this script
times our code against the library alternative on realistic sizes and checks the property the
hand-written code exists for (see docs/benchmarks.md, "Hand-written readers vs libraries"):

1. ``.npy`` rows (``sources.base.PreadArray``, ``os.preadv``) vs ``np.load(mmap_mode="r")``:
   the ingest pattern (all rows in 4096-row blocks), 2000 random single-row reads, and the
   file-backed resident memory (RssFile, /proc/self/status) each leaves in the process.
2. ``.npz`` stored member (``sources.npz``: data offset from the ZIP local header, then pread)
   vs ``zipfile.ZipFile.open`` + seek/read, and vs ``np.load(npz)[key]`` (reads it whole).
3. Zarr v3 chunk reads (``data.chunkio.ChunkReader``) vs zarr: a gather of 2000 random rows
   through ``MatrixHandle.read_rows`` with and without the ChunkReader, and zarr's own
   ``Array.oindex`` gather; chunk cache emptied before every repeat.
4. obs filters (``data.query.evaluate_filter``) vs ``DataFrame.query`` on 1M rows, plus what
   each does with hostile or ill-posed expressions (code injection, huge literals, x / 0).

Matrices are 50,000 x 1024 float32 (205 MB) by default; files go to a temporary folder under
``--workdir`` (default: jobs/results/bench_readers_tmp) and are removed at the end. The OS page
cache is warm (files were just written), so these are CPU/syscall costs, not disk costs.
Prints a table and saves JSON to jobs/results/benchmark_readers.json. About 1-3 minutes.

    OMP_NUM_THREADS=1 PYTHONPATH=. python jobs/benchmark_readers.py
    OMP_NUM_THREADS=1 PYTHONPATH=. python jobs/benchmark_readers.py --rows 10000   # quick
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def rss_file_kib() -> int:
    """File-backed resident memory of this process (RssFile, KiB; Linux only, else -1)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def best(fn, repeats: int) -> float:
    """Median wall time (s) of ``repeats`` calls of ``fn``."""
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def row(table, reader, case, ours_s, lib_s, lib_name, note=""):
    table.append({"reader": reader, "case": case, "ours_s": ours_s, "library": lib_name,
                  "library_s": lib_s, "library_over_ours": (lib_s / ours_s) if ours_s else None,
                  "note": note})


# ----------------------------------------------------------------------------- 1. npy


def bench_npy(tmp: Path, X: np.ndarray, rand: np.ndarray, repeats: int, table, extra):
    from lmi_distributed.data.sources.base import ArraySource, _npy_pread

    p = tmp / "m.npy"
    np.save(p, X)
    n = X.shape[0]
    blocks = [(a, min(n, a + 4096)) for a in range(0, n, 4096)]

    def stream(src):  # the ingest pattern: Source.read of consecutive blocks, every byte used
        return sum(float(src.read(a, b).sum()) for a, b in blocks)

    pa = _npy_pread(p)
    mm = np.load(p, mmap_mode="r")
    ours, lib = ArraySource(pa, p, "npy"), ArraySource(mm, p, "npy")
    t_ours = best(lambda: stream(ours), repeats)
    t_lib = best(lambda: stream(lib), repeats)
    row(table, "npy PreadArray", f"stream {n} rows in 4096-row blocks (Source.read + sum)",
        t_ours, t_lib, "np.load(mmap_mode='r')")
    t_ours = best(lambda: [ours.read(int(r), int(r) + 1) for r in rand], repeats)
    t_lib = best(lambda: [lib.read(int(r), int(r) + 1) for r in rand], repeats)
    row(table, "npy PreadArray", f"{rand.size} random single-row reads (Source.read)", t_ours,
        t_lib, "np.load(mmap_mode='r')")
    t_lib2 = best(lambda: np.array(mm[np.sort(rand)]), repeats)
    row(table, "npy PreadArray", f"{rand.size} random rows, one fancy-index gather (memmap only)",
        t_ours, t_lib2, "memmap[sorted rows]", "Source.read takes slices; ours = row loop")
    pa.close()
    del ours, lib, mm

    # resident memory left in the process after streaming the whole matrix once, source open
    before = rss_file_kib()
    pa = _npy_pread(p)
    stream(ArraySource(pa, p, "npy"))
    rss_pread = rss_file_kib() - before
    pa.close()
    before = rss_file_kib()
    mm = np.load(p, mmap_mode="r")
    stream(ArraySource(mm, p, "npy"))
    rss_mmap = rss_file_kib() - before
    del mm
    extra["npy_rss_file_growth_mib"] = {"pread": rss_pread / 1024, "mmap": rss_mmap / 1024,
                                        "matrix_mib": X.nbytes / 2**20}
    p.unlink()


# ----------------------------------------------------------------------------- 2. npz


def bench_npz(tmp: Path, X: np.ndarray, rand: np.ndarray, repeats: int, table, extra):
    from lmi_distributed.data.sources.npz import _open_npz

    p = tmp / "m.npz"
    np.savez(p, X=X)  # stored (uncompressed) members
    n, d = X.shape
    rb = d * 4
    blocks = [(a, min(n, a + 4096)) for a in range(0, n, 4096)]
    src = _open_npz(p, "X", tmp)
    zf = zipfile.ZipFile(p)
    ef = zf.open("X.npy")
    np.lib.format.read_array_header_1_0(ef) if np.lib.format.read_magic(ef) == (1, 0) else \
        np.lib.format.read_array_header_2_0(ef)
    start = ef.tell()

    def zip_rows(a, b):
        ef.seek(start + a * rb)
        return np.frombuffer(ef.read((b - a) * rb), dtype="<f4").reshape(b - a, d)

    t_ours = best(lambda: [src.read(a, b) for a, b in blocks], repeats)
    t_lib = best(lambda: [zip_rows(a, b) for a, b in blocks], repeats)
    row(table, "npz stored member", f"stream {n} rows in 4096-row blocks (in order)", t_ours,
        t_lib, "zipfile.open + seek/read")
    sub = rand[:50]  # zipfile's backward seeks re-read the member: keep the runtime short
    t_ours = best(lambda: [src.read(int(r), int(r) + 1) for r in sub], repeats)
    t_lib = best(lambda: [zip_rows(int(r), int(r) + 1) for r in sub], 1)
    row(table, "npz stored member", f"{sub.size} random single-row reads", t_ours, t_lib,
        "zipfile.open + seek/read", "zipfile re-reads from the member start on a backward seek")
    t_lib = best(lambda: np.load(p)["X"], 1)
    row(table, "npz stored member", "first block available (whole member read by numpy)",
        best(lambda: src.read(0, 4096), repeats), t_lib, "np.load(npz)['X']",
        f"numpy holds all {X.nbytes / 2**20:.0f} MiB in memory")

    # thread safety: dask's threaded scheduler reads blocks of one Source from several threads
    want = [X[a:b] for a, b in blocks]

    def check(reader):
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda ab: reader(*ab), blocks))
        return all(np.array_equal(g, w) for g, w in zip(got, want))

    ok_ours = check(lambda a, b: src.read(a, b))
    try:
        ok_zip = check(zip_rows)
    except Exception as exc:  # noqa: BLE001 - a shared ZipExtFile may raise under threads
        ok_zip = f"raised {type(exc).__name__}"
    extra["npz_threaded_blocks_correct"] = {"pread": ok_ours, "shared zipfile member": ok_zip}
    ef.close()
    zf.close()
    src.close()
    p.unlink()


# ----------------------------------------------------------------------------- 3. zarr chunks


def bench_chunks(tmp: Path, X: np.ndarray, rand: np.ndarray, repeats: int, table, extra):
    import zarr

    from lmi_distributed.data import clear_cache, open_store, write_matrix

    store = tmp / "s.zarr"
    write_matrix(store, "m", X)
    m = open_store(store).matrix("m")
    assert m._chunk_reader() is not None, "the store layout should use the ChunkReader"
    arr = zarr.open_array(str(store / "matrices" / "m" / "X"), mode="r")
    n_chunks = len(np.unique(rand // m.chunk_rows))
    extra["zarr_layout"] = {"chunk_rows": m.chunk_rows, "chunks_touched": int(n_chunks),
                            "codecs": str(arr.metadata.codecs)[:200]}

    def gather(use_reader: bool):
        clear_cache()
        m._reader = None if use_reader else False
        return m.read_rows(rand)

    a = gather(True)
    b = gather(False)
    assert np.array_equal(a, b) and np.array_equal(a, X[rand])
    t_ours = best(lambda: gather(True), repeats)
    t_lib = best(lambda: gather(False), repeats)
    row(table, "zarr ChunkReader", f"gather {rand.size} random rows ({n_chunks} chunks), cold "
        "chunk cache", t_ours, t_lib, "zarr slice per chunk (same gather code)")
    srt = np.sort(rand)
    t_lib2 = best(lambda: arr.oindex[srt, :], repeats)
    row(table, "zarr ChunkReader", f"gather {rand.size} random rows", t_ours, t_lib2,
        "zarr Array.oindex[sorted rows]")
    m._reader = None
    cs = list(range(min(64, -(-X.shape[0] // m.chunk_rows))))
    r = m._chunk_reader()
    t_ours = best(lambda: [r.read_chunk(c) for c in cs], repeats)
    t_lib = best(lambda: [arr[c * m.chunk_rows:(c + 1) * m.chunk_rows] for c in cs], repeats)
    row(table, "zarr ChunkReader", f"{len(cs)} single-chunk reads", t_ours, t_lib,
        "zarr Array[row slice]")
    shutil.rmtree(store, ignore_errors=True)


# ----------------------------------------------------------------------------- 4. filters


HOSTILE = {
    "code injection": "__import__('os').system('true') == 0",
    "dunder attribute access": "day.__class__ == 1",
    "method call": "well.str.len() > 0",
    "huge literal (10**7 chars; 10**9 would allocate 1 GB)": "well == 'a' * 10**7",
    "division by zero": "x / 0 > 1",
}


def bench_filter(n_obs: int, repeats: int, table, extra):
    import pandas as pd

    from lmi_distributed.data.query import FilterError, evaluate_filter

    rng = np.random.default_rng(1)
    obs = pd.DataFrame({"day": rng.integers(0, 10, n_obs), "well": rng.choice(list("ABCD"), n_obs),
                        "x": rng.standard_normal(n_obs)},
                       index=pd.Index([f"c{i}" for i in range(n_obs)]))
    for expr in ("day == 6 and well == 'B'", "(x * 2 + 1) / 3 > 0.5 and well in ['A', 'B']"):
        ours = evaluate_filter(obs, expr, "bench")
        lib = obs.eval(expr).to_numpy()
        assert np.array_equal(ours, lib), expr
        t_ours = best(lambda: evaluate_filter(obs, expr, "bench"), repeats)
        t_lib = best(lambda: obs.eval(expr), repeats)
        row(table, "obs filter", f"{expr!r} on {n_obs} rows", t_ours, t_lib,
            "DataFrame.eval (python engine; numexpr not installed)")
    verdicts = {}
    for name, expr in HOSTILE.items():
        try:
            evaluate_filter(obs.iloc[:10], expr, "bench")
            o = "evaluated"
        except FilterError as exc:
            o = "refused: " + str(exc).split(": ", 2)[-1][:80]
        try:
            obs.iloc[:10].query(expr)
            p = "evaluated (no error)"
        except Exception as exc:  # noqa: BLE001 - recording what pandas does
            p = f"refused: {type(exc).__name__}: {str(exc)[:60]}"
        verdicts[name] = {"expr": expr, "ours": o, "pandas.query": p}
    extra["filter_hostile"] = verdicts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000)
    ap.add_argument("--cols", type=int, default=1024)
    ap.add_argument("--gather", type=int, default=2000)
    ap.add_argument("--obs-rows", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workdir", default=str(REPO / "jobs" / "results" / "bench_readers_tmp"))
    ap.add_argument("--out", default=str(REPO / "jobs" / "results" / "benchmark_readers.json"))
    args = ap.parse_args(argv)

    tmp = Path(args.workdir)
    tmp.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.rows, args.cols), dtype=np.float32)
    rand = rng.choice(args.rows, size=min(args.gather, args.rows), replace=False)
    table, extra = [], {}
    t0 = time.perf_counter()
    try:
        bench_npy(tmp, X, rand, args.repeats, table, extra)
        bench_npz(tmp, X, rand, args.repeats, table, extra)
        bench_chunks(tmp, X, rand, args.repeats, table, extra)
        bench_filter(args.obs_rows, args.repeats, table, extra)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    total = time.perf_counter() - t0

    print(f"{'reader':<20} {'case':<66} {'ours s':>8} {'library s':>10} {'lib/ours':>8}  library")
    for r in table:
        ratio = f"{r['library_over_ours']:.2f}" if r["library_over_ours"] else "-"
        print(f"{r['reader']:<20} {r['case'][:66]:<66} {r['ours_s']:8.4f} {r['library_s']:10.4f} "
              f"{ratio:>8}  {r['library']}")
    print(json.dumps(extra, indent=1))
    print(f"total {total:.1f} s")
    import pandas
    import zarr

    out = {"matrix": [args.rows, args.cols], "dtype": "float32", "gather_rows": int(rand.size),
           "obs_rows": args.obs_rows, "repeats": args.repeats, "timing": "median wall seconds",
           "table": table, "properties": extra, "total_s": total,
           "machine": {"python": platform.python_version(), "numpy": np.__version__,
                       "zarr": zarr.__version__, "pandas": pandas.__version__,
                       "platform": platform.platform()}}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1, default=str))
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
