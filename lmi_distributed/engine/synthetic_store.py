"""Build a study's synthetic (demo) store when it is missing, rebuild it when its parameters
changed: one rule for every demo kind (the Gaussian chain, the lineage clones, the proteome).

The kind supplies ``mismatch(path) -> why | None`` (None: the store there was built with these
parameters; it raises ``ConfigError`` itself for a store its generator did not write, which is
never touched) and ``build(path)``. A rebuild moves the old store aside first and deletes it only
after the new one is written. One log line either way.

Builders write through :func:`write_atomically` (a temporary sibling renamed into place, so a
half-written store never exists) and :func:`write_truth` (the known answer, JSON, bits).
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Callable

from lmi_distributed.errors import ConfigError

__all__ = ["ensure_built", "write_atomically", "write_truth"]


def ensure_built(store_path: str | os.PathLike, *, mismatch: Callable[[Path], str | None],
                 build: Callable[[Path], None], label: str, describe: str, create: bool = True,
                 log: Callable[[str], None] = print) -> bool:
    """True when it (re)built the store at ``store_path``. ``label`` names the store in the log
    ("demo store", "lineage demo store", ...); ``describe`` its parameters. ``create=False``:
    ConfigError instead of building (a missing or outdated store)."""
    final = Path(store_path).expanduser().resolve()
    if final.exists():
        why = mismatch(final)
        if why is None:
            return False
        if not create:
            raise ConfigError(f"data.store: {final} does not match data.demo: {why}")
        old = final.parent / f".old-{uuid.uuid4().hex[:8]}-{final.name}"
        os.replace(final, old)
        log(f"rebuilding the {label} {final}: {why} (synthetic data; the old store is deleted)")
        try:
            build(final)
        finally:
            shutil.rmtree(old, ignore_errors=True)
        return True
    if not create:
        raise ConfigError(f"data.store: {final} does not exist")
    log(f"building the {label} {final} ({describe})")
    build(final)
    return True


def write_atomically(store_path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp)`` on a temporary sibling of ``store_path`` and rename it into place;
    returns the final path. If another process put a store there meanwhile, that one is kept.
    The temporary store never outlives the call, written or failed."""
    final = Path(store_path).expanduser().resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{uuid.uuid4().hex[:8]}-{final.name}"
    try:
        write(tmp)
        try:
            os.replace(tmp, final)
        except OSError:  # someone else built it meanwhile (a non-empty directory is not replaced)
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_truth(final: Path, truth_path: str | os.PathLike | None, doc: dict[str, Any]) -> Path:
    """Write a synthetic store's known answer ``doc`` (JSON) to ``truth_path`` (default: a
    ``truth.json`` beside the store); returns its path."""
    tp = Path(truth_path).expanduser() if truth_path else final.parent / "truth.json"
    tp.parent.mkdir(parents=True, exist_ok=True)
    tp.write_text(json.dumps(doc, indent=2))
    return tp
