"""The ``data.sources`` package: public names, the promises its docstrings make (shapes, dtypes,
pread not mmap), and the properties the hand-written readers are kept for (docs/benchmarks.md,
"Hand-written readers vs libraries"): thread-safe random block reads of a stored ``.npz``
member, no file-backed resident memory from pread, and a filter language that refuses what
``pandas.DataFrame.query`` would run."""
from __future__ import annotations

import importlib
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lmi_distributed.data.query import FilterError, evaluate_filter


def test_public_names_still_import_from_the_package():
    from lmi_distributed.data.sources import (  # noqa: F401 - the import is the test
        FORMATS, STRAY_NUMERIC_FRACTION, ArraySource, CSRSource, PreadArray, Source,
        detect_format, open_source)
    from lmi_distributed.data import sources

    assert sources.__all__ == ["Source", "open_source", "detect_format", "FORMATS"]
    assert FORMATS == ("npy", "npz", "zarr", "h5ad", "anndata-zarr", "parquet", "csv", "tsv")
    for mod in ("base", "npy", "npz", "h5ad", "zarr", "table"):
        m = importlib.import_module(f"lmi_distributed.data.sources.{mod}")
        assert m.__doc__ and "memory-mapped in place" not in m.__doc__
    # the module named zarr inside the package must not shadow the zarr library
    import zarr

    assert hasattr(zarr, "open_array") and zarr.__name__ == "zarr"


@pytest.mark.parametrize("kind", ["npy_c", "npy_f", "npy_1d", "npz_stored", "npz_compressed"])
def test_read_gives_float32_rows_of_the_stated_shape(tmp_path, kind):
    from lmi_distributed.data.sources import PreadArray, open_source

    rng = np.random.default_rng(0)
    X = rng.standard_normal((37, 5)).astype(np.float64)
    if kind == "npy_1d":
        X = X[:, 0]
    p = tmp_path / ("m.npz" if kind.startswith("npz") else "m.npy")
    if kind == "npz_stored":
        np.savez(p, X=X)
    elif kind == "npz_compressed":
        np.savez_compressed(p, X=X)
    else:
        np.save(p, np.asfortranarray(X) if kind == "npy_f" else X)
    src = open_source(p)
    try:
        want = X.reshape(len(X), -1).astype(np.float32)
        block = src.read(3, 20)
        assert block.dtype == np.float32 and block.shape == (17, want.shape[1])
        np.testing.assert_array_equal(block, want[3:20])  # float64 -> float32 is exact rounding
        # docstrings: C order and npz members are read with pread, Fortran order is a memmap
        if kind == "npy_f":
            assert isinstance(src.arr, np.memmap)
        else:
            assert isinstance(src.arr, PreadArray) and not isinstance(src.arr, np.memmap)
    finally:
        src.close()
    if kind == "npz_compressed":
        assert not list(tmp_path.glob("npz-*.npy")), "close() removes the spool"


def test_stored_npz_member_reads_are_thread_safe(tmp_path):
    """dask's threaded scheduler reads blocks of one Source from several threads at once; a
    shared zipfile member handle cannot do that, the pread reader must."""
    from lmi_distributed.data.sources import open_source

    X = np.arange(4000 * 16, dtype=np.float32).reshape(4000, 16)
    np.savez(tmp_path / "m.npz", X=X)
    src = open_source(tmp_path / "m.npz")
    blocks = [(a, min(4000, a + 97)) for a in range(0, 4000, 97)][::-1]  # backwards on purpose
    try:
        with ThreadPoolExecutor(4) as ex:
            got = list(ex.map(lambda ab: src.read(*ab), blocks * 3))
    finally:
        src.close()
    for (a, b), g in zip(blocks * 3, got):
        np.testing.assert_array_equal(g, X[a:b])


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="RssFile is Linux-only")
def test_pread_reads_leave_no_file_backed_resident_memory(tmp_path):
    """The reason PreadArray exists instead of np.load(mmap_mode='r'): pages it reads are not
    mapped into the process, so streaming a whole file does not grow RssFile."""
    from lmi_distributed.data.sources import open_source

    def rss_file_kib() -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssFile:"):
                return int(line.split()[1])
        raise AssertionError("no RssFile line")

    X = np.ones((8192, 1024), dtype=np.float32)  # 32 MiB
    np.save(tmp_path / "m.npy", X)
    src = open_source(tmp_path / "m.npy")
    before = rss_file_kib()
    total = 0.0
    for a in range(0, 8192, 1024):
        total += float(src.read(a, a + 1024).sum())  # use every byte, as ingest does
    grown = rss_file_kib() - before
    src.close()
    assert total == 8192 * 1024  # every value is 1.0
    # a memory map would grow RssFile by ~32768 KiB; allow 1/8 of that for unrelated pages
    # (lazy-loaded code of the interpreter or numpy) touched during the loop
    assert grown < 4096, f"RssFile grew by {grown} KiB while streaming a 32 MiB file"


OBS = pd.DataFrame({"day": [1, 6, 6], "well": ["A", "B", "C"], "x": [0.5, 1.0, -2.0]},
                   index=["c0", "c1", "c2"])


@pytest.mark.parametrize("expr", [
    "well.str.len() > 0",                   # pandas.query runs method calls on columns
    "day.__class__ == 1",                   # pandas.query resolves dunder attributes
    "x.to_csv('/tmp/lmi-should-not-exist.csv') == 0",  # a method with a side effect
    "well == 'a' * 10**7",                  # pandas.query builds a 10 MB string
    "x / 0 > 1",                            # pandas.query gives inf silently
    "__import__('os').system('true') == 0",
])
def test_filter_refuses_what_pandas_query_would_run(expr):
    with pytest.raises(FilterError, match="variable 'v'"):
        evaluate_filter(OBS, expr, "variable 'v'")
    assert not Path("/tmp/lmi-should-not-exist.csv").exists()


def test_filter_agrees_with_pandas_on_the_safe_language():
    for expr in ("day == 6 and well == 'B'", "(x * 2 + 1) / 3 > 0.5 or well in ['A']",
                 "not (day < 6) & ~(well == 'C')", "`day` >= 1 and x != 1.0"):
        np.testing.assert_array_equal(evaluate_filter(OBS, expr, "t"),
                                      OBS.eval(expr).to_numpy(), err_msg=expr)


def test_benchmark_script_runs_on_a_tiny_matrix(tmp_path):
    """jobs/benchmark_readers.py end to end at toy size: every reader's result is checked
    against the library's inside the script (asserts), and the JSON has one row per case."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "jobs"))
    try:
        bench = importlib.import_module("benchmark_readers")
    finally:
        sys.path.pop(0)
    out = tmp_path / "b.json"
    assert bench.main(["--rows", "600", "--cols", "16", "--gather", "50", "--obs-rows", "500",
                       "--repeats", "1", "--workdir", str(tmp_path / "w"), "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    readers = {r["reader"] for r in res["table"]}
    assert readers == {"npy PreadArray", "npz stored member", "zarr ChunkReader", "obs filter"}
    assert res["properties"]["npz_threaded_blocks_correct"]["pread"] is True
    assert all(v["ours"].startswith("refused") for v in res["properties"]["filter_hostile"].values())
