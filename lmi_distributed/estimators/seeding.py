"""Per-pair seed derivation.

A pair's integer seed fixes every random draw of its estimate: the train/test split,
the network initialisation, the minibatch order, the dropout masks, the KSG noise and the
canonical view's halves and jitter.
Each purpose gets its own independent stream, derived with numpy's ``SeedSequence`` from
``(seed, purpose code)``, so changing e.g. the number of epochs never shifts the split.
"""
from __future__ import annotations

import hashlib

import numpy as np

#: Key seeds lie in [0, 2**KEY_SEED_BITS). 32 bits keeps them valid for every RNG in use
#: (numpy Generator / legacy RandomState, torch.manual_seed).
KEY_SEED_BITS = 32

#: Fixed purpose codes (never renumber: results depend on them).
PURPOSES: dict[str, int] = {
    "split": 1,
    "init": 2,
    "shuffle": 3,
    "dropout": 4,
    "ksg": 5,
    "view-halves": 6,     # the canonical view's cross-fit halves of the training rows (.canonical)
    "view-select": 7,     # ... the jitter of its width scores
    "view-ksg": 8,        # ... the jitter of its held-out variates
    "view-bias": 9,       # ... the Gaussian samples that measure KSG's bias at its correlations
}


def derive_seed(seed: int, purpose: str) -> int:
    """Return a 63-bit integer seed for ``purpose`` derived from the pair ``seed``.

    ``seed`` must be a non-negative integer; ``purpose`` one of :data:`PURPOSES`.
    The result is usable by ``numpy.random.default_rng`` and ``torch.Generator.manual_seed``.
    """
    if purpose not in PURPOSES:
        raise KeyError(f"unknown seed purpose {purpose!r}; known: {sorted(PURPOSES)}")
    seed = int(seed)
    if seed < 0:
        raise ValueError(f"seeds must be non-negative integers, got {seed}")
    state = np.random.SeedSequence([seed, PURPOSES[purpose]]).generate_state(2, np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def key_seed(study_seed: int, key: str) -> int:
    """Seed of ``key`` (a task key such as ``"X~Y/r0/obs"``) in a study or screen seeded
    ``study_seed``: blake2b(f"{study_seed}:{key}") -> uint32. Stable across processes,
    platforms and Python versions (unlike ``hash``). The engine's tasks and ``pairwise`` both
    use it, so a screen and a study with the same seed train the same networks."""
    digest = hashlib.blake2b(f"{int(study_seed)}:{key}".encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % (1 << KEY_SEED_BITS)


# ---- task keys of a screen (the engine's plan and ``pairwise`` share them) -----------------
def pair_key(x: str, y: str) -> str:
    """``"x~y"``: the name of the pair of variables ``x`` and ``y``."""
    return f"{x}~{y}"


def task_key(x: str, y: str, replicate: int, shuffle: int | None = None) -> str:
    """The key of one training: ``"{x}~{y}/r{replicate}/obs"`` (observed), or
    ``"{x}~{y}/r{replicate}/s{shuffle}"`` for retrain shuffle ``shuffle`` (>= 0)."""
    tail = "obs" if shuffle is None or shuffle < 0 else f"s{shuffle}"
    return f"{pair_key(x, y)}/r{replicate}/{tail}"


def shuffle_seed(study_seed: int, key: str) -> int:
    """Seed of the Y-row permutation of shuffle task ``key``: ``key_seed(study_seed, key + "/shuffle")``."""
    return key_seed(study_seed, key + "/shuffle")


def shuffle_permutation(n: int, seed: int) -> np.ndarray:
    """(n,) int64: the Y-row permutation a shuffle task trains on, from its :func:`shuffle_seed`."""
    return np.random.default_rng(seed).permutation(n)
