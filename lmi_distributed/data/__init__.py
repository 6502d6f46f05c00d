"""Data layer: Zarr v3 dataset stores, ingest, out-of-core preprocessing, variables, pairings.

No Ray imports. Contract (docs/architecture.md)::

    store = open_store(path); m = store.matrix(name); m.read_rows(rows)
    write_matrix(path, name, array, ids=None, obs=None, provenance=None)
    var = resolve_variable(store, VariableSpec(...))
    pairing = make_pairing(store, x, y, spec, seed); X, Y = read_pair(store, x, y, pairing)

``ingest(source, store, name, preprocess=...)`` ingests files (:mod:`.ingest`); Dask, zarr,
anndata and pyarrow are imported only when used, so importing this package stays cheap.
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
    clean_stale_staging,
    matrix_identity,
    open_store,
    provenance_digest,
    write_matrix,
)
from .query import FilterError, validate_filter
from .variables import Variable, VariableSpec, resolve_variable
from .preprocess import PreprocessConfig
from .ingest import ingest  # binds the function over the submodule name (dask is imported lazily)

__all__ = [
    "DataError",
    "open_store",
    "Store",
    "MatrixHandle",
    "write_matrix",
    "chunk_layout",
    "STORE_VERSION",
    "matrix_identity",
    "provenance_digest",
    "clean_stale_staging",
    "VariableSpec",
    "Variable",
    "resolve_variable",
    "FilterError",
    "validate_filter",
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
    "ingest",
    "PreprocessConfig",
]

