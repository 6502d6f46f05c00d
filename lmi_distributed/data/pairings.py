"""Pairings: the joint samples (x_i, y_i) of a pair of variables.

Rules (``PairingSpec`` is a pydantic discriminated union on ``rule``):

* ``aligned``: row i of X with row i of Y (``on="position"``, the variables must have equal
  length), or the rows of X and Y that carry the same row id (``on="ids"``; in X's order).
* ``join``: a pair table (CSV / TSV / Parquet) with columns ``x_column`` and ``y_column``;
  table row j gives the sample (X row with id x_j, Y row with id y_j). Ids are looked up
  among the variable's rows. Missing ids raise DataError (count + first few) unless
  ``missing="drop"``; repeated (x, y) pairs are dropped unless ``drop_duplicates=False``.
* ``grouped``: rows of X and Y sharing a group label (obs column ``group``, or ``x_group`` /
  ``y_group``), e.g. a clone barcode. One replicate draws, for each group present on both
  sides (sorted by label), one uniformly random member on each side with
  ``np.random.default_rng(seed)``: one joint sample per shared group; R seeds give R
  pairings (paper section 4.2, A.4.2). Rows with a missing/empty label are ignored. When X and
  Y read the same matrix and a draw picks the same row on both sides, Y is redrawn among the
  group's other members; a group whose only member is that row is dropped
  (``info["dropped_self_pairs"]``).

Every pairing is deterministic given its seed and reports ``n`` and matched counts in ``info``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from .validation import DataError, check_min_samples, first_few

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store
    from .variables import Variable

__all__ = [
    "AlignedPairingSpec",
    "JoinPairingSpec",
    "GroupedPairingSpec",
    "PairingSpec",
    "parse_pairing_spec",
    "Pairing",
    "make_pairing",
    "read_pair",
    "DEFAULT_MIN_SAMPLES",
]

# KSG with k=3 on the held-out half needs > k points there: 2 * (k + 1).
DEFAULT_MIN_SAMPLES = 8


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AlignedPairingSpec(_Base):
    rule: Literal["aligned"] = "aligned"
    on: Literal["position", "ids"] = "position"


class JoinPairingSpec(_Base):
    rule: Literal["join"] = "join"
    table: str
    x_column: str
    y_column: str
    missing: Literal["error", "drop"] = "error"
    drop_duplicates: bool = True


class GroupedPairingSpec(_Base):
    rule: Literal["grouped"] = "grouped"
    group: str | None = None
    x_group: str | None = None
    y_group: str | None = None

    @model_validator(mode="after")
    def _check(self):
        if self.group is None and (self.x_group is None or self.y_group is None):
            raise ValueError("grouped pairing needs `group`, or both `x_group` and `y_group`")
        if self.group is not None and (self.x_group is not None or self.y_group is not None):
            raise ValueError("grouped pairing: give `group` or `x_group`/`y_group`, not both")
        return self

    @property
    def columns(self) -> tuple[str, str]:
        if self.group is not None:
            return self.group, self.group
        return self.x_group, self.y_group  # type: ignore[return-value]


PairingSpec = Annotated[
    Union[AlignedPairingSpec, JoinPairingSpec, GroupedPairingSpec], Field(discriminator="rule")
]
_ADAPTER: TypeAdapter = TypeAdapter(PairingSpec)


def parse_pairing_spec(obj) -> AlignedPairingSpec | JoinPairingSpec | GroupedPairingSpec:
    """Validate a dict (e.g. from YAML) into one of the pairing spec models."""
    if isinstance(obj, (AlignedPairingSpec, JoinPairingSpec, GroupedPairingSpec)):
        return obj
    return _ADAPTER.validate_python(obj)


@dataclass
class Pairing:
    """Joint samples of (x, y): sample i is (matrix row x_rows[i] of x.matrix, y_rows[i] of
    y.matrix). ``info``: rule, seed, and counts of matched ids/groups."""

    x_name: str
    y_name: str
    x_rows: np.ndarray
    y_rows: np.ndarray
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.x_rows.size)


def _unique_positions(v: "Variable", what: str):
    import pandas as pd

    idx = pd.Index(v.ids)
    if not idx.is_unique:
        dup = idx[idx.duplicated()].unique()
        raise DataError(f"{what}: variable {v.name!r} has duplicated row ids "
                        f"({len(dup)}, e.g. {first_few(dup)}); cannot match by id")
    return idx


def _aligned(x, y, spec: AlignedPairingSpec, what: str):
    if spec.on == "position":
        if x.n_rows != y.n_rows:
            raise DataError(f"{what}: aligned pairing needs equal row counts, got "
                            f"{x.name!r}: {x.n_rows} and {y.name!r}: {y.n_rows}")
        return x.rows.copy(), y.rows.copy(), {"matched": x.n_rows}
    xi = _unique_positions(x, what)
    yi = _unique_positions(y, what)
    pos = yi.get_indexer(xi)
    keep = pos >= 0
    info = {"matched_ids": int(keep.sum()), "x_unmatched": int((~keep).sum()),
            "y_unmatched": int(y.n_rows - keep.sum())}
    return x.rows[keep], y.rows[pos[keep]], info


def _read_table(path: str, columns: list[str], what: str):
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what}: pair table {p} does not exist")
    suf = "".join(p.suffixes[-2:]).lower() if p.suffix.lower() == ".gz" else p.suffix.lower()
    try:
        if suf.startswith(".parquet") or suf == ".pq":
            import pyarrow.parquet as pq

            schema_names = pq.read_schema(p).names
            miss = [c for c in columns if c not in schema_names]
            if miss:
                raise DataError(f"{what}: pair table {p} has no column(s) {miss}; columns: "
                                f"{schema_names}")
            df = pd.read_parquet(p, columns=columns)
        else:
            sep = "\t" if suf.startswith(".tsv") or suf.startswith(".txt") else ","
            df = pd.read_csv(p, sep=sep, dtype=str, keep_default_na=True)
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{what}: cannot read pair table {p} ({type(exc).__name__}: {exc})") from exc
    miss = [c for c in columns if c not in df.columns]
    if miss:
        raise DataError(f"{what}: pair table {p} has no column(s) {miss}; columns: "
                        f"{list(df.columns)}")
    return df[columns]


def _join(x, y, spec: JoinPairingSpec, what: str):
    df = _read_table(spec.table, [spec.x_column, spec.y_column], what)
    n_table = len(df)
    df = df.dropna()
    n_na = n_table - len(df)
    xs = df[spec.x_column].astype(str).str.strip().to_numpy()
    ys = df[spec.y_column].astype(str).str.strip().to_numpy()
    xi = _unique_positions(x, what)
    yi = _unique_positions(y, what)
    px = xi.get_indexer(xs)
    py = yi.get_indexer(ys)
    info = {"table_rows": n_table, "table_rows_with_missing_values": n_na}
    for side, var, col, pos, vals in (("x", x, spec.x_column, px, xs), ("y", y, spec.y_column, py, ys)):
        bad = pos < 0
        info[f"{side}_ids_missing"] = int(len(set(vals[bad].tolist())))
        if bad.any() and spec.missing == "error":
            miss = list(dict.fromkeys(vals[bad].tolist()))
            raise DataError(
                f"{what}: {len(miss)} distinct ids in column {col!r} of pair table {spec.table} "
                f"({int(bad.sum())} table rows) are not among the rows of variable {var.name!r} "
                f"(matrix {var.matrix!r}); first missing: {first_few(miss)}. "
                "Use missing='drop' to skip those table rows."
            )
    keep = (px >= 0) & (py >= 0)
    info["table_rows_dropped_missing_ids"] = int((~keep).sum())
    px, py = px[keep], py[keep]
    if spec.drop_duplicates and px.size:
        key = px.astype(np.int64) * (y.n_rows + 1) + py
        _, first = np.unique(key, return_index=True)
        first.sort()
        info["duplicate_pairs_dropped"] = int(px.size - first.size)
        px, py = px[first], py[first]
    info["matched_pairs"] = int(px.size)
    info["distinct_x"] = int(np.unique(px).size)
    info["distinct_y"] = int(np.unique(py).size)
    return x.rows[px], y.rows[py], info


def _group_labels(store: "Store", v: "Variable", column: str, what: str) -> np.ndarray:
    obs = store.matrix(v.matrix).obs
    if column not in obs.columns:
        raise DataError(f"{what}: unknown obs column {column!r} for variable {v.name!r} "
                        f"(matrix {v.matrix!r}); obs columns: {list(obs.columns)}")
    s = obs[column].iloc[v.rows]
    lab = s.astype(object).where(s.notna(), None).to_numpy()
    out = np.array([None if (l is None or (isinstance(l, str) and not l.strip())) else str(l)
                    for l in lab], dtype=object)
    return out


def _groups(labels: np.ndarray):
    """Sorted unique labels (non-missing), and for each: member positions (sorted)."""
    valid = np.flatnonzero(labels != None)  # noqa: E711
    lab = labels[valid].astype(str)
    order = np.argsort(lab, kind="stable")
    slab = lab[order]
    uniq, start, count = np.unique(slab, return_index=True, return_counts=True)
    return uniq, valid[order], start, count


def _grouped(store, x, y, spec: GroupedPairingSpec, seed: int, what: str):
    xcol, ycol = spec.columns
    lx = _group_labels(store, x, xcol, what)
    ly = _group_labels(store, y, ycol, what)
    ux, mx, sx, cx = _groups(lx)
    uy, my, sy, cy = _groups(ly)
    shared, ix, iy = np.intersect1d(ux, uy, assume_unique=True, return_indices=True)
    rng = np.random.default_rng(seed)
    # one uniform draw per shared group on each side, in sorted-label order
    u = rng.random((shared.size, 2))
    ax = np.minimum((u[:, 0] * cx[ix]).astype(np.int64), cx[ix] - 1)
    ay = np.minimum((u[:, 1] * cy[iy]).astype(np.int64), cy[iy] - 1)
    px = mx[sx[ix] + ax]
    py = my[sy[iy] + ay]
    xr = x.rows[px]
    yr = y.rows[py]
    dropped = 0
    if x.matrix == y.matrix and shared.size:
        same = np.flatnonzero(xr == yr)
        keep = np.ones(shared.size, dtype=bool)
        if same.size:
            u2 = rng.random(same.size)
            for j, g in enumerate(same):
                members = my[sy[iy[g]]: sy[iy[g]] + cy[iy[g]]]
                others = members[y.rows[members] != xr[g]]
                if others.size == 0:
                    keep[g] = False
                    dropped += 1
                else:
                    yr[g] = y.rows[others[min(int(u2[j] * others.size), others.size - 1)]]
        xr, yr = xr[keep], yr[keep]
    info = {
        "x_groups": int(ux.size), "y_groups": int(uy.size), "shared_groups": int(shared.size),
        "x_rows_without_group": int((lx == None).sum()),  # noqa: E711
        "y_rows_without_group": int((ly == None).sum()),  # noqa: E711
        "x_rows_in_shared_groups": int(cx[ix].sum()), "y_rows_in_shared_groups": int(cy[iy].sum()),
        "dropped_self_pairs": dropped,
        "possible_pairings_log10": float(np.sum(np.log10(cx[ix].astype(float)))
                                         + np.sum(np.log10(cy[iy].astype(float)))),
    }
    return xr, yr, info


def make_pairing(
    store: "Store",
    x: "Variable",
    y: "Variable",
    spec,
    seed: int = 0,
    *,
    min_samples: int | None = None,
) -> Pairing:
    """Build the joint samples of (x, y) under ``spec`` (a PairingSpec model or dict).

    ``seed`` drives the grouped rule's draws (aligned and join ignore it). Returns a Pairing
    with matrix row indices, ``n`` and ``info`` (rule, seed, counts). With ``min_samples``,
    raises DataError when fewer joint samples result.
    """
    spec = parse_pairing_spec(spec)
    what = f"pairing ({x.name!r}, {y.name!r}; rule {spec.rule!r})"
    if spec.rule == "aligned":
        xr, yr, info = _aligned(x, y, spec, what)
    elif spec.rule == "join":
        xr, yr, info = _join(x, y, spec, what)
    elif spec.rule == "grouped":
        xr, yr, info = _grouped(store, x, y, spec, int(seed), what)
    else:  # pragma: no cover - pydantic guards this
        raise DataError(f"{what}: unknown rule {spec.rule!r}")
    info = {"rule": spec.rule, "seed": int(seed), "n": int(xr.size), **info}
    if xr.size == 0:
        raise DataError(f"{what}: no joint samples ({info})")
    p = Pairing(x_name=x.name, y_name=y.name, x_rows=np.asarray(xr, dtype=np.int64),
                y_rows=np.asarray(yr, dtype=np.int64), info=info)
    if min_samples is not None:
        check_min_samples(p.n, min_samples, what)
    return p


def read_pair(
    store: "Store",
    x: "Variable",
    y: "Variable",
    pairing: Pairing,
    *,
    min_samples: int = DEFAULT_MIN_SAMPLES,
    check_nonfinite: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the joint samples: X (n, x.n_features) and Y (n, y.n_features), float32.

    Raises DataError when n < ``min_samples`` or when a row holds NaN/inf (naming the
    variable, the matrix rows and their ids).
    """
    what = f"pairing ({x.name!r}, {y.name!r})"
    check_min_samples(pairing.n, min_samples, what)
    mx = store.matrix(x.matrix)
    my = store.matrix(y.matrix)
    X = mx.read_rows(pairing.x_rows, columns=x.columns)
    Y = my.read_rows(pairing.y_rows, columns=y.columns)
    if check_nonfinite:
        for arr, var, rows, m in ((X, x, pairing.x_rows, mx), (Y, y, pairing.y_rows, my)):
            bad = ~np.isfinite(arr).all(axis=1)
            if bad.any():
                br = np.unique(rows[bad])
                ids = m.ids[br]
                raise DataError(
                    f"{what}: variable {var.name!r} (matrix {var.matrix!r}) has {br.size} rows "
                    f"with NaN or inf; first matrix rows: {first_few(br)}, ids: {first_few(ids)}"
                )
    return X, Y
