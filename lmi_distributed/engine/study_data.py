"""The study's data as the driver and the workers both see it: the store, variables, pairings,
the data identity that fingerprints results, and the study's absolute paths.

Run by the driver (``runner``, ``preflight``, ``status``, the CLI) to plan and check a study, and
by each worker (``worker.execute_batch``) to read its batch's rows. No Ray here.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from lmi_distributed.engine.config import StudyConfig

__all__ = ["open_store_cached", "forget_store", "matrix_identity", "data_identity", "batch_fingerprint",
           "variable_spec", "pairing_spec", "resolve_variables", "pair_shape", "store_path_abs", "out_dir_abs",
           "load_truth"]

_STORES: dict[str, Any] = {}


def open_store_cached(store_path: str):
    """Open a store once per process (read-only)."""
    from lmi_distributed.data import open_store

    s = _STORES.get(store_path)
    if s is None:
        s = _STORES[store_path] = open_store(store_path)
    return s


def forget_store(store_path: str) -> None:
    """Drop this process's cached handle of a store (after it was rebuilt or re-ingested)."""
    _STORES.pop(store_path, None)


def matrix_identity(handle: Any) -> dict[str, Any]:
    """``{"uid", "shape", "provenance_digest"}`` of a stored matrix (``MatrixHandle``).

    Uses ``handle.identity()`` when the data layer provides it, else hashes the uid, shape
    and provenance itself (same fields)."""
    ident = getattr(handle, "identity", None)
    if callable(ident):
        d = dict(ident())
        d["shape"] = [int(v) for v in d.get("shape", (handle.n_rows, handle.n_features))]
        return d
    prov = json.dumps(handle.provenance, sort_keys=True, default=str)
    return {"uid": str(handle.uid), "shape": [int(handle.n_rows), int(handle.n_features)],
            "provenance_digest": hashlib.blake2b(prov.encode(), digest_size=10).hexdigest()}


def data_identity(cfg: StudyConfig, store: Any) -> dict[str, dict[str, Any]]:
    """Identity of every matrix the study's variables read: ``{matrix: matrix_identity}``."""
    names = sorted({v.matrix for v in cfg.variables})
    return {m: matrix_identity(store.matrix(m)) for m in names}


def batch_fingerprint(cfg: StudyConfig, store: Any) -> str:
    """The study fingerprint of results computed from ``store`` as it is now."""
    from lmi_distributed.engine.results import study_fingerprint

    return study_fingerprint(cfg.fingerprint(), data_identity(cfg, store))


def variable_spec(cfg: StudyConfig, name: str):
    """The ``data.VariableSpec`` of the study's variable ``name``."""
    from lmi_distributed.data import VariableSpec

    v = cfg.variable(name).model_dump()
    return VariableSpec(**{k: val for k, val in v.items() if val is not None or k in ("name", "matrix")})


def pairing_spec(cfg: StudyConfig):
    """The ``data.PairingSpec`` of the study's pairing rule."""
    from pydantic import TypeAdapter

    from lmi_distributed.data import PairingSpec

    return TypeAdapter(PairingSpec).validate_python(cfg.pairing.model_dump())


def resolve_variables(cfg: StudyConfig, store_path: str, names: list[str] | None = None) -> dict[str, Any]:
    """``data.Variable`` of each (or each named) variable of the study."""
    from lmi_distributed.data import resolve_variable

    store = open_store_cached(store_path)
    return {n: resolve_variable(store, variable_spec(cfg, n)) for n in (names or cfg.variable_names)}


def pair_shape(cfg: StudyConfig, store_path: str, variables: Mapping[str, Any], x: str, y: str) -> tuple[int, int, int]:
    """(n paired rows, d_x, d_y) of a pair, from the pairing of replicate 0."""
    from lmi_distributed.data import make_pairing

    from lmi_distributed.estimators.seeding import pair_key
    from lmi_distributed.engine.seeds import derive_seed

    store = open_store_cached(store_path)
    vx, vy = variables[x], variables[y]
    pairing = make_pairing(store, vx, vy, pairing_spec(cfg), derive_seed(cfg.seed, f"{pair_key(x, y)}/r0/pairing"))
    return int(pairing.n), int(vx.n_features), int(vy.n_features)


def store_path_abs(cfg: StudyConfig) -> str:
    """The study's store path, absolute (relative paths resolve against the current directory)."""
    return str(Path(cfg.data.store).expanduser().resolve())


def out_dir_abs(cfg: StudyConfig) -> str:
    """The study's output folder, absolute."""
    return str(Path(cfg.output.path).expanduser().resolve())


def load_truth(cfg: StudyConfig) -> dict[str, float]:
    """Known MI per pair key (bits), from ``data.truth`` if given and present."""
    if not cfg.data.truth:
        return {}
    p = Path(cfg.data.truth).expanduser()
    if not p.exists():
        return {}
    obj = json.loads(p.read_text())
    pairs = obj.get("pairs", obj)
    return {k: float(v) for k, v in pairs.items()}
