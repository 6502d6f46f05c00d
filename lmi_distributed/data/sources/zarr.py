"""Zarr input (v2 or v3): one array, sliced by rows through zarr itself. A group needs ``key``
(unless it holds one array); an AnnData Zarr group goes to :mod:`.h5ad`; in an
``lmi_distributed`` store, ``key=<matrix name>`` means ``matrices/<name>/X``."""
from __future__ import annotations

from pathlib import Path

from ..validation import DataError, describe_exc
from .base import ArraySource, Source
from .h5ad import _open_anndata


def _open_zarr(path: Path, key: str | None, spool_dir: Path) -> Source:
    """An :class:`.base.ArraySource` over a zarr array (or the AnnData Source of an AnnData
    Zarr group); DataError naming the path and key when it cannot be opened."""
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as exc:
        raise DataError(f"zarr input {path}: cannot open ({describe_exc(exc)})") from exc
    if isinstance(node, zarr.Group):
        if node.attrs.get("encoding-type") == "anndata":
            return _open_anndata(path, "anndata-zarr", key, spool_dir)
        if node.attrs.get("lmi_distributed_store_version") is not None and key and "/" not in key:
            key = f"matrices/{key}/X"
        if key is None:
            arrays = [k for k, _ in node.arrays()]
            if len(arrays) == 1:
                key = arrays[0]
            else:
                raise DataError(f"zarr input {path}: a group; pass key= to choose an array "
                                f"(arrays here: {arrays})")
        try:
            node = node[key]
        except KeyError:
            raise DataError(f"zarr input {path}: no array {key!r}") from None
        except Exception as exc:
            raise DataError(f"zarr input {path} [{key}]: cannot open ({describe_exc(exc)}); the store may be corrupt") from exc
    return ArraySource(node, path, "zarr", key=key)

