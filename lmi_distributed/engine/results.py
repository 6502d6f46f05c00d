"""Append-only, atomic result store of a study, keyed by task.

Layout under the study's output directory::

    study.json                  config fingerprint, data identity, study fingerprint + the config
    tasks/part-<batch>-<h>.parquet   one file per finished batch; h = hash of its task keys
    pmi/<x>~<y>/r<rep>_<obs|sJ>.zarr  per-task pMI (bits, NaN on training rows) + row indices
    attribution/<x>~<y>/r<rep>_obs.npz  per-task held-out R^2 per dimension (estimator.attribution)
    damaged/<utc time>-<name>   damaged or foreign files moved aside (never read again)
    pairs.parquet, summary.json, heatmap.png, report.html   (aggregation)

Writes go to a hidden temporary name in the same directory and are renamed into place
(``os.replace``, atomic on POSIX). A batch retried after its part was written writes the same
file name again (same keys -> same name), so nothing is duplicated; readers still drop any
repeated key (first part in name order wins) and report it.

Trust: each part carries, in its Parquet key-value metadata, the *study fingerprint* (config
fingerprint + the identity of every input matrix) and a digest of its rows; each pMI group
carries a digest of each array. A part that cannot be read, fails its digest, or carries another
study's fingerprint is *damaged*: readers skip it and ``repair`` moves it into ``damaged/`` so
its tasks are recomputed; ``read_pmi`` raises ``DamagedResultError`` instead of returning the
zeros Zarr reads for a lost chunk.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from lmi_distributed.errors import ConfigError, LMIError

__all__ = ["ResultStore", "part_name", "study_fingerprint", "DamagedResultError", "RepairReport",
           "TASK_COLUMNS"]

TASK_COLUMNS = [
    "key", "pair", "x", "y", "replicate", "kind", "shuffle", "seed", "n", "n_test",
    "mi", "epochs", "best_epoch", "latent_null", "batch_id", "worker", "device", "attempt", "wall_s",
    "status", "detail", "view", "mi_latents", "mi_canonical", "canonical_bias",
]
#: Defaults for columns that parts written before they existed lack. ``view`` "": not recorded (the
#: estimate of a part written before the column existed may be either view's); the view's numbers NaN.
_LEGACY_DEFAULTS = {"status": "ok", "detail": "", "view": "", "mi_latents": float("nan"),
                    "mi_canonical": float("nan"), "canonical_bias": float("nan")}
_META_FP = b"lmi_study_fingerprint"
_META_DIGEST = b"lmi_rows_digest"
_UNREADABLE = "<unreadable>"


class DamagedResultError(LMIError):
    """A stored result (task part, pMI array) that cannot be trusted: unreadable, truncated, or
    not matching the digest written with it."""


def part_name(batch_id: str, keys: Iterable[str]) -> str:
    h = hashlib.blake2b("\n".join(sorted(keys)).encode(), digest_size=6).hexdigest()
    return f"part-{batch_id}-{h}.parquet"


def _pmi_rel(key: str) -> str:
    pair, rep, kind = key.split("/")
    return f"{pair}/{rep}_{kind}.zarr"


def _yaml_value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else (f"{v:g}" if isinstance(v, float) else str(v))


def _paper_hint(config: Any, old_fingerprint: Any) -> str:
    """A sentence for the fingerprint-mismatch error when the stored study is this very config
    with an earlier default estimator -- the paper's (before issue 11 changed three defaults), the
    session-5 default (before ``view`` changed) or the session-7 default (before ``view_bias``) --
    naming the settings that resume it; else ""."""
    from lmi_distributed.estimators.settings import PAPER

    est = getattr(config, "estimator", None)
    if est is None or not hasattr(config, "fingerprint"):
        return ""
    for changes in ({"view_bias": "none"}, {"view": "latents"}, PAPER):
        if all(getattr(est, k, None) == v for k, v in changes.items()):
            continue
        old = config.model_copy(update={"estimator": est.model_copy(update=changes)})
        if old.fingerprint() != old_fingerprint:
            continue
        names = [f"'{k}: {_yaml_value(v)}'" for k, v in changes.items()]
        listed = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        return (f"; it was computed with an earlier default estimator (before {', '.join(changes)} "
                f"changed): add {listed} to the config's estimator block to resume it")
    return ""


def study_fingerprint(config_fingerprint: str, identity: Mapping[str, Any] | None) -> str:
    """Hash of the config fingerprint and the input matrices' identities (uid, shape, provenance).

    Stamped on every part and pMI, so results computed from other data are recognised."""
    blob = json.dumps({"config": config_fingerprint, "data": identity or {}}, sort_keys=True, default=str)
    return hashlib.blake2b(blob.encode(), digest_size=10).hexdigest()


def _rows_digest(rows: list[dict]) -> str:
    """Digest of task rows as decoded (floats by repr, NaN as NaN), independent of the encoding."""
    return hashlib.blake2b(json.dumps(rows, sort_keys=True, default=str).encode(), digest_size=16).hexdigest()


def _array_digest(a: np.ndarray) -> str:
    a = np.ascontiguousarray(a)
    return hashlib.blake2b(str(a.dtype).encode() + str(a.shape).encode() + a.tobytes(), digest_size=16).hexdigest()


def _task_schema():
    import pyarrow as pa

    return pa.schema([
        ("key", pa.string()), ("pair", pa.string()), ("x", pa.string()), ("y", pa.string()),
        ("replicate", pa.int64()), ("kind", pa.string()), ("shuffle", pa.int64()), ("seed", pa.int64()),
        ("n", pa.int64()), ("n_test", pa.int64()), ("mi", pa.float64()), ("epochs", pa.int64()),
        ("best_epoch", pa.int64()), ("latent_null", pa.list_(pa.float64())), ("batch_id", pa.string()),
        ("worker", pa.string()), ("device", pa.string()), ("attempt", pa.int64()), ("wall_s", pa.float64()),
        ("status", pa.string()), ("detail", pa.string()),
        # which held-out estimate "mi" is ("latents" / "canonical"; "" for a task that is not ok) and
        # both estimates in bits (estimators.canonical; mi_canonical NaN when no view was compared),
        # the KSG bias subtracted from the view's (settings.view_bias)
        ("view", pa.string()), ("mi_latents", pa.float64()), ("mi_canonical", pa.float64()),
        ("canonical_bias", pa.float64()),
    ])


def _utc_stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S")


@dataclass
class RepairReport:
    """What ``ResultStore.repair`` moved aside and how many tasks will be recomputed."""

    moved: list[tuple[str, str, str]] = field(default_factory=list)  # (what, from, to)
    recompute: set[str] = field(default_factory=set)               # task keys lost with them

    def __bool__(self) -> bool:
        return bool(self.moved)


class ResultStore:
    """The per-task result store of one study output directory."""

    def __init__(self, out_dir: str | os.PathLike, *, fingerprint: str | None = None):
        """``fingerprint``: the study fingerprint to stamp on writes and expect on reads
        (default: the one in ``study.json``)."""
        self.root = Path(out_dir)
        self.tasks_dir = self.root / "tasks"
        self.pmi_dir = self.root / "pmi"
        self.damaged_dir = self.root / "damaged"
        self._fp: str | None = fingerprint  # study fingerprint (given, set by init, or from study.json)
        self._fp_read = fingerprint is not None
        self._part_cache: dict[Path, tuple[tuple, Any, str]] = {}

    # ------------------------------------------------------------ study metadata
    @property
    def meta_path(self) -> Path:
        return self.root / "study.json"

    def _read_meta(self) -> dict | None:
        """study.json as a dict; None when absent; DamagedResultError when unreadable."""
        if not self.meta_path.exists():
            return None
        try:
            meta = json.loads(self.meta_path.read_text())
        except (OSError, ValueError) as exc:
            raise DamagedResultError(f"{self.meta_path}: not readable JSON ({exc})") from None
        if not isinstance(meta, dict) or not isinstance(meta.get("fingerprint"), str):
            raise DamagedResultError(f"{self.meta_path}: no 'fingerprint' in it")
        return meta

    @property
    def fingerprint(self) -> str | None:
        """The study fingerprint parts must carry (None: unknown, e.g. no readable study.json)."""
        if self._fp is None and not self._fp_read:
            self._fp_read = True
            try:
                meta = self._read_meta()
            except DamagedResultError:
                meta = None
            self._fp = (meta or {}).get("study_fingerprint")
        return self._fp

    def init(self, config: Any, *, overwrite: bool = False, identity: Mapping[str, Any] | None = None,
             log: Callable[[str], None] | None = None) -> bool:
        """Create the layout; check the fingerprint and data identity of an existing study.

        ``identity``: ``{matrix: {"uid", "shape", "provenance_digest"}}`` of the study's inputs
        (``execute.data_identity``). Returns True when resuming a study with results already
        present. Raises ConfigError when the output holds results of a study with different
        numbers-changing settings or other input data (unless ``overwrite``, which deletes them),
        or when ``study.json`` is damaged and the parts cannot show they belong to this study.
        """
        fp = config.fingerprint()
        try:
            old = self._read_meta()
        except DamagedResultError as exc:
            old = None
            if overwrite:
                self.clear()
            else:
                self._recover_meta(str(exc), study_fingerprint(fp, identity), log)
        if identity is None and old is not None and old.get("fingerprint") == fp:
            identity = old.get("data_identity")  # not checked by this caller: keep the recorded one
        sfp = study_fingerprint(fp, identity)
        if old is not None:
            if old.get("fingerprint") != fp:
                if not overwrite:
                    raise ConfigError(
                        f"output.path: {self.root} holds results of a study with other seed/data/"
                        f"variables/pairing/estimator settings (fingerprint {old.get('fingerprint')} != {fp}); "
                        "choose another output.path or pass --overwrite" + _paper_hint(config, old.get("fingerprint")))
                self.clear()
            else:
                changed = _identity_changes(old.get("data_identity"), identity)
                if changed and any(self.tasks_dir.glob("part-*.parquet")):
                    if not overwrite:
                        raise ConfigError(
                            f"output.path: {self.root} holds results computed from other input data: "
                            + "; ".join(changed)
                            + ". Resuming would mix them; choose another output.path or pass --overwrite")
                    self.clear()
                elif old.get("data_identity") is None and identity and log is not None \
                        and any(self.tasks_dir.glob("part-*.parquet")):
                    log(f"note: {self.meta_path} predates data identities; recording them now "
                        "(earlier results cannot be checked against the current data)")
        resuming = any(self.tasks_dir.glob("part-*.parquet"))
        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        self.pmi_dir.mkdir(parents=True, exist_ok=True)
        for tmp in self.tasks_dir.glob(".tmp-*"):
            tmp.unlink(missing_ok=True)
        for tmp in self.pmi_dir.glob("*/.tmp-*"):  # pMI of a batch killed mid-write
            shutil.rmtree(tmp, ignore_errors=True)
        meta = {"fingerprint": fp, "study_fingerprint": sfp, "data_identity": dict(identity or {}),
                "name": config.name, "config": config.model_dump(mode="json")}
        self._atomic_write_text(self.meta_path, json.dumps(meta, indent=2, sort_keys=True))
        self._fp, self._fp_read = sfp, True
        self._part_cache.clear()
        return resuming

    def _recover_meta(self, why: str, sfp: str, log: Callable[[str], None] | None) -> None:
        """study.json is damaged: keep the results only if every readable part carries ``sfp``."""
        fps = [f for f in (self._part_fingerprint(p) for p in self.parts()) if f != _UNREADABLE]
        if any(f != sfp for f in fps):  # unreadable parts prove nothing; repair moves them aside
            raise ConfigError(
                f"output.path: {why}; the results there cannot be shown to belong to this study "
                f"(part fingerprints {sorted(set(map(str, fps)))} vs this study's {sfp}). "
                "Choose another output.path or pass --overwrite to delete them")
        dest = self._move_aside(self.meta_path)
        if log is not None:
            why_ok = (f"all {len(fps)} task part(s) carry this study's fingerprint, so they are kept"
                      if fps else "no task results were stored yet")
            log(f"damaged {self.meta_path.name} moved to {dest}; {why_ok}; 0 tasks will be recomputed")

    def clear(self) -> None:
        for p in (self.tasks_dir, self.pmi_dir, self.root / "failed", self.root / "attribution"):
            if p.exists():
                shutil.rmtree(p)
        for name in ("pairs.parquet", "summary.json", "heatmap.png", "report.html", "study.json",
                     "estimate_vs_truth.png", "attribution.parquet", "attribution_top.png",
                     "attribution_images.png"):
            (self.root / name).unlink(missing_ok=True)
        self._part_cache.clear()

    @staticmethod
    def _atomic_write_text(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".tmp-{uuid.uuid4().hex}-{path.name}"
        tmp.write_text(text)
        os.replace(tmp, path)

    def _move_aside(self, path: Path) -> Path:
        """Move a damaged file or directory into ``damaged/`` under a timestamped name."""
        self.damaged_dir.mkdir(parents=True, exist_ok=True)
        rel = path.relative_to(self.root) if path.is_relative_to(self.root) else Path(path.name)
        dest = self.damaged_dir / f"{_utc_stamp()}-{uuid.uuid4().hex[:6]}-{'_'.join(rel.parts)}"
        os.replace(path, dest)
        self._part_cache.pop(path, None)
        return dest

    # ------------------------------------------------------------------- writes
    def write_part(self, batch_id: str, records: list[dict], *, fingerprint: str | None = None) -> Path | None:
        """Atomically write one batch's task records as a Parquet part; returns its path.

        The part's key-value metadata holds the study fingerprint (``fingerprint``, default: the
        store's) and a digest of its rows, both checked on every read."""
        if not records:
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        self.tasks_dir.mkdir(parents=True, exist_ok=True)
        rows = [{c: r.get(c) for c in TASK_COLUMNS} for r in records]
        for r in rows:
            ln = r.get("latent_null")
            r["latent_null"] = [float(v) for v in ln] if ln is not None else []
            for c, default in _LEGACY_DEFAULTS.items():
                if r[c] is None:
                    r[c] = default
        table = pa.Table.from_pylist(rows, schema=_task_schema())
        meta = {_META_DIGEST: _rows_digest(table.to_pylist()).encode()}
        fp = fingerprint or self.fingerprint
        if fp:
            meta[_META_FP] = fp.encode()
        table = table.replace_schema_metadata(meta)
        final = self.tasks_dir / part_name(batch_id, [r["key"] for r in rows])
        tmp = self.tasks_dir / f".tmp-{uuid.uuid4().hex}.parquet"
        # page CRCs catch changed data pages; no statistics, whose bytes no reader would check
        pq.write_table(table, tmp, write_page_checksum=True, write_statistics=False)
        os.replace(tmp, final)
        self._part_cache.pop(final, None)
        return final

    def pmi_path(self, key: str) -> Path:
        return self.pmi_dir / _pmi_rel(key)

    def write_pmi(self, key: str, pmi: np.ndarray, x_rows: np.ndarray | None = None,
                  y_rows: np.ndarray | None = None) -> Path:
        """Atomically write one task's pMI (n,) bits (NaN on training rows) and its matrix rows.

        Each array's digest goes into the group's attributes (checked by ``read_pmi``). An
        existing pMI of the key is kept (a retried batch: same seeds, same numbers) unless it is
        damaged, in which case it is moved into ``damaged/`` and written anew."""
        import zarr

        final = self.pmi_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.exists():
            if self.pmi_problem(key, fingerprint=self.fingerprint) is None:
                return final
            self._move_aside(final)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}.zarr"
        g = zarr.open_group(str(tmp), mode="w")
        arrays = {"pmi": np.asarray(pmi, dtype=np.float64)}
        if x_rows is not None:
            arrays["x_rows"] = np.asarray(x_rows, dtype=np.int64)
        if y_rows is not None:
            arrays["y_rows"] = np.asarray(y_rows, dtype=np.int64)
        for name, a in arrays.items():
            # every chunk written, even all-zero ones, so a missing chunk file means damage
            z = g.create_array(name, shape=a.shape, dtype=a.dtype, chunks=(max(1, a.shape[0]),),
                               config={"write_empty_chunks": True})
            z[:] = a
        g.attrs["key"] = key
        g.attrs["units"] = "bits"
        g.attrs["digests"] = {name: _array_digest(a) for name, a in arrays.items()}
        if self.fingerprint:
            g.attrs["study_fingerprint"] = self.fingerprint
        try:
            os.replace(tmp, final)
        except OSError:  # another attempt won the race (directory exists and is not empty)
            shutil.rmtree(tmp, ignore_errors=True)
        return final

    def pmi_problem(self, key: str, *, full: bool = False, fingerprint: str | None = None) -> str | None:
        """Why the stored pMI of ``key`` cannot be trusted, or None when it looks whole.

        Checks the group's metadata and that every chunk file exists; ``full`` also reads the
        arrays and compares their digests (``read_pmi`` does that); ``fingerprint``: the study
        fingerprint the pMI must carry (if it carries one)."""
        path = self.pmi_path(key)
        if not path.exists():
            return "missing"
        try:
            import zarr

            g = zarr.open_group(str(path), mode="r")
            names = [n for n in ("pmi", "x_rows", "y_rows") if n in g]
            if "pmi" not in names:
                return "no 'pmi' array"
            own = g.attrs.get("study_fingerprint")
            if fingerprint and own and own != fingerprint:
                return f"written by another study or from other data (fingerprint {own} != {fingerprint})"
            for n in names:
                if g[n].nchunks_initialized != g[n].nchunks:
                    return f"array {n!r} lost {g[n].nchunks - g[n].nchunks_initialized} chunk(s)"
            if full:
                digests = dict(g.attrs.get("digests", {}))
                for n in names:
                    a = g[n][:]
                    if n in digests and _array_digest(a) != digests[n]:
                        return f"array {n!r} does not match its digest"
        except Exception as exc:  # noqa: BLE001 - any decode failure means damage
            return f"unreadable ({type(exc).__name__}: {exc})"
        return None

    def read_pmi(self, key: str) -> dict[str, np.ndarray]:
        """pMI (bits) and row indices of one task; DamagedResultError when missing or damaged
        (never the zeros Zarr reads for a lost chunk)."""
        import zarr

        why = self.pmi_problem(key)
        if why is not None:
            raise DamagedResultError(f"pMI of task {key!r} at {self.pmi_path(key)}: {why}; "
                                     "rerun the study to recompute it")
        g = zarr.open_group(str(self.pmi_path(key)), mode="r")
        digests = dict(g.attrs.get("digests", {}))
        out: dict[str, np.ndarray] = {}
        for name in ("pmi", "x_rows", "y_rows"):
            if name not in g:
                continue
            try:
                a = g[name][:]
            except Exception as exc:  # noqa: BLE001
                raise DamagedResultError(f"pMI of task {key!r} at {self.pmi_path(key)}: array {name!r} "
                                         f"unreadable ({type(exc).__name__}: {exc}); rerun the study") from exc
            if name in digests and _array_digest(a) != digests[name]:
                raise DamagedResultError(f"pMI of task {key!r} at {self.pmi_path(key)}: array {name!r} "
                                         "does not match the digest written with it; rerun the study")
            out[name] = a
        return out

    # -------------------------------------------------------------------- reads
    # ------------------------------------------------------------- attribution
    def attribution_path(self, key: str) -> Path:
        return self.root / "attribution" / (_pmi_rel(key)[:-len(".zarr")] + ".npz")

    def write_attribution(self, key: str, r2_x: np.ndarray, r2_y: np.ndarray) -> Path:
        """Atomically write one task's attribution: held-out R^2 per dimension of X (d_x,) and
        Y (d_y,) (NaN: constant dimension or flagged task), with their digests and the study
        fingerprint (checked by :meth:`read_attribution`). A retried batch rewrites the same
        numbers under the same name."""
        final = self.attribution_path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        arrays = {"r2_x": np.asarray(r2_x, dtype=np.float64), "r2_y": np.asarray(r2_y, dtype=np.float64)}
        meta = json.dumps({"key": key, "study_fingerprint": self.fingerprint or "",
                           "digests": {n: _array_digest(a) for n, a in arrays.items()}})
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}.npz"
        with open(tmp, "wb") as fh:
            np.savez(fh, meta=np.array(meta), **arrays)
        os.replace(tmp, final)
        return final

    def read_attribution(self, key: str) -> dict[str, np.ndarray] | None:
        """``{"r2_x": (d_x,), "r2_y": (d_y,)}`` of task ``key``; None when none is stored.
        Raises :class:`DamagedResultError` when the file cannot be read, fails its digests or
        carries another study's fingerprint."""
        path = self.attribution_path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(str(z["meta"]))
                arrays = {n: np.asarray(z[n]) for n in ("r2_x", "r2_y")}
        except Exception as exc:  # noqa: BLE001 -- any unreadable file is damaged
            raise DamagedResultError(f"attribution of task {key!r} at {path}: unreadable ({exc})") from None
        fp = self.fingerprint
        if fp and meta.get("study_fingerprint") != fp:
            raise DamagedResultError(f"attribution of task {key!r} at {path}: another study's fingerprint")
        for n, a in arrays.items():
            if meta.get("digests", {}).get(n) != _array_digest(a):
                raise DamagedResultError(f"attribution of task {key!r} at {path}: array {n!r} fails its digest")
        return arrays

    def parts(self) -> list[Path]:
        return sorted(self.tasks_dir.glob("part-*.parquet")) if self.tasks_dir.exists() else []

    def _part_fingerprint(self, p: Path) -> str | None:
        """The study fingerprint in a part's metadata (None: none there; ``_UNREADABLE``)."""
        import pyarrow.parquet as pq

        try:
            md = pq.read_schema(p).metadata or {}
        except Exception:  # noqa: BLE001
            return _UNREADABLE
        fp = md.get(_META_FP)
        return fp.decode() if fp is not None else None

    def check_part(self, p: Path):
        """(table, "") for a whole part of this study, or (None, why) for a damaged/foreign one."""
        import pyarrow.parquet as pq

        try:
            st = p.stat()
        except OSError as exc:
            return None, f"unreadable ({exc})"
        sig = (st.st_size, st.st_mtime_ns, self.fingerprint)
        hit = self._part_cache.get(p)
        if hit is not None and hit[0] == sig:
            return hit[1], hit[2]
        table, why = None, ""
        try:
            table = pq.read_table(p, page_checksum_verification=True)
        except Exception as exc:  # noqa: BLE001 - truncated footer, bad page, bad thrift ...
            why = f"unreadable ({type(exc).__name__}: {str(exc)[:120]})"
        if table is not None:
            md = table.schema.metadata or {}
            missing = [c for c in TASK_COLUMNS if c not in table.column_names and c not in _LEGACY_DEFAULTS]
            if missing:
                table, why = None, f"missing column(s) {missing}"
            elif _META_DIGEST in md and _rows_digest(table.to_pylist()) != md[_META_DIGEST].decode():
                table, why = None, "rows do not match the digest written with them"
            elif _META_FP in md and self.fingerprint and md[_META_FP].decode() != self.fingerprint:
                table, why = None, (f"written by another study or from other data (fingerprint "
                                    f"{md[_META_FP].decode()} != {self.fingerprint})")
        self._part_cache[p] = (sig, table, why)
        return table, why

    def good_parts(self) -> list[tuple[Path, Any]]:
        """(path, pyarrow table) of every part that reads back whole; damaged ones skipped."""
        out = []
        for p in self.parts():
            t, _ = self.check_part(p)
            if t is not None:
                out.append((p, t))
        return out

    def damaged_parts(self) -> list[tuple[Path, str]]:
        """(path, why) of every part that is damaged or belongs to another study."""
        out = []
        for p in self.parts():
            t, why = self.check_part(p)
            if t is None:
                out.append((p, why))
        return out

    def finished_keys(self) -> set[str]:
        keys: set[str] = set()
        for _, t in self.good_parts():
            keys.update(t.column("key").to_pylist())
        return keys

    def key_counts(self) -> dict[str, int]:
        """How many parts hold each key (1 everywhere when nothing was duplicated)."""
        counts: dict[str, int] = {}
        for _, t in self.good_parts():
            for k in t.column("key").to_pylist():
                counts[k] = counts.get(k, 0) + 1
        return counts

    def read_tasks(self, keys: Iterable[str] | None = None):
        """Task records (pandas DataFrame), one row per key, sorted by key; damaged parts skipped.

        ``keys``: keep only these task keys (the current plan's), so records of replicates,
        shuffles or pairs no longer in the study never reach the aggregation. Parts written
        before ``status``/``detail`` existed read as ``"ok"``/``""``; before ``view`` and the view's
        numbers existed, as ``""`` (not recorded) and NaN."""
        import pandas as pd

        frames = [t.to_pandas() for _, t in self.good_parts()]
        if not frames:
            return pd.DataFrame(columns=TASK_COLUMNS)
        df = pd.concat(frames, ignore_index=True)
        for c, default in _LEGACY_DEFAULTS.items():
            if c not in df:
                df[c] = default
            df[c] = df[c].fillna(default)
        df = df.drop_duplicates(subset="key", keep="first")
        if keys is not None:
            df = df[df["key"].isin(set(keys))]
        return df.sort_values("key", kind="stable").reset_index(drop=True)

    # ------------------------------------------------------------------ repair
    def repair(self, pmi_keys: Iterable[str] = (), *, batch_keys: Mapping[str, Iterable[str]] | None = None,
               attribution_keys: Iterable[str] = (),
               log: Callable[[str], None] | None = None) -> RepairReport:
        """Move damaged parts, pMI and attribution arrays aside so only their tasks are
        recomputed; one log line.

        ``pmi_keys``: task keys whose pMI the study expects (``output.save_pmi``); a stored task
        among them whose pMI is missing or damaged is dropped from its part (the part is rewritten
        without it) so it runs again. ``attribution_keys``: task keys whose R^2 arrays the study
        expects (``estimator.attribution``); a damaged file, or a missing one of an ``ok`` task, is
        treated the same way. ``batch_keys``: the plan's task keys per batch id, to count the tasks
        a damaged part held (its keys cannot be read from it)."""
        rep = RepairReport()
        for p, why in self.damaged_parts():
            dest = self._move_aside(p)
            rep.moved.append((f"task part ({why})", str(p), str(dest)))
            bid = p.name[len("part-"):].rsplit("-", 1)[0]
            rep.recompute.update((batch_keys or {}).get(bid, ()))
        done = self.finished_keys()
        rep.recompute -= done
        bad_pmi: dict[str, str] = {}
        for k in sorted(set(pmi_keys) & done):
            why = self.pmi_problem(k, fingerprint=self.fingerprint)
            if why is not None:
                bad_pmi[k] = why
        for k, why in bad_pmi.items():
            if self.pmi_path(k).exists():
                dest = self._move_aside(self.pmi_path(k))
                rep.moved.append((f"pMI ({why})", str(self.pmi_path(k)), str(dest)))
            else:
                rep.moved.append((f"pMI ({why})", str(self.pmi_path(k)), "-"))
        bad_attr = self._attribution_problems(set(attribution_keys) & done)
        for k, why in bad_attr.items():
            src = self.attribution_path(k)
            dest = self._move_aside(src) if src.exists() else "-"
            rep.moved.append((f"attribution ({why})", str(src), str(dest)))
        if bad_pmi or bad_attr:
            self._drop_keys(set(bad_pmi) | set(bad_attr))
            rep.recompute.update(bad_pmi)
            rep.recompute.update(bad_attr)
        if rep and log is not None:
            what = "; ".join(f"{w}: {src} -> {dst}" for w, src, dst in rep.moved[:3])
            more = f" (+{len(rep.moved) - 3} more)" if len(rep.moved) > 3 else ""
            log(f"damaged results moved to {self.damaged_dir}: {len(rep.moved)} file(s) [{what}{more}]; "
                f"{len(rep.recompute)} task(s) will be recomputed")
        return rep

    def _attribution_problems(self, keys: set[str]) -> dict[str, str]:
        """``{key: why}`` of stored tasks whose attribution arrays are damaged, or missing although
        the task is ok (a flagged task writes none)."""
        if not keys:
            return {}
        bad: dict[str, str] = {}
        missing = set()
        for k in sorted(keys):
            try:
                if self.read_attribution(k) is None:
                    missing.add(k)
            except DamagedResultError as exc:
                bad[k] = f"damaged: {exc}"
        if missing:
            tasks = self.read_tasks(keys=sorted(missing))
            status = tasks["status"].fillna("ok") if "status" in tasks else None
            for k, st in zip(tasks["key"], status if status is not None else ["ok"] * len(tasks)):
                if st == "ok":
                    bad[k] = "missing"
        return bad

    def _drop_keys(self, keys: set[str]) -> None:
        """Rewrite the parts holding ``keys`` without them (new part first, then the old removed)."""
        import pyarrow.compute as pc

        for p, t in self.good_parts():
            held = set(t.column("key").to_pylist()) & keys
            if not held:
                continue
            keep = t.filter(pc.invert(pc.is_in(t.column("key"), value_set=__import__("pyarrow").array(sorted(held)))))
            if keep.num_rows:
                bid = p.name[len("part-"):].rsplit("-", 1)[0]
                fp = (t.schema.metadata or {}).get(_META_FP)
                self.write_part(bid, keep.to_pylist(), fingerprint=fp.decode() if fp else None)
            p.unlink()
            self._part_cache.pop(p, None)


def _identity_changes(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """Human-readable differences between two data identities ({} when the same or unknown)."""
    if not old or not new:
        return []
    out = []
    for m in sorted(set(old) | set(new)):
        a, b = old.get(m), new.get(m)
        if a == b:
            continue
        if a is None or b is None:
            out.append(f"matrix {m!r} {'added' if a is None else 'no longer used'}")
            continue
        diffs = []
        for f in ("uid", "shape", "provenance_digest"):
            if a.get(f) != b.get(f):
                diffs.append(f"{f} {a.get(f)} -> {b.get(f)}")
        out.append(f"matrix {m!r} changed ({', '.join(diffs) or 'identity differs'})"
                   + (" - re-ingested or overwritten" if a.get("uid") != b.get("uid") else ""))
    return out
