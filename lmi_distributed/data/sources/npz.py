"""``.npz`` input: one member array (``key``, or the only non-id member, or ``X``) plus row ids
from a member named ``ids``, ``obs_names`` or ``row_ids``.

* A stored (uncompressed) member is read in place with ``os.preadv`` (:class:`.base.PreadArray`
  at the member's data offset inside the ZIP file).
* A compressed member is streamed once, in 16 MiB pieces, into a spool ``.npy`` next to the
  input (or in ``spool_dir``) and read from there with ``os.preadv``; the spool is removed by
  ``close()``.
"""
from __future__ import annotations

import os
import struct
import zipfile
from pathlib import Path

import numpy as np

from ..validation import DataError, describe_exc
from .base import ArraySource, _npy_pread, _read_header


def _npz_member(zf: zipfile.ZipFile, key: str | None, path: Path) -> tuple[str, str | None]:
    names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
    if key is None:
        cands = [n for n in names if n not in ("ids", "obs_names", "row_ids")]
        if len(cands) == 1:
            key = cands[0]
        elif "X" in cands:
            key = "X"
        else:
            raise DataError(f"npz input {path}: holds arrays {names}; pass key= to choose one")
    if key not in names:
        raise DataError(f"npz input {path}: no array {key!r}; arrays: {names}")
    ids_key = next((k for k in ("ids", "obs_names", "row_ids") if k in names), None)
    return key, ids_key


def _open_npz(path: Path, key: str | None, spool_dir: Path) -> ArraySource:
    """An :class:`.base.ArraySource` over member ``key`` of the ``.npz`` file (module docstring);
    ``ids`` from an ``ids``/``obs_names``/``row_ids`` member as a str array. DataError naming
    the file and member for anything unreadable."""
    try:
        zf = zipfile.ZipFile(path)
        key, ids_key = _npz_member(zf, key, path)
        info = zf.getinfo(key + ".npy")
        ids = None
        if ids_key is not None:
            with zf.open(ids_key + ".npy") as f:
                ids = np.lib.format.read_array(f, allow_pickle=False).astype(str)
        if info.compress_type == zipfile.ZIP_STORED:
            # read the member in place with pread. zipfile has no public API for the byte
            # offset of a member's data, so it is computed from the ZIP local file header
            # (30 fixed bytes + file name + extra field, APPNOTE 4.3.7); see
            # docs/benchmarks.md "Hand-written readers vs libraries" for why not zipfile.open:
            # its member handle re-reads from the start on a backward seek (~8000x slower for
            # random rows of a 195 MiB member) and is not safe across dask's reader threads.
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                hdr = fh.read(30)
                if hdr[:4] != b"PK\x03\x04":
                    raise zipfile.BadZipFile("bad local file header")
                nlen, xlen = struct.unpack("<HH", hdr[26:30])
                data_off = info.header_offset + 30 + nlen + xlen
            if data_off + info.file_size > path.stat().st_size:
                raise DataError(f"npz input {path}: member {key!r} extends past the end of the "
                                "file; the file is truncated")
            arr = _npy_pread(path, data_off)
            zf.close()
            return ArraySource(arr, path, "npz", key=key, ids=ids)
        # compressed: stream once into a spool .npy, then read it with pread
        spool_dir.mkdir(parents=True, exist_ok=True)
        spool = spool_dir / f"npz-{os.getpid()}-{id(zf)}.npy"
        with zf.open(info) as f:
            version = np.lib.format.read_magic(f)
            shape, fortran, dtype = _read_header(f, version)
            if len(shape) not in (1, 2):
                raise DataError(f"npz input {path}: member {key!r} has shape {shape}; expected 2-D")
            total = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            with open(spool, "wb") as out:  # plain writes: no mapped pages in this process
                np.lib.format.write_array_header_2_0(
                    out, {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran,
                          "shape": tuple(shape)})
                pos = 0
                while pos < total:
                    buf = f.read(min(16 << 20, total - pos))
                    if not buf:
                        raise DataError(f"npz input {path}: member {key!r} ends early; the file "
                                        "is truncated")
                    out.write(buf)
                    pos += len(buf)
        zf.close()
        return ArraySource(_npy_pread(spool), path, "npz", key=key, ids=ids, cleanup=[spool])
    except DataError as exc:
        if str(path) in str(exc):
            raise
        raise DataError(f"npz input {path} [{key}]: {exc}") from exc
    except Exception as exc:
        raise DataError(f"npz input {path}: cannot read ({describe_exc(exc)}); the file "
                        "may be truncated or corrupt") from exc

