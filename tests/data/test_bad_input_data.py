"""Bad input to the data layer: one clear error, naming the culprit, nothing left behind.

Each case builds a bad input under ``tmp_path`` and returns ``(call, error type, pattern)``;
the test asserts the exact error type, that the message matches the pattern (which names the
file / column / variable), and that no store, staging or spool debris survives a failed ingest.
The CLI tests check exit code 2 and a single ``error:`` line on stderr, without a traceback.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lmi_distributed.data import (VariableSpec, open_store, resolve_variable, write_matrix)
from lmi_distributed.data.ingest import ingest
from lmi_distributed.errors import ConfigError, DataError

RNG = np.random.default_rng(1)
EMB = RNG.normal(size=(100, 4))
IDS = np.array([f"r{i}" for i in range(100)])


def _ing(tmp_path, name, **kw):
    return lambda: ingest(tmp_path / name, tmp_path / "s.zarr", "m", **kw)


def _table(numeric_b: bool = True) -> pd.DataFrame:
    df = pd.DataFrame({"id": IDS, "a": EMB[:, 0], "b": EMB[:, 1]})
    if not numeric_b:
        df["b"] = df["b"].astype(object)
    return df


def _corrupt(path, at: float, data: bytes) -> None:
    b = bytearray(path.read_bytes())
    i = int(len(b) * at)
    b[i:i + len(data)] = data
    path.write_bytes(bytes(b))


# ------------------------------------------------------------------ case builders


def missing_file(t):
    return _ing(t, "nope.npy"), DataError, r"input .*nope\.npy does not exist"


def unknown_extension(t):
    (t / "x.bin").write_bytes(b"123")
    return _ing(t, "x.bin"), DataError, r"cannot tell the format of .*x\.bin"


def unknown_format_name(t):
    np.save(t / "e.npy", EMB)
    return _ing(t, "e.npy", format="xml"), DataError, r"unknown input format 'xml'"


def npy_bad_magic(t):
    np.save(t / "bad.npy", EMB)
    _corrupt(t / "bad.npy", 0, b"JUNKJU")
    return _ing(t, "bad.npy"), DataError, r"npy input .*bad\.npy: bad \.npy header"


def npy_garbled_header(t):
    np.save(t / "bad.npy", EMB)
    b = bytearray((t / "bad.npy").read_bytes())
    b[12:30] = b"'descr': <<<oops>>"
    (t / "bad.npy").write_bytes(bytes(b))
    return _ing(t, "bad.npy"), DataError, r"npy input .*bad\.npy: bad \.npy header"


def npy_version_3(t):
    np.save(t / "v3.npy", EMB)
    b = bytearray((t / "v3.npy").read_bytes())
    b[6] = 3  # major version byte
    (t / "v3.npy").write_bytes(bytes(b))
    return _ing(t, "v3.npy"), DataError, r"npy input .*v3\.npy: npy format version 3\.0"


def npy_truncated(t):
    np.save(t / "e.npy", EMB)
    (t / "t.npy").write_bytes((t / "e.npy").read_bytes()[:900])
    return _ing(t, "t.npy"), DataError, r"npy input .*t\.npy.*truncated"


def npy_3d(t):
    np.save(t / "cube.npy", np.zeros((2, 3, 4)))
    return _ing(t, "cube.npy"), DataError, r"npy input .*cube\.npy: expected a 2-D matrix, got shape \(2, 3, 4\)"


def npy_complex(t):
    np.save(t / "c.npy", EMB + 1j)
    return _ing(t, "c.npy"), DataError, r"npy input .*c\.npy: holds complex values \(dtype complex128\)"


def npy_beyond_float32(t):
    a = EMB.copy()
    a[[3, 9], 1] = [1e39, -2e40]
    np.save(t / "big.npy", a)
    return (_ing(t, "big.npy"), DataError,
            r"npy input .*big\.npy: column 1 holds finite values beyond float32's range .* "
            r"rows \[3, 9\].*divide the column by a constant")


def npz_truncated(t):
    np.savez_compressed(t / "e.npz", X=EMB)
    (t / "t.npz").write_bytes((t / "e.npz").read_bytes()[:1500])
    return _ing(t, "t.npz"), DataError, r"npz input .*t\.npz.*(truncated|corrupt)"


def npz_unknown_key(t):
    np.savez(t / "e.npz", X=EMB)
    return _ing(t, "e.npz", key="zz"), DataError, r"npz input .*e\.npz: no array 'zz'; arrays: \['X'\]"


def npz_complex(t):
    np.savez(t / "c.npz", X=EMB.astype(np.complex64))
    return _ing(t, "c.npz"), DataError, r"npz input .*c\.npz \[X\]: holds complex values"


def npz_duplicate_ids(t):
    ids = IDS.copy()
    ids[[10, 40]] = "r5"
    np.savez(t / "d.npz", X=EMB, ids=ids)
    return (_ing(t, "d.npz"), DataError,
            r"npz input .*d\.npz \[X\]: 1 row ids occur more than once, e\.g\. \['r5'\] "
            r"\('r5' at rows \[5, 10, 40\]\)")


def npz_nan_rows(t):
    a = EMB.copy()
    a[[7, 60], 2] = np.nan
    np.savez(t / "n.npz", X=a, ids=IDS)
    return (_ing(t, "n.npz"), DataError,
            r"n\.npz.*2 of 100 rows contain NaN or inf; first rows: \[7, 60\] \(ids \['r7', 'r60'\]\)")


def h5ad_truncated(t):
    import anndata

    anndata.AnnData(EMB.astype(np.float32)).write_h5ad(t / "a.h5ad")
    (t / "t.h5ad").write_bytes((t / "a.h5ad").read_bytes()[:3000])
    return _ing(t, "t.h5ad"), DataError, r"h5ad input .*t\.h5ad.*(truncated|corrupt)"


def h5ad_bad_signature(t):
    import anndata

    anndata.AnnData(EMB.astype(np.float32)).write_h5ad(t / "a.h5ad")
    _corrupt(t / "a.h5ad", 0, b"garbage!")
    return _ing(t, "a.h5ad"), DataError, r"h5ad input .*a\.h5ad: cannot open \(OSError: .*signature"


def h5ad_complex(t):
    import anndata

    anndata.AnnData(EMB.astype(np.complex64)).write_h5ad(t / "c.h5ad")
    return _ing(t, "c.h5ad"), DataError, r"h5ad input .*c\.h5ad \[X\]: holds complex values"


def h5ad_unknown_layer(t):
    import anndata

    anndata.AnnData(EMB.astype(np.float32)).write_h5ad(t / "a.h5ad")
    return _ing(t, "a.h5ad", key="counts"), DataError, r"h5ad input .*a\.h5ad: no element 'layers/counts'"


def zarr_corrupt_chunk(t):
    import zarr

    a = zarr.open_array(str(t / "in.zarr"), mode="w", shape=(100, 4), chunks=(10, 4), dtype="f8")
    a[:] = EMB
    (t / "in.zarr" / "c" / "3" / "0").write_bytes(b"\x00" * 7)
    return _ing(t, "in.zarr"), DataError, r"zarr input .*in\.zarr: reading rows \[0, 100\) failed"


def zarr_bad_metadata(t):
    (t / "in.zarr").mkdir()
    (t / "in.zarr" / "zarr.json").write_text("{not json")
    return _ing(t, "in.zarr"), DataError, r"zarr input .*in\.zarr: cannot open \(JSONDecodeError"


def zarr_complex(t):
    import zarr

    zarr.open_array(str(t / "c.zarr"), mode="w", shape=(5, 3), dtype="c8")
    return _ing(t, "c.zarr"), DataError, r"zarr input .*c\.zarr: holds complex values"


def parquet_truncated(t):
    _table().to_parquet(t / "e.parquet")
    (t / "t.parquet").write_bytes((t / "e.parquet").read_bytes()[:700])
    return _ing(t, "t.parquet", id_column="id"), DataError, r"parquet input .*t\.parquet: cannot read"


def parquet_checksum_mismatch(t):
    import pyarrow as pa
    import pyarrow.parquet as pq

    tab = pa.table({"id": [f"r{i}" for i in range(2000)], "a": np.arange(2000.0),
                    "b": np.arange(2000.0)})
    pq.write_table(tab, t / "ck.parquet", write_page_checksum=True, compression="none",
                   row_group_size=500)
    _corrupt(t / "ck.parquet", 0.5, bytes(range(8)))  # flips plain-encoded values in a data page
    return (_ing(t, "ck.parquet", id_column="id"), DataError,
            r"parquet input .*ck\.parquet: row group 2 \(rows 1000\.\.1499\) cannot be decoded "
            r"\(OSError: .*CRC checksum verification failed")


def parquet_stray_string(t):
    df = _table(numeric_b=False)
    df.loc[57, "b"] = "n/a"
    df.astype({"b": str}).to_parquet(t / "s.parquet")
    return (_ing(t, "s.parquet", id_column="id"), DataError,
            r"parquet input .*s\.parquet: column 'b' looks numeric \(99 of 100 values are "
            r"numbers\) but 1 are not, in rows \[57\]: \['n/a'\]")


def parquet_underflow(t):
    df = _table()
    df.loc[5, "b"] = 1e-45
    df.to_parquet(t / "u.parquet")
    return (_ing(t, "u.parquet", id_column="id"), DataError,
            r"parquet input .*u\.parquet: column 'b' holds non-zero values below float32's normal "
            r"range .* rows \[5\] \(ids \['r5'\]\).*multiply the column")


def parquet_unknown_id_column(t):
    _table().to_parquet(t / "e.parquet")
    return (_ing(t, "e.parquet", id_column="accession"), DataError,
            r"parquet input .*e\.parquet: unknown id column 'accession'; columns: \['id', 'a', 'b'\]")


def parquet_unknown_vector_column(t):
    _table().to_parquet(t / "e.parquet")
    return (_ing(t, "e.parquet", id_column="id", vector_columns=["a", "zz"]), DataError,
            r"parquet input .*e\.parquet: unknown vector column\(s\) \['zz'\]")


def parquet_null_vector(t):
    vecs = [list(r) for r in EMB]
    vecs[12] = None
    pd.DataFrame({"id": IDS, "emb": vecs}).to_parquet(t / "l.parquet")
    return (_ing(t, "l.parquet", id_column="id"), DataError,
            r"parquet input .*l\.parquet: 1 rows have a null vector in column 'emb'; first rows: \[12\]")


def csv_stray_string_early(t):
    df = _table(numeric_b=False)
    df.loc[7, "b"] = "oops"
    df.to_csv(t / "s.csv", index=False)
    return (_ing(t, "s.csv", id_column="id"), DataError,
            r"csv input .*s\.csv: column 'b' looks numeric .* in rows \[7\]: \['oops'\]")


def csv_stray_string_after_head(t):
    df = _table(numeric_b=False)
    df.loc[57, "b"] = "oops"
    df.to_csv(t / "s.csv", index=False)
    return (_ing(t, "s.csv", id_column="id"), DataError,
            r"csv input .*s\.csv: column 'b' has 1 non-numeric values in rows \[57\], values \['oops'\]")


def csv_complex_column(t):
    df = _table()
    df["z"] = EMB[:, 2] + 1j
    df.to_csv(t / "c.csv", index=False)
    return (_ing(t, "c.csv", id_column="id"), DataError,
            r"csv input .*c\.csv: column 'z' holds complex numbers \(e\.g\. row 0:")


def csv_beyond_float32(t):
    df = _table()
    df.loc[33, "a"] = 5e38
    df.to_csv(t / "b.csv", index=False)
    return (_ing(t, "b.csv", id_column="id"), DataError,
            r"csv input .*b\.csv: column 'a' holds finite values beyond float32's range.* "
            r"rows \[33\] \(ids \['r33'\]\)")


def csv_ragged_row(t):
    lines = ["id,a,b"] + [f"r{i},{i},{i}" for i in range(100)]
    lines[81] = "r80,1,2,3"
    (t / "r.csv").write_text("\n".join(lines) + "\n")
    return (_ing(t, "r.csv", id_column="id"), DataError,
            r"csv input .*r\.csv: cannot parse the file .*Expected 3 fields in line 82, saw 4")


def csv_not_text(t):
    (t / "b.csv").write_bytes(b"id,a\n" + bytes(range(128, 256)) * 4)
    return _ing(t, "b.csv"), DataError, r"csv input .*b\.csv: cannot read \(UnicodeDecodeError"


def csv_no_rows(t):
    (t / "e.csv").write_text("id,a,b\n")
    return (_ing(t, "e.csv", id_column="id", vector_columns=["a", "b"]), DataError,
            r"csv input .*e\.csv.*the input has no rows")


def matrix_exists(t):
    np.save(t / "e.npy", EMB)
    ingest(t / "e.npy", t / "s.zarr", "m")
    return _ing(t, "e.npy"), DataError, r"store .*s\.zarr: matrix 'm' already exists.*overwrite"


def bad_matrix_name(t):
    np.save(t / "e.npy", EMB)
    return (lambda: ingest(t / "e.npy", t / "s.zarr", ".hidden"), DataError,
            r"invalid matrix name '\.hidden'")


def store_is_not_a_store(t):
    np.save(t / "e.npy", EMB)
    (t / "s.zarr").mkdir()
    (t / "s.zarr" / "notes.txt").write_text("mine")
    return _ing(t, "e.npy"), DataError, r"s\.zarr is not an lmi_distributed store \(no zarr\.json\)"


def _cells(t):
    obs = pd.DataFrame({"day": np.repeat([0, 2, 6, 6], 25), "well": np.tile(["A", "B"], 50)})
    write_matrix(t / "s.zarr", "cells", EMB, ids=IDS, obs=obs)
    return open_store(t / "s.zarr")


def _var(t, where=None, ids=None):
    s = _cells(t)
    return lambda: resolve_variable(s, VariableSpec(name="v", matrix="cells", where=where, ids=ids))


def filter_divide_by_zero_literal(t):
    return _var(t, "day / 0 > 1"), ConfigError, r"variable 'v' \(matrix 'cells'\): filter 'day / 0 > 1': division by zero"


def filter_divide_by_zero_column(t):
    return (_var(t, "12 / day > 3"), ConfigError,
            r"variable 'v' .*division by zero: 'day' is 0 in 25 of 100 rows; first rows: \[0, 1, 2, 3, 4, \.\.\.\] \(ids \['r0'")


def filter_string_repetition(t):
    return _var(t, "well == 'a' * 10**9"), ConfigError, r"variable 'v' .*repeats a string or list to more than 100000"


def filter_huge_power(t):
    return _var(t, "day < 2 ** 10**10"), ConfigError, r"variable 'v' .*exponent 10000000000 .* too large"


def filter_nested_repetition(t):
    return (_var(t, "well == ('ab' * 1000) * 1000"), ConfigError,
            r"variable 'v' .*`'ab' \* 1000 \* 1000` repeats a string or list")


def filter_unknown_column(t):
    return _var(t, "dya == 2"), ConfigError, r"variable 'v' .*unknown column 'dya'.*\['day', 'well'\]"


def variable_ids_not_unique(t):
    ids = IDS.copy()
    ids[3] = "r4"
    write_matrix(t / "s.zarr", "dup", EMB, ids=ids)
    s = open_store(t / "s.zarr")
    return (lambda: resolve_variable(s, VariableSpec(name="v", matrix="dup", ids=["r1"])), DataError,
            r"variable 'v' \(matrix 'dup'\): row ids are not unique \(1 duplicated, e\.g\. \['r4'\]\)")


# every public function above whose first argument is ``t`` is a case
CASES = [f for f in list(globals().values())
         if callable(f) and getattr(f, "__module__", None) == __name__ and not f.__name__.startswith("_")
         and f.__code__.co_varnames[:1] == ("t",)]


@pytest.mark.parametrize("case", CASES, ids=[f.__name__ for f in CASES])
def test_bad_input_gives_one_named_error(tmp_path, case):
    call, exc_type, pattern = case(tmp_path)
    before = _store_state(tmp_path)
    with pytest.raises(exc_type, match=pattern) as ei:
        call()
    assert type(ei.value).__module__.startswith("lmi_distributed")
    assert "\n" not in str(ei.value)  # one line
    # nothing half-written survives: no staging or spool debris, the store as it was
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    assert _store_state(tmp_path) == before


def _store_state(t):
    s = t / "s.zarr"
    if not (s / "zarr.json").exists():
        return None
    assert not (s / ".staging").exists()
    return open_store(s).matrix_names


def test_enough_cases():
    assert len(CASES) >= 25


def test_filter_cost_is_bounded_before_computing(tmp_path, monkeypatch):
    """The size checks run before the operation: the repetition is never computed."""
    from lmi_distributed.data import query

    calls = []
    real = query._ARITH[__import__("ast").Mult]
    monkeypatch.setitem(query._ARITH, __import__("ast").Mult,
                        lambda a, b: calls.append((type(a), type(b))) or real(a, b))
    with pytest.raises(ConfigError):
        query.evaluate_filter(pd.DataFrame({"w": ["a"]}), "w == 'a' * 10**9", "variable 'v'")
    assert calls == []  # refused before the multiplication ran


# ------------------------------------------------------------------ CLI

@pytest.mark.parametrize("make, extra, culprit", [
    (lambda t: np.save(t / "in.npy", EMB + 1j), [], r"in\.npy: holds complex values"),
    (lambda t: (t / "in.csv").write_text("id,a\nr0,1\nr0,2\n"), ["--id-column", "id"],
     r"in\.csv: 1 row ids occur more than once"),
    (lambda t: (t / "in.csv").write_text("id,a,b\n" + "".join(f"r{i},{i},{i}\n" for i in range(80))
                                         + "r80,1,2,3\n"), ["--id-column", "id"],
     r"in\.csv: cannot parse the file"),
    (lambda t: None, [], r"input .*in\.npy does not exist"),
])
def test_cli_bad_input_exit_2_one_error_line(tmp_path, capsys, make, extra, culprit):
    import re

    from lmi_distributed.cli.main import main

    make(tmp_path)
    src = next(iter(sorted(tmp_path.glob("in.*"))), tmp_path / "in.npy")
    rc = main(["ingest", str(src), str(tmp_path / "s.zarr"), "--name", "m", "--quiet", *extra])
    cap = capsys.readouterr()
    assert rc == 2
    lines = cap.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lmi-distributed ingest: error: "), cap.err
    assert re.search(culprit, lines[0]) and "Traceback" not in cap.err + cap.out
    assert not (tmp_path / "s.zarr").exists()
