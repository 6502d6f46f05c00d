"""Seeds derived from (study seed, key): every random draw of a study is a function of its key.

A resumed study therefore recomputes exactly the numbers an uninterrupted one would. The one
definition is ``estimators.seeding.key_seed`` (``pairwise`` uses it too); this module names it
for the engine.
"""
from __future__ import annotations

from lmi_distributed.estimators.seeding import KEY_SEED_BITS as SEED_BITS
from lmi_distributed.estimators.seeding import key_seed as derive_seed

__all__ = ["derive_seed", "SEED_BITS"]
