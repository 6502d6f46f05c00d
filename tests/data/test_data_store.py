"""Store format, chunk rule, chunk-aware gathers, cache, versioning, atomic writes."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pandas as pd
import pytest

from lmi_distributed.data import (DataError, STORE_VERSION, chunk_cache, chunk_layout, clear_cache,
                                  open_store, write_matrix)
from lmi_distributed.data.gather import coalesce_runs


@pytest.fixture
def mat():
    rng = np.random.default_rng(0)
    return rng.normal(size=(3000, 40)).astype(np.float32)


@pytest.fixture
def store(tmp_path, mat):
    obs = pd.DataFrame({"day": np.arange(3000) % 3, "well": np.where(np.arange(3000) % 2, "A", "B")})
    ids = np.array([f"r{i}" for i in range(3000)])
    # small chunks so gathers touch many chunks and shards
    write_matrix(tmp_path / "s.zarr", "m", mat, ids=ids, obs=obs, provenance={"note": "test"},
                 chunk_bytes=40 * 4 * 16, shard_bytes=40 * 4 * 16 * 8)
    return open_store(tmp_path / "s.zarr")


def test_chunk_rule():
    lay = chunk_layout(500_000, 1024)
    assert lay.chunk_rows == 32  # 32 * 1024 * 4 = 128 KiB
    assert lay.shard_rows == 32 * 128  # 16 MiB shards
    lay = chunk_layout(2000, 1024)  # 63 chunks: no shards
    assert lay.shard_rows is None and lay.chunk_rows == 32
    lay = chunk_layout(3000, 1000)  # 1000 genes: 128000 B per 32 rows
    assert lay.chunk_rows == 32 and lay.shard_rows is not None
    lay = chunk_layout(10, 3)
    assert lay.chunk_rows == 10 and lay.shard_rows is None
    lay = chunk_layout(10**6, 100_000)  # a row bigger than chunk_bytes: one row per chunk
    assert lay.chunk_rows == 1


def test_roundtrip_metadata(store, mat):
    m = store.matrix("m")
    assert store.matrix_names == ["m"]
    assert m.shape == (3000, 40)
    assert m.chunk_rows == 16 and m.shard_rows == 128
    assert m.ids[:3].tolist() == ["r0", "r1", "r2"]
    assert list(m.obs.columns) == ["day", "well"]
    assert m.obs["well"].iloc[1] == "A"
    assert store.provenance("m")["note"] == "test"
    assert store.version == (STORE_VERSION, 0)
    np.testing.assert_array_equal(m.read_all(), mat)


def test_gather_exact_rows_in_order(store, mat):
    clear_cache()
    m = store.matrix("m")
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 3000, size=700)
    rows[:5] = [2999, 0, 0, 17, 2999]  # duplicates, ends
    out = m.read_rows(rows)
    assert out.dtype == np.float32 and out.shape == (700, 40)
    np.testing.assert_array_equal(out, mat[rows])
    np.testing.assert_array_equal(m.read_rows(rows[::-1]), mat[rows[::-1]])
    np.testing.assert_array_equal(m.read_rows(rows, columns=(5, 9)), mat[rows, 5:9])
    np.testing.assert_array_equal(m.read_rows(np.arange(100, 400)), mat[100:400])
    assert m.read_rows(np.array([], dtype=int)).shape == (0, 40)
    with pytest.raises(DataError, match="outside"):
        m.read_rows([0, 3000])
    with pytest.raises(DataError, match="integers"):
        m.read_rows(np.array([0.5]))


def test_gather_reads_each_chunk_once_and_caches(store, mat, monkeypatch):
    clear_cache()
    m = store.matrix("m")
    assert m._chunk_reader() is not None  # the direct shard reader handles our layout
    calls = []
    orig = m._read_chunk

    def spy(c):
        calls.append(c)
        return orig(c)

    monkeypatch.setattr(m, "_read_chunk", spy)
    rows = np.array([5, 3, 40, 33, 6, 2000, 4, 17])  # chunks 0,0,2,2,0,125,0,1
    np.testing.assert_array_equal(m.read_rows(rows), mat[rows])
    assert sorted(calls) == [0, 1, 2, 125]  # each touched chunk decoded once
    calls.clear()
    np.testing.assert_array_equal(m.read_rows(rows[::-1]), mat[rows[::-1]])
    assert calls == []  # warm: all from the per-process cache
    assert chunk_cache().hits >= 4


def test_zarr_fallback_gather_coalesces_runs(store, mat, monkeypatch):
    clear_cache()
    m = store.matrix("m")
    m._reader = False  # force the generic zarr path
    calls = []
    orig = m._read_slice

    def spy(lo, hi):
        calls.append((lo, hi))
        return orig(lo, hi)

    monkeypatch.setattr(m, "_read_slice", spy)
    rows = np.array([5, 3, 40, 33, 6, 2000, 4, 17])
    np.testing.assert_array_equal(m.read_rows(rows), mat[rows])
    # chunks 0,1,2 coalesced into one contiguous read; chunk 125 separately
    assert sorted(calls) == [(0, 48), (2000, 2016)]
    rng = np.random.default_rng(4)
    r = rng.integers(0, 3000, 500)
    np.testing.assert_array_equal(m.read_rows(r), mat[r])


def test_direct_reader_equals_zarr(tmp_path):
    from lmi_distributed.data.chunkio import ChunkReader

    rng = np.random.default_rng(2)
    A = rng.normal(size=(1037, 24)).astype(np.float32)
    for comp in ("zstd", "lz4", "none"):
        for kw in ({}, {"chunk_bytes": 24 * 4 * 8, "shard_bytes": 24 * 4 * 64}):
            h = write_matrix(tmp_path / "d.zarr", f"{comp}{len(kw)}", A, compressor=comp, **kw)
            r = ChunkReader.open(h.path / "X")
            assert r is not None
            for c in range(-(-1037 // h.chunk_rows)):
                lo = c * h.chunk_rows
                np.testing.assert_array_equal(r.read_chunk(c), A[lo:lo + h.chunk_rows])


def test_coalesce_runs():
    assert coalesce_runs(np.array([0, 1, 2, 5, 7, 8]), 2) == [(0, 1), (2, 2), (5, 5), (7, 8)]
    assert coalesce_runs(np.array([], dtype=int), 4) == []


def test_pickle_by_path(store, mat):
    s2 = pickle.loads(pickle.dumps(store))
    assert s2.path == store.path
    m2 = pickle.loads(pickle.dumps(store.matrix("m")))
    np.testing.assert_array_equal(m2.read_rows([7, 3]), mat[[7, 3]])
    assert len(pickle.dumps(store)) < 500


def test_unknown_matrix_lists_available(store):
    with pytest.raises(DataError, match=r"unknown matrix 'nope'.*\['m'\]"):
        store.matrix("nope")


def test_incompatible_version(tmp_path, mat):
    p = tmp_path / "v.zarr"
    write_matrix(p, "m", mat[:10])
    meta = json.loads((p / "zarr.json").read_text())
    meta["attributes"]["lmi_distributed_store_version"] = STORE_VERSION + 1
    (p / "zarr.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match=rf"version {STORE_VERSION + 1}.*reads version {STORE_VERSION}"):
        open_store(p)


def test_not_a_store(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_store(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(DataError, match="not an lmi_distributed store"):
        open_store(tmp_path / "plain")


def test_existing_matrix_and_overwrite(tmp_path, mat):
    p = tmp_path / "o.zarr"
    write_matrix(p, "m", mat[:10])
    with pytest.raises(DataError, match="already exists"):
        write_matrix(p, "m", mat[:20])
    write_matrix(p, "m", mat[:20], overwrite=True)
    s = open_store(p)
    assert s.matrix("m").shape == (20, 40)
    assert not (p / ".staging").exists()


def test_failed_write_leaves_nothing(tmp_path, mat):
    p = tmp_path / "f.zarr"
    bad = mat[:50].copy()
    bad[[3, 7]] = np.nan
    with pytest.raises(DataError, match=r"2 of 50 rows contain NaN or inf; first rows: \[3, 7\]"):
        write_matrix(p, "m", bad)
    assert not p.exists()
    assert [x.name for x in tmp_path.iterdir()] == []
    write_matrix(p, "ok", mat[:5])
    with pytest.raises(DataError):
        write_matrix(p, "m2", mat[:5], ids=["a"])  # wrong number of ids
    s = open_store(p)
    assert s.matrix_names == ["ok"]
    assert not (p / "matrices" / "m2").exists()


def test_incomplete_matrix_is_invisible(tmp_path, mat):
    p = tmp_path / "i.zarr"
    write_matrix(p, "m", mat[:5])
    zj = p / "matrices" / "m" / "zarr.json"
    meta = json.loads(zj.read_text())
    meta["attributes"]["lmi_distributed_matrix"]["complete"] = False
    zj.write_text(json.dumps(meta))
    assert open_store(p).matrix_names == []


@pytest.mark.parametrize("sharded", [False, True])
def test_corrupt_chunk_is_reported(tmp_path, mat, sharded):
    p = tmp_path / "c.zarr"
    kw = {"chunk_bytes": 40 * 4 * 4, "shard_bytes": 40 * 4 * 32} if sharded else {}
    write_matrix(p, "m", mat[:1000], **kw)
    assert (open_store(p).matrix("m").shard_rows is not None) == sharded
    chunk_files = [os.path.join(r, f) for r, _, fs in os.walk(p / "matrices" / "m" / "X" / "c")
                   for f in fs]
    with open(chunk_files[0], "wb") as f:
        f.write(b"garbage")
    clear_cache()
    with pytest.raises(DataError, match="matrix 'm'.*corrupt"):
        open_store(p).matrix("m").read_rows(np.arange(1000))


def test_bad_names(tmp_path, mat):
    with pytest.raises(DataError, match="invalid matrix name"):
        write_matrix(tmp_path / "n.zarr", "../evil", mat[:3])


# ------------------------------------------------------------------ staging debris, identity

def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid  # reaped: no process has this pid now (pid reuse within the test is negligible)


def _debris(root, name, pid=None, host=None, age_s=0.0):
    import socket
    import time

    d = root / name
    (d / "m" / "X").mkdir(parents=True)
    (d / "m" / "X" / "c.0").write_bytes(b"half-written")
    if pid is not None:
        (d / "lmi_writer.json").write_text(json.dumps(
            {"pid": pid, "host": host or socket.gethostname(), "started": time.time() - age_s}))
    if age_s:
        t = time.time() - age_s
        for p in (d / "lmi_writer.json", d):
            if p.exists():
                os.utime(p, (t, t))
    return d


def test_stale_staging_removed_by_open_store_live_kept(tmp_path, mat):
    write_matrix(tmp_path / "s.zarr", "m", mat[:10])
    st = tmp_path / "s.zarr" / ".staging"
    dead = _debris(st, "aaa", pid=_dead_pid())                    # killed writer on this host
    live = _debris(st, "bbb", pid=os.getpid())                    # a live writer: kept
    old_other = _debris(st, "ccc", pid=1, host="elsewhere", age_s=3 * 86400)  # other host, 3 days
    new_other = _debris(st, "ddd", pid=1, host="elsewhere")      # other host, fresh: kept
    unowned_old = _debris(st, "eee", age_s=2 * 86400)            # no owner file, 2 days old
    unowned_new = _debris(st, "fff")                              # no owner file, fresh: kept
    trash = _debris(st, "trash-0123", pid=None)                   # overwritten matrix on its way out
    s = open_store(tmp_path / "s.zarr")
    assert s.matrix_names == ["m"]
    gone = [p for p in (dead, old_other, unowned_old, trash) if p.exists()]
    kept = [p for p in (live, new_other, unowned_new) if not p.exists()]
    assert gone == [] and kept == []


def test_next_ingest_removes_sibling_debris_of_a_killed_first_ingest(tmp_path, mat):
    from lmi_distributed.data.ingest import ingest

    stage = _debris(tmp_path, ".s.zarr.staging-abc123", pid=_dead_pid())
    spool = _debris(tmp_path, ".s.zarr.spool-1234abcd", pid=_dead_pid())
    np.save(tmp_path / "e.npy", mat[:20])
    ingest(tmp_path / "e.npy", tmp_path / "s.zarr", "e")
    assert not stage.exists() and not spool.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.npy", "s.zarr"]
    # the published store holds no owner file, and a write leaves no staging behind
    assert not (tmp_path / "s.zarr" / "lmi_writer.json").exists()
    assert not (tmp_path / "s.zarr" / ".staging").exists()


def test_identity_new_uid_on_every_write(tmp_path, mat):
    from lmi_distributed.data import matrix_identity, provenance_digest

    h1 = write_matrix(tmp_path / "s.zarr", "m", mat[:10], provenance={"note": "a"})
    i1 = h1.identity()
    assert set(i1) == {"uid", "shape", "provenance_digest"} and i1["shape"] == [10, 40]
    assert i1 == matrix_identity(tmp_path / "s.zarr", "m")  # stable across reopen
    assert json.loads(json.dumps(i1)) == i1  # JSON types only
    assert i1["provenance_digest"] == provenance_digest(open_store(tmp_path / "s.zarr").provenance("m"))
    h2 = write_matrix(tmp_path / "s.zarr", "m", mat[:10], provenance={"note": "a"}, overwrite=True)
    i2 = open_store(tmp_path / "s.zarr").matrix("m").identity()
    assert i2["uid"] == h2.uid != i1["uid"]  # same data, same name: still a new uid
    assert i2["provenance_digest"] == i1["provenance_digest"]  # same provenance, same digest
    write_matrix(tmp_path / "s.zarr", "m", mat[:10], provenance={"note": "b"}, overwrite=True)
    assert open_store(tmp_path / "s.zarr").matrix("m").identity()["provenance_digest"] != \
        i1["provenance_digest"]
    # key order does not change the digest; a value does
    assert provenance_digest({"a": 1, "b": [1, 2]}) == provenance_digest({"b": [1, 2], "a": 1})
    assert provenance_digest({"a": 1}) != provenance_digest({"a": 2})


def test_reingest_gives_new_uid(tmp_path, mat):
    from lmi_distributed.data.ingest import ingest

    np.save(tmp_path / "e.npy", mat[:20])
    u1 = ingest(tmp_path / "e.npy", tmp_path / "s.zarr", "e").identity()["uid"]
    u2 = ingest(tmp_path / "e.npy", tmp_path / "s.zarr", "e", overwrite=True).identity()["uid"]
    assert u1 != u2
