"""Data layer: Zarr v3 dataset stores, ingest, out-of-core preprocessing, variables, pairings.

No Ray imports. Contract (docs/architecture.md)::

    store = open_store(path); m = store.matrix(name); m.read_rows(rows)
    write_matrix(path, name, array, ids=None, obs=None, provenance=None)
    var = resolve_variable(store, VariableSpec(...))
    pairing = make_pairing(store, x, y, spec, seed); X, Y = read_pair(store, x, y, pairing)

Ingest/preprocessing functions live in :mod:`.ingest` and :mod:`.preprocess` (imported lazily
here so that opening a store stays cheap).
"""
from __future__ import annotations

from lmi_distributed.errors import DataError

from .cache import chunk_cache, clear_cache, set_cache_bytes
from .pairings import (
    DEFAULT_MIN_SAMPLES,
    AlignedPairingSpec,
    GroupedPairingSpec,
    JoinPairingSpec,
    Pairing,
    PairingSpec,
    make_pairing,
    parse_pairing_spec,
    read_pair,
)
from .store import (
    STORE_VERSION,
    MatrixHandle,
    Store,
    chunk_layout,
    open_store,
    write_matrix,
)
from .variables import Variable, VariableSpec, resolve_variable

__all__ = [
    "DataError",
    "open_store",
    "Store",
    "MatrixHandle",
    "write_matrix",
    "chunk_layout",
    "STORE_VERSION",
    "VariableSpec",
    "Variable",
    "resolve_variable",
    "PairingSpec",
    "AlignedPairingSpec",
    "JoinPairingSpec",
    "GroupedPairingSpec",
    "parse_pairing_spec",
    "Pairing",
    "make_pairing",
    "read_pair",
    "DEFAULT_MIN_SAMPLES",
    "chunk_cache",
    "clear_cache",
    "set_cache_bytes",
]


def __getattr__(name: str):
    if name == "ingest":
        from .ingest import ingest

        return ingest
    if name == "PreprocessConfig":
        from .preprocess import PreprocessConfig

        return PreprocessConfig
    raise AttributeError(f"module 'lmi_distributed.data' has no attribute {name!r}")
