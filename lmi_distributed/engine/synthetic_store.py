"""Build a study's synthetic (demo) store when it is missing, rebuild it when its parameters
changed: one rule for every demo kind (the Gaussian chain, the lineage clones, the proteome).

The kind supplies ``mismatch(path) -> why | None`` (None: the store there was built with these
parameters; it raises ``ConfigError`` itself for a store its generator did not write, which is
never touched) and ``build(path)``. A rebuild moves the old store aside first and deletes it only
after the new one is written. One log line either way.
"""
from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Callable

from lmi_distributed.errors import ConfigError

__all__ = ["ensure_built"]


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
