"""Append-only, atomic result store of a study, keyed by task.

Layout under the study's output directory::

    study.json                  config fingerprint + the config itself (resume safety)
    tasks/part-<batch>-<h>.parquet   one file per finished batch; h = hash of its task keys
    pmi/<x>~<y>/r<rep>_<obs|sJ>.zarr  per-task pMI (bits, NaN on training rows) + row indices
    pairs.parquet, summary.json, heatmap.png, report.html   (aggregation)

Writes go to a hidden temporary name in the same directory and are renamed into place
(``os.replace``, atomic on POSIX). A batch retried after its part was written writes the same
file name again (same keys -> same name), so nothing is duplicated; readers still drop any
repeated key (first part in name order wins) and report it.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from lmi_distributed.errors import ConfigError

__all__ = ["ResultStore", "part_name"]

TASK_COLUMNS = [
    "key", "pair", "x", "y", "replicate", "kind", "shuffle", "seed", "n", "n_test",
    "mi", "epochs", "best_epoch", "latent_null", "batch_id", "worker", "device", "attempt", "wall_s",
]


def part_name(batch_id: str, keys: Iterable[str]) -> str:
    h = hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=6).hexdigest()
    return f"part-{batch_id}-{h}.parquet"


def _pmi_rel(key: str) -> str:
    pair, rep, kind = key.split("/")
    return f"{pair}/{rep}_{kind}.zarr"


class ResultStore:
    """The per-task result store of one study output directory."""

    def __init__(self, out_dir: str | os.PathLike):
        self.root = Path(out_dir)
        self.tasks_dir = self.root / "tasks"
        self.pmi_dir = self.root / "pmi"

    # ------------------------------------------------------------ study metadata
    def init(self, config: Any, *, overwrite: bool = False) -> bool:
        """Create the layout; check the fingerprint of an existing study.

        Returns True when resuming a study with results already present. Raises ConfigError when
        the output holds results of a study with different numbers-changing settings (unless
        ``overwrite``, which deletes them).
        """
        meta_path = self.root / "study.json"
        fp = config.fingerprint()
        resuming = False
        if meta_path.exists():
            old = json.loads(meta_path.read_text())
            if old.get("fingerprint") != fp:
                if not overwrite:
                    raise ConfigError(
                        f"output.path: {self.root} holds results of a study with other seed/data/"
                        f"variables/pairing/estimator settings (fingerprint {old.get('fingerprint')} != {fp}); "
                        "choose another output.path or pass --overwrite")
                self.clear()
            else:
                resuming = any(self.tasks_dir.glob("part-*.parquet"))
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.pmi_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.tasks_dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)
        for tmp in self.pmi_dir.glob("*/.tmp-*"):  # pMI of a batch killed mid-write
            shutil.rmtree(tmp, ignore_errors=True)
        meta = {"fingerprint": fp, "name": config.name, "config": config.model_dump(mode="json")}
        self._atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        return resuming

    def clear(self) -> None:
        for p in (self.tasks_dir, self.pmi_dir):
            if p.exists():
                shutil.rmtree(p)
        for name in ("pairs.parquet", "summary.json", "heatmap.png", "report.html", "study.json"):
            (self.root / name).unlink(missing_ok=True)

    @staticmethod
    def _atomic_write_text(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
        tmp.write_text(text)
        os.replace(tmp, path)

    # ------------------------------------------------------------------- writes
    def write_part(self, batch_id: str, records: list[dict]) -> Path | None:
        """Atomically write one batch's task records as a Parquet part; returns its path."""
        if not records:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        rows = [{c: r.get(c) for c in TASK_COLUMNS} for r in records]
        for r in rows:
            ln = r.get("latent_null")
            r["latent_null"] = [float(v) for v in ln] if ln is not None else []
        schema = pa.schema([
            ("key", pa.string()), ("pair", pa.string()), ("x", pa.string()), ("y", pa.string()),
            ("replicate", pa.int64()), ("kind", pa.string()), ("shuffle", pa.int64()), ("seed", pa.int64()),
            ("n", pa.int64()), ("n_test", pa.int64()), ("mi", pa.float64()), ("epochs", pa.int64()),
            ("best_epoch", pa.int64()), ("latent_null", pa.list_(pa.float64())), ("batch_id", pa.string()),
            ("worker", pa.string()), ("device", pa.string()), ("attempt", pa.int64()), ("wall_s", pa.float64()),
        ])
        table = pa.Table.from_pylist(rows, schema=schema)
        final = self.tasks_dir / part_name(batch_id, [r["key"] for r in rows])
        tmp = self.tasks_dir / f".tmp-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp)
        os.replace(tmp, final)
        return final

    def pmi_path(self, key: str) -> Path:
        return self.pmi_dir / _pmi_rel(key)

    def write_pmi(self, key: str, pmi: np.ndarray, x_rows: np.ndarray | None = None,
                  y_rows: np.ndarray | None = None) -> Path:
        """Atomically write one task's pMI (n,) bits (NaN on training rows) and its matrix rows."""
        import zarr

        final = self.pmi_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():  # a retried batch: same seeds, same numbers; keep the first
            return final
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}.zarr"
        g = zarr.open_group(str(tmp), mode="w")
        arrays = {"pmi": np.asarray(pmi, dtype=np.float64)}
        if x_rows is not None:
            arrays["x_rows"] = np.asarray(x_rows, dtype=np.int64)
        if y_rows is not None:
            arrays["y_rows"] = np.asarray(y_rows, dtype=np.int64)
        for name, a in arrays.items():
            z = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=(max(1, a.shape[0]),))
            z[:] = a
        g.attrs["key"] = key
        g.attrs["units"] = "bits"
        try:
            os.replace(tmp, final)
        except OSError:  # another attempt won the race (directory exists and is not empty)
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def read_pmi(self, key: str) -> dict[str, np.ndarray]:
        import zarr

        g = zarr.open_group(str(self.pmi_path(key)), mode="r")
        return {name: g[name][:] for name in ("pmi", "x_rows", "y_rows") if name in g}

    # -------------------------------------------------------------------- reads
    def parts(self) -> list[Path]:
        return sorted(self.tasks_dir.glob("part-*.parquet")) if self.tasks_dir.exists() else []

    def finished_keys(self) -> set[str]:
        import pyarrow.parquet as pq

        keys: set[str] = set()
        for p in self.parts():
            keys.update(pq.read_table(p, columns=["key"]).column("key").to_pylist())
        return keys

    def key_counts(self) -> dict[str, int]:
        """How many parts hold each key (1 everywhere when nothing was duplicated)."""
        import pyarrow.parquet as pq

        counts: dict[str, int] = {}
        for p in self.parts():
            for k in pq.read_table(p, columns=["key"]).column("key").to_pylist():
                counts[k] = counts.get(k, 0) + 1
        return counts

    def read_tasks(self):
        """All task records (pandas DataFrame), one row per key, sorted by key."""
        import pandas as pd
        import pyarrow.parquet as pq

        frames = [pq.read_table(p).to_pandas() for p in self.parts()]
        if not frames:
            return pd.DataFrame(columns=TASK_COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        df = df.drop_duplicates(subset="key", keep="first")
        return df.sort_values("key", kind="stable").reset_index(drop=True)
