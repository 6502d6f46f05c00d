"""Embedding tables: Parquet (pyarrow), CSV and TSV (pandas).

A table holds an optional id column plus either numeric vector columns or one list column
(Parquet list type, or ``"[0.1, 0.2, ...]"`` text in CSV). It is streamed in batches of 8192
rows into a raw float32 spool file next to the input (or in ``spool_dir``), which is then read
with ``os.preadv`` (:class:`.base.PreadArray`); the spool is removed by ``close()``. The other
columns become ``obs`` (an in-memory DataFrame). Auto-detection guards against a numeric
column with a stray string (:class:`_StrayCheck`).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np

from ..validation import DataError, check_real, describe_exc, first_few, to_float32
from .base import ArraySource, PreadArray, _rm


def _parse_vector_strings(vals: np.ndarray, what: str) -> np.ndarray:
    """Text vectors (``"[0.1, 0.2]"`` or ``"0.1 0.2"``) or sequences, one per row, as float32
    ``(len(vals), d)``; DataError for an empty vector or vectors of different lengths."""
    rows = []
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise DataError(f"{what}: row {i} has an empty vector")
        if isinstance(v, str):
            rows.append(np.array(v.strip().strip("[]").replace(",", " ").split(), dtype=np.float32))
        else:
            rows.append(np.asarray(v, dtype=np.float32))
    lens = {r.size for r in rows}
    if len(lens) > 1:
        raise DataError(f"{what}: vectors of different lengths {sorted(lens)[:5]}")
    return np.stack(rows) if rows else np.zeros((0, 0), np.float32)


class _Spool:
    """Append float32 row blocks to a raw (headerless) file; ``finish()`` closes it and returns
    a :class:`.base.PreadArray` ``(n, d)`` over it (not a memory map), or an empty float32
    ``(0, d)`` array when no rows were added."""

    def __init__(self, spool_dir: Path, tag: str) -> None:
        spool_dir.mkdir(parents=True, exist_ok=True)
        self.path = spool_dir / f"{tag}-{os.getpid()}-{id(self)}.f32"
        self.f = open(self.path, "wb")
        self.n = 0
        self.d: int | None = None

    def add(self, block: np.ndarray, what: str) -> None:
        block = np.ascontiguousarray(block, dtype=np.float32)
        if self.d is None:
            self.d = block.shape[1]
        elif block.shape[1] != self.d:
            raise DataError(f"{what}: vectors of length {block.shape[1]} after rows of length {self.d}")
        self.f.write(block.tobytes())
        self.n += block.shape[0]

    def finish(self) -> np.ndarray:
        self.f.close()
        if self.n == 0:
            return np.zeros((0, self.d or 1), dtype=np.float32)
        return PreadArray(self.path, 0, np.float32, (self.n, self.d))


def _split_columns(names: list[str], types: dict[str, str], id_column: str | None,
                   vector_columns, obs_columns, what: str):
    if id_column is not None and id_column not in names:
        raise DataError(f"{what}: unknown id column {id_column!r}; columns: {names[:20]}")
    if isinstance(vector_columns, str):
        vector_columns = [vector_columns]
    if vector_columns is None:
        lists = [c for c in names if types[c] == "list" and c != id_column]
        if len(lists) == 1:
            vector_columns = lists
        else:
            excl = set([id_column] + list(obs_columns or []))
            vector_columns = [c for c in names if types[c] == "num" and c not in excl]
            if not vector_columns:
                raise DataError(f"{what}: no numeric vector columns found; pass vector_columns "
                                f"(columns: {names[:20]})")
    miss = [c for c in vector_columns if c not in names]
    if miss:
        raise DataError(f"{what}: unknown vector column(s) {first_few(miss)}; columns: {names[:20]}")
    if obs_columns is None:
        obs_columns = [c for c in names if c not in vector_columns and c != id_column]
    else:
        miss = [c for c in obs_columns if c not in names]
        if miss:
            raise DataError(f"{what}: unknown obs column(s) {miss}; columns: {names[:20]}")
    return list(vector_columns), list(obs_columns)


STRAY_NUMERIC_FRACTION = 0.95  # a text column with at least this share of numbers is numeric


def _complex_str(v: str) -> bool:
    """True when ``v`` is the text of a complex number such as ``(1+2j)`` or ``3-1j``."""
    try:
        complex(v.strip().replace(" ", ""))
    except (ValueError, TypeError):
        return False
    return "j" in v.lower()


def _as_numbers(values, column: str, row0: int, what: str) -> np.ndarray:
    """One vector column's values as a numeric array; DataError naming the column and the
    first rows that hold text (or complex numbers) instead of real numbers."""
    import pandas as pd

    v = np.asarray(values)
    if v.dtype.kind == "c":
        check_real(v.dtype, f"{what}: column {column!r}")
    if v.dtype.kind in "fiub":
        return v
    s = pd.Series(v, dtype=object)
    num = pd.to_numeric(s, errors="coerce")
    bad = np.flatnonzero(num.isna().to_numpy() & s.notna().to_numpy())
    if bad.size:
        vals = [s.iloc[i] for i in bad[:5]]
        if all(isinstance(x, str) and _complex_str(x) for x in vals):
            raise DataError(f"{what}: column {column!r} holds complex numbers (e.g. row "
                            f"{row0 + bad[0]}: {vals[0]!r}); the store keeps real float32 numbers "
                            "only: split real and imaginary parts into two columns")
        raise DataError(f"{what}: column {column!r} has {bad.size} non-numeric values in rows "
                        f"{first_few((bad + row0).tolist())}, values {first_few(vals)}; fix them "
                        "or leave the column out of vector_columns")
    return num.to_numpy(dtype=np.float64)


class _StrayCheck:
    """Auto-detect guard for tables: a text column that is mostly numbers is a mistake.

    When the user did not name the vector columns, a numeric column with a stray string
    (``"n/a"`` in row 57) is read as text and would silently become row metadata. Over all
    batches this counts, per text column, the non-null values that parse as numbers; at the end,
    a column with at least ``STRAY_NUMERIC_FRACTION`` (95 %) numbers but not all of them raises a
    DataError naming the column and the first rows that did not parse. A text column of complex
    numbers raises too. A column of text that all parses as numbers stays metadata (in Parquet
    its writer chose a text type; in CSV pandas already reads it as a number).
    """

    def __init__(self, columns: Sequence[str], what: str) -> None:
        self.what = what
        self.n = {c: 0 for c in columns}
        self.ok = {c: 0 for c in columns}
        self.bad: dict[str, list] = {c: [] for c in columns}
        self.maybe_complex = {c: True for c in columns}

    def add(self, frame, row0: int) -> None:
        import pandas as pd

        for c in self.n:
            s = frame[c]
            nn = s.notna().to_numpy()
            if not nn.any():
                continue
            text = s[nn].astype(str)
            num = pd.to_numeric(text.str.strip(), errors="coerce").notna().to_numpy()
            self.n[c] += int(nn.sum())
            self.ok[c] += int(num.sum())
            pos = np.flatnonzero(nn)[~num]
            for i in pos[:max(0, 5 - len(self.bad[c]))]:
                self.bad[c].append((row0 + int(i), s.iloc[int(i)]))
            if self.maybe_complex[c] and pos.size:
                self.maybe_complex[c] = all(_complex_str(str(s.iloc[int(i)])) for i in pos)

    def finish(self) -> None:
        for c, n in self.n.items():
            if not n or self.ok[c] == n:
                continue
            rows = [r for r, _ in self.bad[c]]
            vals = [v for _, v in self.bad[c]]
            if self.maybe_complex[c]:
                raise DataError(f"{self.what}: column {c!r} holds complex numbers (e.g. row "
                                f"{rows[0]}: {vals[0]!r}); the store keeps real float32 numbers "
                                "only: split real and imaginary parts into two columns")
            if self.ok[c] >= STRAY_NUMERIC_FRACTION * n:
                raise DataError(
                    f"{self.what}: column {c!r} looks numeric ({self.ok[c]} of {n} values are "
                    f"numbers) but {n - self.ok[c]} are not, in rows {first_few(rows)}: "
                    f"{first_few(vals)}; it would silently become row metadata instead of a "
                    "feature. Fix those values, or name the columns: vector_columns=[...] "
                    "(--vector-columns) and obs_columns=[...] (--obs-columns)")


def _spool_table(batches, path: Path, kind: str, what: str, spool_dir: Path,
                 check: "_StrayCheck | None" = None) -> "ArraySource":
    """Spool ``(block (rows, d) float32, ids (rows,) or None, obs DataFrame or None)`` batches of
    a table to a temporary raw float32 file (see :class:`_Spool`) and wrap it as an
    :class:`.base.ArraySource` whose ``ids`` is a str array and ``obs`` one DataFrame. A read
    error removes the spool and becomes a :class:`DataError` naming the file;
    ``check.finish()`` runs at the end."""
    import pandas as pd

    spool = _Spool(spool_dir, kind)
    ids, obs_parts = [], []
    try:
        for block, id_chunk, obs_chunk in batches:
            spool.add(block, what)
            if id_chunk is not None:
                ids.append(id_chunk)
            if obs_chunk is not None:
                obs_parts.append(obs_chunk)
        if check is not None:
            check.finish()
    except DataError:
        spool.finish(); _rm(spool.path)
        raise
    except Exception as exc:
        spool.finish(); _rm(spool.path)
        raise DataError(f"{what}: reading failed ({describe_exc(exc)}); the file may be "
                        "truncated or corrupt") from exc
    arr = spool.finish()
    obs = pd.concat(obs_parts, ignore_index=True) if obs_parts else None
    return ArraySource(arr, path, kind, ids=np.concatenate(ids) if ids else None,
                       obs=obs, cleanup=[spool.path])


def _stray_columns(names, types, id_column, vector_columns, obs_columns, text_types) -> list[str]:
    """Text columns to guard in auto-detect mode (not named by the user as id or obs)."""
    if vector_columns is not None:
        return []
    named = set([id_column] + list(obs_columns or []))
    return [c for c in names if types[c] == "other" and c not in named and c in text_types]


def _parquet_types(schema) -> tuple[dict[str, str], set[str]]:
    import pyarrow as pa

    types, text = {}, set()
    for f in schema:
        t = f.type
        if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
            types[f.name] = "list"
        elif pa.types.is_integer(t) or pa.types.is_floating(t):
            types[f.name] = "num"
        else:
            types[f.name] = "other"
            if pa.types.is_string(t) or pa.types.is_large_string(t) or \
                    (pa.types.is_dictionary(t) and pa.types.is_string(t.value_type)):
                text.add(f.name)
    return types, text


def _parquet_list_block(col, name: str, row0: int, what: str) -> np.ndarray:
    import pyarrow.compute as pc

    if col.null_count:
        bad = np.flatnonzero(col.is_null().to_numpy(zero_copy_only=False)) + row0
        raise DataError(f"{what}: {bad.size} rows have a null vector in column "
                        f"{name!r}; first rows: {first_few(bad)}")
    lens = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if lens.size and (lens != lens[0]).any():
        bad = np.flatnonzero(lens != lens[0]) + row0
        raise DataError(f"{what}: vectors in column {name!r} differ in length "
                        f"({lens[0]} vs {lens[lens != lens[0]][0]}); first rows: "
                        f"{first_few(bad)}")
    flat = _as_numbers(pc.list_flatten(col).to_numpy(zero_copy_only=False), name, row0, what)
    return flat.reshape(len(col), -1)


def _open_parquet(path: Path, id_column, vector_columns, obs_columns, spool_dir: Path) -> ArraySource:
    """Parquet table as an :class:`.base.ArraySource` over a float32 spool: page checksums verified where the file has them, each row group's row
    count checked against the file metadata, decode errors named by file and row group."""
    import pyarrow.parquet as pq

    what = f"parquet input {path}"
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
        meta = pf.metadata
        schema = pf.schema_arrow
    except Exception as exc:
        raise DataError(f"{what}: cannot read ({describe_exc(exc)}); the file may be "
                        "truncated or corrupt") from exc
    names = list(schema.names)
    types, text = _parquet_types(schema)
    vcols, ocols = _split_columns(names, types, id_column, vector_columns, obs_columns, what)
    check = _StrayCheck(_stray_columns(names, types, id_column, vector_columns, obs_columns,
                                       text), what)
    is_list = len(vcols) == 1 and types[vcols[0]] == "list"

    def convert(batch, row0: int):
        if is_list:
            block = _parquet_list_block(batch.column(vcols[0]), vcols[0], row0, what)
            cols = [f"{vcols[0]}[{j}]" for j in range(block.shape[1])]
        else:
            block = np.column_stack([
                _as_numbers(batch.column(c).to_numpy(zero_copy_only=False), c, row0, what)
                for c in vcols])
            cols = vcols
        ids = None if id_column is None else \
            batch.column(id_column).to_numpy(zero_copy_only=False).astype(str)
        if check.n:
            check.add(batch.select(list(check.n)).to_pandas(), row0)
        return (to_float32(block, what, row0, cols, ids), ids,
                batch.select(ocols).to_pandas() if ocols else None)

    def batches():
        row0 = 0
        for rg in range(pf.num_row_groups):
            expected = meta.row_group(rg).num_rows
            got = 0
            try:
                for batch in pf.iter_batches(batch_size=8192, row_groups=[rg]):
                    out = convert(batch, row0 + got)
                    got += len(batch)
                    yield out
            except DataError:
                raise
            except Exception as exc:
                raise DataError(f"{what}: row group {rg} (rows {row0}..{row0 + expected - 1}) "
                                f"cannot be decoded ({describe_exc(exc)}); the file is "
                                "corrupt or truncated") from exc
            if got != expected:
                raise DataError(f"{what}: row group {rg} gave {got} rows but the file metadata "
                                f"says {expected}; the file is corrupt")
            row0 += got
        if row0 != meta.num_rows:
            raise DataError(f"{what}: read {row0} rows but the file metadata says "
                            f"{meta.num_rows}; the file is corrupt")

    src = _spool_table(batches(), path, "parquet", what, spool_dir, check)
    src.key = ",".join(vcols) if len(vcols) <= 4 else f"{vcols[0]}..{vcols[-1]} ({len(vcols)} columns)"
    return src


def _csv_types(head) -> tuple[dict[str, str], set[str]]:
    import pandas as pd

    types, text = {}, set()
    for c in head.columns:
        s = head[c]
        if pd.api.types.is_numeric_dtype(s):
            types[str(c)] = "num"
        elif s.dtype == object and len(s.dropna()) and \
                s.dropna().astype(str).str.strip().str.startswith("[").all():
            types[str(c)] = "list"
        else:
            types[str(c)] = "other"
            if s.dtype == object:
                text.add(str(c))
    return types, text


def _open_csv(path: Path, sep: str, id_column, vector_columns, obs_columns, spool_dir: Path) -> ArraySource:
    """CSV/TSV table as an :class:`.base.ArraySource` over a float32 spool, streamed in chunks; parse errors and text in vector columns are named by
    file, column and row."""
    import pandas as pd

    what = f"{'tsv' if sep == chr(9) else 'csv'} input {path}"
    try:
        head = pd.read_csv(path, sep=sep, nrows=50)
    except Exception as exc:
        raise DataError(f"{what}: cannot read ({describe_exc(exc)})") from exc
    names = [str(c) for c in head.columns]
    types, text = _csv_types(head)
    vcols, ocols = _split_columns(names, types, id_column, vector_columns, obs_columns, what)
    check = _StrayCheck(_stray_columns(names, types, id_column, vector_columns, obs_columns,
                                       text), what)
    dtypes = {c: str for c in set(ocols) | set(check.n)}
    if id_column is not None:
        dtypes[id_column] = str
    is_list = len(vcols) == 1 and types[vcols[0]] == "list"

    def convert(chunk, row0: int):
        if is_list:
            block = _parse_vector_strings(chunk[vcols[0]].to_numpy(), what)
            cols = [f"{vcols[0]}[{j}]" for j in range(block.shape[1])]
        else:
            block = np.column_stack([_as_numbers(chunk[c].to_numpy(), c, row0, what)
                                     for c in vcols])
            cols = vcols
        ids = None if id_column is None else chunk[id_column].astype(str).to_numpy()
        if check.n:
            check.add(chunk, row0)
        return (to_float32(block, what, row0, cols, ids), ids,
                chunk[ocols].reset_index(drop=True) if ocols else None)

    def batches():
        row0 = 0
        reader = pd.read_csv(path, sep=sep, chunksize=8192, dtype=dtypes)
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            except Exception as exc:
                raise DataError(f"{what}: cannot parse the file after data row {row0} "
                                f"({describe_exc(exc)}); the file may be truncated or "
                                "corrupt") from exc
            yield convert(chunk, row0)
            row0 += len(chunk)

    return _spool_table(batches(), path, "csv" if sep == "," else "tsv", what, spool_dir, check)

