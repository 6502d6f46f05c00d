"""Variables: named (rows x features) views of a stored matrix.

A variable is one of, or a combination of (applied in this order):

* the whole matrix;
* a gather of rows by an id list (``ids``: a list, or a path to a text file with one id per
  line, or a CSV/TSV file whose column ``id`` -- or first column -- holds the ids), in the
  list's order;
* a row subset by an obs filter (``where``, pandas-query-like, evaluated safely: see
  :mod:`.query`), keeping the order;
* a column block ``columns=(start, stop)`` (half-open).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from .query import evaluate_filter
from .validation import DataError

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store

__all__ = ["VariableSpec", "Variable", "resolve_variable", "read_id_list"]


class VariableSpec(BaseModel):
    """A named view of a stored matrix (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    matrix: str
    where: str | None = None
    ids: list[str] | str | None = None
    columns: tuple[int, int] | None = None

    @field_validator("columns")
    @classmethod
    def _check_columns(cls, v):
        if v is not None and not (0 <= v[0] < v[1]):
            raise ValueError(f"columns must be [start, stop) with 0 <= start < stop, got {v}")
        return v

    @field_validator("where")
    @classmethod
    def _check_where(cls, v):
        if v is not None and not v.strip():
            return None
        return v

    @model_validator(mode="after")
    def _check_name(self):
        if not self.name:
            raise ValueError("variable name must not be empty")
        return self


@dataclass
class Variable:
    """A resolved variable: matrix row indices and the column block, ready to read.

    ``rows`` (n,) int64 matrix row indices; ``ids`` (n,) str row ids; ``n_features`` number of
    columns after the column block; ``columns`` the block (None: all columns).
    """

    name: str
    matrix: str
    rows: np.ndarray
    ids: np.ndarray
    n_features: int
    columns: tuple[int, int] | None = None
    info: dict = field(default_factory=dict)

    @property
    def n_rows(self) -> int:
        return int(self.rows.size)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n_rows, self.n_features)

    def read(self, store: "Store") -> np.ndarray:
        """All rows of the variable, float32 (n_rows, n_features)."""
        return store.matrix(self.matrix).read_rows(self.rows, columns=self.columns)


def read_id_list(path: str | os.PathLike, what: str) -> list[str]:
    """Read ids from a text file (one per line) or CSV/TSV (column ``id``, else the first)."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what}: id list file {p} does not exist")
    suffix = p.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            df = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str)
            colname = "id" if "id" in df.columns else df.columns[0]
            vals = df[colname].dropna().astype(str).str.strip().tolist()
        elif suffix == ".parquet":
            df = pd.read_parquet(p)
            colname = "id" if "id" in df.columns else df.columns[0]
            vals = df[colname].dropna().astype(str).tolist()
        else:
            with open(p) as f:
                vals = [line.strip() for line in f]
            vals = [v for v in vals if v and not v.startswith("#")]
    except DataError:
        raise
    except Exception as exc:
        raise DataError(f"{what}: cannot read id list {p} ({exc})") from exc
    return vals


def resolve_variable(store: "Store", spec: VariableSpec) -> "Variable":
    """Resolve a VariableSpec against a store into matrix row indices.

    Raises DataError for an unknown matrix or obs column, ids missing from the matrix (count
    and first few), a filter selecting nothing, or a column block outside the matrix.
    """
    what = f"variable {spec.name!r} (matrix {spec.matrix!r})"
    if spec.matrix not in store.matrix_names:
        raise DataError(f"variable {spec.name!r}: unknown matrix {spec.matrix!r} in store "
                        f"{store.path}; available: {store.matrix_names}")
    m = store.matrix(spec.matrix)
    n, d = m.shape
    info: dict = {"matrix_rows": n}
    if spec.ids is not None:
        ids = read_id_list(spec.ids, what) if isinstance(spec.ids, str) else list(spec.ids)
        if not ids:
            raise DataError(f"{what}: the id list is empty")
        rows = m.rows_for_ids(ids, what=what)
        info["ids_requested"] = len(ids)
    else:
        rows = np.arange(n, dtype=np.int64)
    if spec.where is not None:
        obs = m.obs
        sub = obs.iloc[rows] if spec.ids is not None else obs
        mask = evaluate_filter(sub, spec.where, what)
        if not mask.any():
            raise DataError(f"{what}: filter {spec.where!r} selects no rows (of {rows.size})")
        rows = rows[mask]
        info["where_selected"] = int(mask.sum())
    cols = spec.columns
    if cols is not None:
        if cols[1] > d:
            raise DataError(f"{what}: column block [{cols[0]}, {cols[1]}) outside the matrix's "
                            f"{d} columns")
        n_feat = cols[1] - cols[0]
        if cols == (0, d):
            cols = None
    else:
        n_feat = d
    if rows.size == 0:
        raise DataError(f"{what}: selects no rows")
    all_ids = m.ids
    return Variable(name=spec.name, matrix=spec.matrix, rows=rows.astype(np.int64),
                    ids=all_ids[rows], n_features=n_feat, columns=cols, info=info)

