"""``pairwise``: the in-memory screen -- LMI for many pairs of named arrays, with p and q values.

No Ray, no Zarr: every (pair, replicate) is trained through :func:`.api.estimate_many`'s code
(pairs of one shape form one batch), each observed estimate gets a latent permutation null
(:func:`.permutation.result_latent_null`), and the rows are aggregated as the engine aggregates a
study (``engine/aggregate.py``): estimate = mean over replicates, SEM, null of replicate means,
p = (1 + #{null >= estimate}) / (1 + n_null), Benjamini-Hochberg q over the ``ok`` pairs.

Seeds follow the engine's task keys, so an aligned study with the same seed trains the same
networks: replicate r of pair (x, y) has seed ``blake2b(f"{seed}:{x}~{y}/r{r}/obs")`` (as
``engine.seeds.derive_seed``) and its permutations the seed of the key + ``"/latent_perm"``.
"""
from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from lmi_distributed import stats
from lmi_distributed.errors import ConfigError, InputError, LMIWarning

from .api import ProgressFn, _check_variable, _estimate_many
from .seeding import key_seed
from .settings import resolve_settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["pairwise", "PAIRWISE_COLUMNS", "task_seed"]

#: columns of the DataFrame :func:`pairwise` returns, in order
PAIRWISE_COLUMNS = ["pair", "x", "y", "n", "replicates", "estimate", "sem", "null_mean", "null_sd",
                    "p", "q", "significant", "status", "detail"]


def task_seed(seed: int, key: str) -> int:
    """The engine's seed of task ``key`` in a study seeded ``seed`` (``seeding.key_seed``)."""
    return key_seed(seed, key)


