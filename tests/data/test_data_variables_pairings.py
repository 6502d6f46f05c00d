"""Variables (whole, obs filter, id gather, column block) and pairings (aligned, join, grouped)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import TypeAdapter, ValidationError

from lmi_distributed.data import (DataError, PairingSpec, VariableSpec, make_pairing, open_store,
                                  read_pair, resolve_variable, write_matrix)


@pytest.fixture
def cells(tmp_path):
    """60 cells: day 2 / 6, wells A/B, clones c0..c9 (some cells unbarcoded)."""
    rng = np.random.default_rng(0)
    n = 60
    obs = pd.DataFrame({
        "day": np.repeat([2, 6], 30),
        "well": np.tile(["A", "B"], 30),
        "clone": [f"c{i % 10}" if i % 7 else None for i in range(n)],
    })
    X = rng.normal(size=(n, 12)).astype(np.float32)
    ids = np.array([f"cell{i}" for i in range(n)])
    write_matrix(tmp_path / "s.zarr", "cells", X, ids=ids, obs=obs)
    P = rng.normal(size=(20, 6)).astype(np.float32)
    write_matrix(tmp_path / "s.zarr", "prot", P, ids=[f"P{i:03d}" for i in range(20)])
    return open_store(tmp_path / "s.zarr"), X, obs, ids, P


# ------------------------------------------------------------------ variables

def test_whole_matrix(cells):
    s, X, *_ = cells
    v = resolve_variable(s, VariableSpec(name="all", matrix="cells"))
    assert v.rows.dtype == np.int64 and v.rows.tolist() == list(range(60))
    assert v.n_features == 12 and v.columns is None
    np.testing.assert_array_equal(v.read(s), X)


def test_where_filter(cells):
    s, X, obs, ids, _ = cells
    v = resolve_variable(s, VariableSpec(name="d6B", matrix="cells", where='day == 6 and well == "B"'))
    expect = np.flatnonzero((obs.day == 6) & (obs.well == "B"))
    assert v.rows.tolist() == expect.tolist()
    assert v.ids.tolist() == ids[expect].tolist()
    np.testing.assert_array_equal(v.read(s), X[expect])


def test_id_gather_list_and_file(cells, tmp_path):
    s, X, _, ids, _ = cells
    want = ["cell9", "cell2", "cell40"]
    v = resolve_variable(s, VariableSpec(name="g", matrix="cells", ids=want))
    assert v.rows.tolist() == [9, 2, 40]
    (tmp_path / "ids.txt").write_text("# header comment\ncell9\ncell2\n\ncell40\n")
    v2 = resolve_variable(s, VariableSpec(name="g", matrix="cells", ids=str(tmp_path / "ids.txt")))
    assert v2.rows.tolist() == [9, 2, 40]
    pd.DataFrame({"other": [1, 2], "id": ["cell5", "cell1"]}).to_csv(tmp_path / "ids.csv", index=False)
    v3 = resolve_variable(s, VariableSpec(name="g", matrix="cells", ids=str(tmp_path / "ids.csv")))
    assert v3.rows.tolist() == [5, 1]
    v4 = resolve_variable(s, VariableSpec(name="g", matrix="cells", ids=want, where="day == 2"))
    assert v4.rows.tolist() == [9, 2]


def test_column_block(cells):
    s, X, *_ = cells
    v = resolve_variable(s, VariableSpec(name="c", matrix="cells", columns=(3, 8), where="day == 2"))
    assert v.n_features == 5 and v.columns == (3, 8)
    np.testing.assert_array_equal(v.read(s), X[:30, 3:8])
    with pytest.raises(DataError, match="outside the matrix's 12 columns"):
        resolve_variable(s, VariableSpec(name="c", matrix="cells", columns=(3, 13)))
    with pytest.raises(ValidationError):
        VariableSpec(name="c", matrix="cells", columns=(5, 5))


def test_variable_errors(cells):
    s, *_ = cells
    with pytest.raises(DataError, match=r"variable 'v': unknown matrix 'nope'.*\['cells', 'prot'\]"):
        resolve_variable(s, VariableSpec(name="v", matrix="nope"))
    with pytest.raises(DataError, match=r"unknown column 'dya'.*obs columns: \['day', 'well', 'clone'\]"):
        resolve_variable(s, VariableSpec(name="v", matrix="cells", where="dya == 2"))
    with pytest.raises(DataError, match="selects no rows"):
        resolve_variable(s, VariableSpec(name="v", matrix="cells", where="day == 3"))
    with pytest.raises(DataError, match=r"2 of 3 ids not found.*\['zz', 'yy'\]"):
        resolve_variable(s, VariableSpec(name="v", matrix="cells", ids=["zz", "cell1", "yy"]))
    with pytest.raises(DataError, match="not allowed"):
        resolve_variable(s, VariableSpec(name="v", matrix="cells", where="__import__('os').getcwd()"))
    with pytest.raises(DataError, match="'@'"):
        resolve_variable(s, VariableSpec(name="v", matrix="cells", where="day == @d"))
    with pytest.raises(ValidationError):
        VariableSpec(name="v", matrix="cells", bogus=1)


# ------------------------------------------------------------------ pairings

def test_pairing_spec_union():
    ta = TypeAdapter(PairingSpec)
    assert ta.validate_python({"rule": "aligned"}).on == "position"
    assert ta.validate_python({"rule": "join", "table": "t.csv", "x_column": "a",
                               "y_column": "b"}).missing == "error"
    assert ta.validate_python({"rule": "grouped", "group": "clone"}).columns == ("clone", "clone")
    with pytest.raises(ValidationError):
        ta.validate_python({"rule": "grouped"})
    with pytest.raises(ValidationError):
        ta.validate_python({"rule": "bogus"})


def test_aligned(cells):
    s, X, *_ = cells
    x = resolve_variable(s, VariableSpec(name="x", matrix="cells", where="day == 2", columns=(0, 6)))
    y = resolve_variable(s, VariableSpec(name="y", matrix="cells", where="day == 6", columns=(6, 12)))
    p = make_pairing(s, x, y, {"rule": "aligned"}, seed=0)
    assert p.n == 30 and p.info["rule"] == "aligned"
    Xp, Yp = read_pair(s, x, y, p)
    np.testing.assert_array_equal(Xp, X[:30, :6])
    np.testing.assert_array_equal(Yp, X[30:, 6:])
    z = resolve_variable(s, VariableSpec(name="z", matrix="cells"))
    with pytest.raises(DataError, match="equal row counts, got 'x': 30 and 'z': 60"):
        make_pairing(s, x, z, {"rule": "aligned"})


def test_aligned_on_ids(cells):
    s, X, *_ = cells
    x = resolve_variable(s, VariableSpec(name="x", matrix="cells", ids=["cell5", "cell1", "cell9", "cell3"]))
    y = resolve_variable(s, VariableSpec(name="y", matrix="cells", ids=["cell3", "cell5", "cell7"], columns=(0, 2)))
    p = make_pairing(s, x, y, {"rule": "aligned", "on": "ids"})
    assert p.x_rows.tolist() == [5, 3] and p.y_rows.tolist() == [5, 3]
    assert p.info["matched_ids"] == 2 and p.info["x_unmatched"] == 2 and p.info["y_unmatched"] == 1


def test_join(cells, tmp_path):
    s, _, _, _, P = cells
    t = pd.DataFrame({"kinase": ["P001", "P002", "P001", "P003", "P001"],
                      "target": ["P010", "P011", "P012", "P010", "P010"]})
    t.to_csv(tmp_path / "pairs.csv", index=False)
    v = resolve_variable(s, VariableSpec(name="prot", matrix="prot"))
    spec = {"rule": "join", "table": str(tmp_path / "pairs.csv"), "x_column": "kinase", "y_column": "target"}
    p = make_pairing(s, v, v, spec)
    assert p.x_rows.tolist() == [1, 2, 1, 3] and p.y_rows.tolist() == [10, 11, 12, 10]
    assert p.info["duplicate_pairs_dropped"] == 1 and p.info["table_rows"] == 5
    assert p.info["distinct_x"] == 3
    Xp, Yp = read_pair(s, v, v, p, min_samples=2)
    np.testing.assert_array_equal(Xp, P[[1, 2, 1, 3]])
    np.testing.assert_array_equal(Yp, P[[10, 11, 12, 10]])
    # parquet and tsv tables give the same pairing
    t.to_parquet(tmp_path / "pairs.parquet")
    t.to_csv(tmp_path / "pairs.tsv", sep="\t", index=False)
    for ext in ("parquet", "tsv"):
        q = make_pairing(s, v, v, dict(spec, table=str(tmp_path / f"pairs.{ext}")))
        assert q.x_rows.tolist() == p.x_rows.tolist() and q.y_rows.tolist() == p.y_rows.tolist()


def test_join_missing_ids(cells, tmp_path):
    s, *_ = cells
    t = pd.DataFrame({"kinase": ["P001", "Q9XXX1", "P002", "Q9XXX2", "Q9XXX1"],
                      "target": ["P010", "P011", "P012", "P013", "P014"]})
    t.to_csv(tmp_path / "pairs.csv", index=False)
    v = resolve_variable(s, VariableSpec(name="prot", matrix="prot"))
    spec = {"rule": "join", "table": str(tmp_path / "pairs.csv"), "x_column": "kinase", "y_column": "target"}
    with pytest.raises(DataError, match=r"2 distinct ids in column 'kinase'.*\(3 table rows\).*"
                                        r"\['Q9XXX1', 'Q9XXX2'\]"):
        make_pairing(s, v, v, spec)
    p = make_pairing(s, v, v, dict(spec, missing="drop"))
    assert p.n == 2 and p.info["table_rows_dropped_missing_ids"] == 3
    with pytest.raises(DataError, match=r"no column\(s\) \['kinase_id'\]"):
        make_pairing(s, v, v, dict(spec, x_column="kinase_id"))
    with pytest.raises(DataError, match="does not exist"):
        make_pairing(s, v, v, dict(spec, table=str(tmp_path / "none.csv")))


def _brute_grouped_counts(obs, xmask, ymask):
    gx = set(obs.clone[xmask].dropna())
    gy = set(obs.clone[ymask].dropna())
    return len(gx), len(gy), len(gx & gy)


def test_grouped_counts_and_membership(cells):
    s, X, obs, *_ = cells
    x = resolve_variable(s, VariableSpec(name="d2", matrix="cells", where="day == 2"))
    y = resolve_variable(s, VariableSpec(name="d6B", matrix="cells", where='day == 6 and well == "B"'))
    p = make_pairing(s, x, y, {"rule": "grouped", "group": "clone"}, seed=11)
    nx, ny, nshared = _brute_grouped_counts(obs, obs.day == 2, (obs.day == 6) & (obs.well == "B"))
    assert (p.info["x_groups"], p.info["y_groups"], p.info["shared_groups"]) == (nx, ny, nshared)
    assert p.n == nshared  # one joint sample per shared group
    assert p.info["x_rows_without_group"] == int(obs.clone[obs.day == 2].isna().sum())
    cx = obs.clone.to_numpy()[p.x_rows]
    cy = obs.clone.to_numpy()[p.y_rows]
    assert (cx == cy).all() and len(set(cx)) == p.n  # same clone, each group once
    assert set(p.x_rows) <= set(x.rows.tolist()) and set(p.y_rows) <= set(y.rows.tolist())


def test_grouped_replicates_deterministic_and_vary(cells):
    s, *_ = cells
    x = resolve_variable(s, VariableSpec(name="d2", matrix="cells", where="day == 2"))
    y = resolve_variable(s, VariableSpec(name="d6", matrix="cells", where="day == 6"))
    spec = {"rule": "grouped", "group": "clone"}
    a = make_pairing(s, x, y, spec, seed=5)
    b = make_pairing(s, x, y, spec, seed=5)
    assert a.x_rows.tolist() == b.x_rows.tolist() and a.y_rows.tolist() == b.y_rows.tolist()
    draws = {(tuple(make_pairing(s, x, y, spec, seed=r).x_rows),
              tuple(make_pairing(s, x, y, spec, seed=r).y_rows)) for r in range(20)}
    assert len(draws) > 10  # replicates draw different members
    # every member of a shared group is drawn sometime
    xs = set().union(*[set(d[0]) for d in draws])
    assert len(xs) > a.n


def test_grouped_same_matrix_avoids_self_pairs(tmp_path):
    obs = pd.DataFrame({"clone": ["a", "a", "b", "c", "c", "c"]})
    write_matrix(tmp_path / "g.zarr", "m", np.arange(12, dtype=np.float32).reshape(6, 2), obs=obs)
    s = open_store(tmp_path / "g.zarr")
    v = resolve_variable(s, VariableSpec(name="all", matrix="m"))
    for seed in range(10):
        p = make_pairing(s, v, v, {"rule": "grouped", "group": "clone"}, seed=seed)
        assert (p.x_rows != p.y_rows).all()
        assert p.n == 2 and p.info["dropped_self_pairs"] == 1  # group "b" has one cell


def test_grouped_x_y_columns_and_unknown_column(cells):
    s, *_ = cells
    x = resolve_variable(s, VariableSpec(name="d2", matrix="cells", where="day == 2"))
    y = resolve_variable(s, VariableSpec(name="d6", matrix="cells", where="day == 6"))
    p = make_pairing(s, x, y, {"rule": "grouped", "x_group": "clone", "y_group": "clone"}, seed=1)
    q = make_pairing(s, x, y, {"rule": "grouped", "group": "clone"}, seed=1)
    assert p.x_rows.tolist() == q.x_rows.tolist()
    with pytest.raises(DataError, match=r"unknown obs column 'barcode'.*variable 'd2'"):
        make_pairing(s, x, y, {"rule": "grouped", "group": "barcode"}, seed=1)


def test_read_pair_nonfinite_and_min_samples(tmp_path):
    A = np.random.default_rng(0).normal(size=(30, 3)).astype(np.float32)
    A[4, 1] = np.nan
    A[17, 0] = np.inf
    write_matrix(tmp_path / "n.zarr", "m", A, ids=[f"id{i}" for i in range(30)], on_nonfinite="allow")
    s = open_store(tmp_path / "n.zarr")
    v = resolve_variable(s, VariableSpec(name="v", matrix="m"))
    p = make_pairing(s, v, v, {"rule": "aligned"})
    with pytest.raises(DataError, match=r"variable 'v' \(matrix 'm'\) has 2 rows with NaN or inf; "
                                        r"first matrix rows: \[4, 17\], ids: \['id4', 'id17'\]"):
        read_pair(s, v, v, p)
    w = resolve_variable(s, VariableSpec(name="w", matrix="m", ids=["id0", "id1", "id2"]))
    p2 = make_pairing(s, w, w, {"rule": "aligned"})
    with pytest.raises(DataError, match="only 3 joint samples, the estimator needs at least 8"):
        read_pair(s, w, w, p2)
    with pytest.raises(DataError, match="only 3 joint samples"):
        make_pairing(s, w, w, {"rule": "aligned"}, min_samples=10)
    X, Y = read_pair(s, w, w, p2, min_samples=3)
    assert X.shape == (3, 3)


# ------------------------------------------------------------------ filter arithmetic

def test_filter_arithmetic_still_works(cells):
    s, X, obs, *_ = cells
    for where, expect in [("day / 2 == 3", obs["day"] == 6), ("day % 4 == 2", obs["day"] >= 0),
                          ("day ** 2 > 10", obs["day"] == 6), ("-day < -3", obs["day"] == 6),
                          ("(day + 1) * 2 == 6", obs["day"] == 2), ("well * 2 == 'BB'", obs["well"] == "B")]:
        v = resolve_variable(s, VariableSpec(name="v", matrix="cells", where=where))
        assert v.rows.tolist() == np.flatnonzero(expect.to_numpy()).tolist(), where


@pytest.mark.parametrize("where, culprit", [
    ("day / 0 > 1", r"division by zero in `day / 0`"),
    ("1 // 0 < day", r"division by zero in `1 // 0`"),
    ("10 / (day - 2) > 1", r"`day - 2` is 0 in 30 of 60 rows; first rows: \[0, 1, 2, 3, 4, \.\.\.\] "
                           r"\(ids \['cell0'"),
    ("'a' * 1000000000 == well", r"repeats a string or list to more than 100000 items"),
    ("[1] * 10**9 == day", r"repeats a string or list"),
    ("2 ** 10**10 > day", r"exponent 10000000000 .* too large"),
    ("(('ab' * 1000) * 1000) * 1000 == well", r"repeats a string or list"),
    ("'%0100000000d' % 1 == well", r"string formatting"),
    ("day * 1e308 * 10 > 1", r"gives inf or NaN .* in 60 of 60 rows"),
])
def test_filter_errors_are_config_errors_at_bounded_cost(cells, where, culprit):
    from lmi_distributed.data import FilterError, validate_filter
    from lmi_distributed.errors import ConfigError

    s, *_ = cells
    with pytest.raises(ConfigError, match=r"variable 'v' \(matrix 'cells'\): filter .*" + culprit) as ei:
        resolve_variable(s, VariableSpec(name="v", matrix="cells", where=where))
    assert isinstance(ei.value, FilterError) and isinstance(ei.value, DataError)
    if "day - 2" not in where and "1e308" not in where:  # these two need the data to fail
        with pytest.raises(ConfigError, match=culprit):
            validate_filter(where, "variable 'v'")
