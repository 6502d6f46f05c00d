"""Seeds derived from (study seed, key): every random draw of a study is a function of its key.

A resumed study therefore recomputes exactly the numbers an uninterrupted one would.
"""
from __future__ import annotations

import hashlib

__all__ = ["derive_seed", "SEED_BITS"]

#: Derived seeds lie in [0, 2**SEED_BITS). 32 bits keeps them valid for every RNG in use
#: (numpy Generator / legacy RandomState, torch.manual_seed).
SEED_BITS = 32


def derive_seed(study_seed: int, key: str) -> int:
    """Seed for ``key`` in a study seeded ``study_seed``: blake2b(f"{study_seed}:{key}") -> uint32.

    Stable across processes, platforms and Python versions (unlike ``hash``).
    """
    digest = hashlib.blake2b(f"{int(study_seed)}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (1 << SEED_BITS)