def _int_option(v: Any, name: str, lo: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(f"pairwise: {name} must be an integer >= {lo}, got {v!r}")
    return int(v)


def _pair_list(pairs: Any, names: list[str]) -> list[tuple[str, str]]:
    if isinstance(pairs, str):
        if pairs != "all":
            raise InputError(f"pairs must be 'all' or a list of (name, name) tuples, got {pairs!r}")
        if len(names) < 2:
            raise InputError(f"pairs='all' needs at least two variables, got {names}")
        return list(itertools.combinations(names, 2))
    out: list[tuple[str, str]] = []
    for p in pairs:
        if not isinstance(p, (tuple, list)) or len(p) != 2:
            raise InputError(f"each pair must be a (name, name) tuple, got {p!r}")
        x, y = p
        for v in (x, y):
            if v not in names:
                raise InputError(f"pair {tuple(p)!r}: unknown variable {v!r}; variables: {names}")
        if x == y:
            raise InputError(f"pair {tuple(p)!r}: a variable paired with itself has no finite MI")
        if (x, y) in out:
            raise InputError(f"pair {tuple(p)!r} is listed twice")
        out.append((x, y))
    if not out:
        raise InputError("pairs is empty")
    return out


def pairwise(variables: Mapping[str, np.ndarray], pairs: str | Sequence[tuple[str, str]] = "all",
             replicates: int = 1, n_permutations: int = 0, seed: int = 0, alpha: float = 0.05, *,
             progress: ProgressFn | None = None, **settings: Any) -> "pd.DataFrame":
    """LMI between named in-memory variables, with latent-permutation p and BH q values.

    ``variables``: ``{name: (N, d_name) array}``, rows aligned (row i of every array is sample i).
    ``pairs``: "all" (every unordered pair, in dict order) or a list of ``(x, y)`` names.
    ``replicates``: trainings per pair (different seeds: split, init, minibatches).
    ``n_permutations``: latent permutations per replicate (0: no p/q; 99 gives p >= 0.01).
    ``seed``: the screen's seed (seeds per (pair, replicate) as the engine derives them).
    ``alpha``: ``significant = q <= alpha``. ``settings``: :class:`LMISettings` fields.

    Returns a pandas DataFrame, one row per pair, columns :data:`PAIRWISE_COLUMNS`: ``estimate``
    (mean MI over replicates, bits), ``sem`` (NaN with one replicate), ``null_mean``/``null_sd``
    (null of replicate means, bits), ``p``, ``q`` (BH over the ok pairs), ``significant``,
    ``status``/``detail``.

    A screen does not stop at one bad pair: a pair with a degenerate variable (e.g. constant) or a
    replicate whose training diverged is *flagged* -- status of its first non-ok replicate, NaN
    numbers, left out of q, ``significant`` False -- with an :class:`LMIWarning`. Malformed input
    (not 2-D, NaN/inf, unequal row counts, too few rows, unknown names) raises ``InputError``
    before any training; bad options raise ``ConfigError``.
    """
    import pandas as pd

    s = resolve_settings(settings)
    if s.split != "rows":
        raise ConfigError("pairwise supports split='rows' only (split='ids' needs per-pair row ids; "
                          "use estimate_many(..., ids=...) or an engine study)")
    replicates = _int_option(replicates, "replicates", 1)
    n_permutations = _int_option(n_permutations, "n_permutations", 0)
    seed = _int_option(seed, "seed", 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"pairwise: alpha must be a number in (0, 1), got {alpha!r}")
    if not isinstance(variables, Mapping) or not variables:
        raise InputError("variables must be a non-empty dict {name: (N, d) array}")
    arrays = {str(k): _check_variable(v, f"variable {k!r}") for k, v in variables.items()}
    rows = {k: a.shape[0] for k, a in arrays.items()}
    if len(set(rows.values())) > 1:
        raise InputError(f"variables must have the same number of rows (aligned samples), got {rows}")
    n = next(iter(rows.values()))
    if n < s.min_samples():
        raise InputError(f"too few samples: N={n}, LMI needs N >= {s.min_samples()}")
    plist = _pair_list(pairs, list(arrays))

    keys = [(x, y, r, f"{x}~{y}/r{r}/obs") for x, y in plist for r in range(replicates)]
    results = _estimate_many([(arrays[x], arrays[y]) for x, y, _, _ in keys],
                             [task_seed(seed, key) for *_, key in keys], s, validate=False, progress=progress)
    by_pair: dict[tuple[str, str], list] = {}
    for (x, y, r, key), res in zip(keys, results):
        null = np.zeros(0)
        if n_permutations and res.status == "ok":
            from .permutation import result_latent_null

            null = np.asarray(result_latent_null(res, n_permutations=n_permutations,
                                                 seed=task_seed(seed, key + "/latent_perm")), np.float64)
        by_pair.setdefault((x, y), []).append((r, res, null))

    out = []
    for x, y in plist:
        reps = by_pair[(x, y)]
        row: dict[str, Any] = {"pair": f"{x}~{y}", "x": x, "y": y, "n": n, "replicates": replicates}
        bad = [(r, res) for r, res, _ in reps if res.status != "ok"]
        nan = float("nan")
        if bad:      # flagged: which replicates fail is not random, so no partial mean
            r0, res0 = bad[0]
            detail = f"replicate {r0}: {res0.detail}" if res0.detail else f"replicate {r0}"
            row.update(estimate=nan, sem=nan, null_mean=nan, null_sd=nan, p=nan, status=res0.status,
                       detail=f"{detail}; {replicates - len(bad)} of {replicates} replicate(s) ok")
            warnings.warn(f"pair {x}~{y}: status {res0.status!r}, estimate is NaN: {row['detail']}",
                          LMIWarning, stacklevel=2)
            out.append(row)
            continue
        mi = np.array([res.mi for _, res, _ in reps])
        est = float(np.mean(mi))
        row.update(estimate=est, sem=stats.sem(mi), status="ok", detail="")
        if n_permutations:
            null = stats.null_of_means(np.stack([nl for *_, nl in reps]))
            m, sd, p = stats.null_summary(est, null)
            row.update(null_mean=m, null_sd=sd, p=p)
        else:
            row.update(null_mean=nan, null_sd=nan, p=nan)
        out.append(row)
    df = pd.DataFrame(out)
    df["q"], df["significant"] = stats.bh_over_ok(df["p"].to_numpy(np.float64), (df["status"] == "ok").to_numpy(),
                                                  alpha)
    df["n"] = df["n"].astype("int64")
    df["replicates"] = df["replicates"].astype("int64")
    return df[PAIRWISE_COLUMNS]
