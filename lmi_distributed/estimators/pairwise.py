"""``pairwise``: the in-memory screen -- LMI for many pairs of named arrays, with p and q values.

No Ray, no Zarr: every training of the screen -- (pair, replicate) observed, and with
``n_shuffles`` the paper's retrain-shuffle null, (pair, replicate, shuffle j) trained anew on
(X, Y[perm]) -- goes through :func:`.api.estimate_many`'s code in one call (tasks of one shape
form one batch). Each observed estimate can also get a latent permutation null
(:func:`.permutation.result_latent_null`). The rows are aggregated as the engine aggregates a
study (``engine/aggregate.py``, the same column names as its ``pairs.parquet``): estimate = mean
over replicates, SEM, each null as a null of replicate means (``stats.null_of_means``),
p = (1 + #{null >= estimate}) / (1 + n_null) (``stats.null_summary``), ``p_null`` choosing the
null behind p/q/z, Benjamini-Hochberg q over the ``ok`` pairs (``stats.bh_over_ok``).

Seeds and keys are the engine's (``estimators/seeding.py``, used by ``engine/planner.py``), so an aligned study with the same seed,
settings and data trains the same networks and draws the same shuffles and permutations (a
test runs both): task keys are ``"{x}~{y}/r{r}/obs"`` and ``"{x}~{y}/r{r}/s{j}"``
(``seeding.task_key``, which the planner uses too); with ``k = key_seed`` (the one
definition, ``seeding.key_seed``) a task trains with ``k(seed, key)``, a shuffle task permutes
Y's rows (and Y's ids) with ``seeding.shuffle_permutation(N, seeding.shuffle_seed(seed, key))``,
and an observed task permutes latents with
``k(seed, key + "/latent_perm")``.
"""
from __future__ import annotations

import itertools
import warnings
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from lmi_distributed import stats
from lmi_distributed.errors import ConfigError, InputError, LMIWarning

from .api import ProgressFn, _check_variable, _estimate_many, _split
from .seeding import key_seed, shuffle_permutation, shuffle_seed, task_key
from .settings import LMISettings, resolve_settings

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["pairwise", "PAIRWISE_COLUMNS", "P_NULLS", "task_seed"]

#: columns of the DataFrame :func:`pairwise` returns, in order (the null columns carry the
#: engine's ``pairs.parquet`` names: ``latent_*`` latent permutations, ``shuffle_*`` retrain shuffles)
PAIRWISE_COLUMNS = ["pair", "x", "y", "n", "replicates", "n_ok_replicates", "n_canonical", "estimate",
                    "sem",
                    "latent_n_null", "latent_null_mean", "latent_null_sd", "p_latent",
                    "shuffle_n_null", "shuffle_n_dropped", "shuffle_null_mean", "shuffle_null_sd", "p_shuffle",
                    "null", "null_mean", "null_sd", "p", "q", "z", "significant", "status", "detail"]

#: ``p_null`` values, as the engine's ``significance.p_null``
P_NULLS = ("auto", "latent_permutations", "retrain_shuffles")


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


def _check_ids(a: Any, n: int, name: str) -> np.ndarray:
    """``a`` as (n,) ids (any values, compared as strings by the split), else InputError."""
    try:
        arr = np.asarray(a)
    except (ValueError, TypeError) as exc:
        raise InputError(f"{name} is not an array of ids: {exc}") from None
    if arr.ndim != 1 or arr.shape[0] != n:
        raise InputError(f"{name} must be one id per row, shape ({n},), got shape {arr.shape}")
    if arr.dtype.kind == "f" and np.isnan(arr).any():
        raise InputError(f"{name} has NaN ids in {int(np.isnan(arr).sum())} of {n} rows")
    if arr.dtype.kind == "O":
        missing = [i for i, v in enumerate(arr) if v is None or (isinstance(v, float) and v != v)]
        if missing:
            raise InputError(f"{name} has missing ids (None/NaN) in {len(missing)} of {n} rows "
                             f"(rows {', '.join(map(str, missing[:5]))}{', ...' if len(missing) > 5 else ''})")
    return arr


def _resolve_ids(ids: Any, s: LMISettings, names: list[str], used: list[str], n: int) -> dict[str, np.ndarray] | None:
    """``{variable: (N,) ids}`` for ``split="ids"`` (None for ``split="rows"``); errors up front."""
    if ids is None:
        if s.split == "ids":
            raise InputError("split='ids' needs ids: one id per row shared by all variables (an (N,) "
                             "array), or {name: (N,) ids} for every paired variable")
        return None
    if s.split != "ids":
        raise ConfigError(f"pairwise: ids are used only by split='ids' (the held-out half chosen by id); "
                          f"got split={s.split!r} -- pass split='ids' or drop ids")
    if isinstance(ids, Mapping):
        keys = [str(k) for k in ids]
        unknown = [k for k in keys if k not in names]
        if unknown:
            raise InputError(f"ids names unknown variable(s) {unknown}; variables: {names}")
        missing = [v for v in used if v not in keys]
        if missing:
            raise InputError(f"ids has no entry for paired variable(s) {missing}: give {{name: (N,) ids}} "
                             f"for every variable in a pair, or one (N,) array shared by all")
        return {str(k): _check_ids(v, n, f"ids[{str(k)!r}]") for k, v in ids.items()}
    shared = _check_ids(ids, n, "ids")
    return {v: shared for v in names}


def pairwise(variables: Mapping[str, np.ndarray], pairs: str | Sequence[tuple[str, str]] = "all",
             replicates: int = 1, n_permutations: int = 0, seed: int = 0, alpha: float = 0.05, *,
             n_shuffles: int = 0, p_null: str = "auto",
             ids: Mapping[str, Any] | Any | None = None,
             progress: ProgressFn | None = None, **settings: Any) -> "pd.DataFrame":
    """LMI between named in-memory variables, with permutation p and BH q values.

    ``variables``: ``{name: (N, d_name) array}``, rows aligned (row i of every array is sample i).
    ``pairs``: "all" (every unordered pair, in dict order) or a list of ``(x, y)`` names.
    ``replicates``: trainings per pair (different seeds: split, init, minibatches).
    ``n_permutations``: latent permutations per observed training (the held-out Y latents
    permuted against X, KSG recomputed; cheap). ``n_shuffles``: retrain shuffles per replicate,
    the paper's null: a network trained anew on (X, Y with its rows shuffled); costs
    ``n_shuffles`` extra trainings per (pair, replicate), batched with the observed ones.
    99 draws give p >= 0.01.
    ``p_null``: the null behind ``null``/``null_mean``/``null_sd``/``p``/``q``/``z``:
    "latent_permutations", "retrain_shuffles", or "auto" (retrain shuffles when there are
    any, else latent permutations), as the engine's ``significance.p_null``.
    ``seed``: the screen's seed (seeds per task as the engine derives them, see the module).
    ``alpha``: ``significant = q <= alpha``. ``settings``: :class:`LMISettings` fields.
    ``ids`` (``split="ids"`` only, then required): one id per row shared by every variable, an
    (N,) array, or ``{name: (N,) ids}`` for every paired variable (e.g. kinase and target ids
    of each row). The held-out half is then the rows whose x and y ids are both in a seeded
    held-out id set (:mod:`.id_split`); rows mixing held-out and training ids are used by
    neither half. A shuffle task's Y ids move with Y's rows (as in the engine).

    Returns a pandas DataFrame, one row per pair, columns :data:`PAIRWISE_COLUMNS`: ``estimate``
    (mean MI over replicates, bits), ``sem`` (NaN with one replicate), ``n_canonical`` (ok observed
    replicates whose MI is the canonical view, :attr:`LMIResult.view`; the others: the latents), per
    null (``latent_*``, ``shuffle_*``) the number of draws, mean and sd of the null of replicate means (bits) and its
    p (``p_latent``, ``p_shuffle``; NaN without that null); ``null`` (which null feeds ``p``,
    or "none"), ``null_mean``/``null_sd``/``p``/``z`` from it, ``q`` (BH over the ok pairs),
    ``significant``, ``status``/``detail``. Shuffle trainings that are not ok are dropped from the
    shuffle null (draw j needs shuffle j of every replicate) and counted in ``shuffle_n_dropped``.

    A screen does not stop at one bad pair: a pair with a degenerate variable (e.g. constant) or
    an observed replicate whose training diverged is *flagged* -- status of its first non-ok
    replicate, NaN numbers, left out of q, ``significant`` False -- with an :class:`LMIWarning`.
    Malformed input (not 2-D, NaN/inf, unequal row counts, too few rows, unknown names, missing
    or wrong-length ids, an id split leaving too few rows) raises ``InputError`` before any
    training; bad options raise ``ConfigError``.
    """
    import pandas as pd

    s = resolve_settings(settings)
    if s.attribution:   # per-dimension arrays do not fit a row per pair: refused, not silently dropped
        raise ConfigError("pairwise: attribution=True is not supported (R^2 per dimension does not fit one row "
                          "per pair); use lmi.estimate(X, Y, attribution=True) or LMI(attribution=True).fit, "
                          "or a study with estimator.attribution: true (attribution.parquet)")
    replicates = _int_option(replicates, "replicates", 1)
    n_permutations = _int_option(n_permutations, "n_permutations", 0)
    n_shuffles = _int_option(n_shuffles, "n_shuffles", 0)
    seed = _int_option(seed, "seed", 0)
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ConfigError(f"pairwise: alpha must be a number in (0, 1), got {alpha!r}")
    if p_null not in P_NULLS:
        raise ConfigError(f"pairwise: p_null must be one of {P_NULLS}, got {p_null!r}")
    if p_null == "retrain_shuffles" and n_shuffles == 0:
        raise ConfigError("pairwise: p_null='retrain_shuffles', but n_shuffles is 0")
    if p_null == "latent_permutations" and n_permutations == 0:
        raise ConfigError("pairwise: p_null='latent_permutations', but n_permutations is 0")
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
    used = list(dict.fromkeys(v for p in plist for v in p))
    id_map = _resolve_ids(ids, s, list(arrays), used, n)

    # the engine's tasks, in its order: pairs, replicate, observed then shuffles 0..n_shuffles-1
    tasks = [(x, y, r, j, task_key(x, y, r, j)) for x, y in plist for r in range(replicates)
             for j in range(-1, n_shuffles)]
    data, task_ids, seeds = [], [], []
    for x, y, r, j, key in tasks:
        Y = arrays[y]
        y_ids = id_map[y] if id_map is not None else None
        if j >= 0:
            perm = shuffle_permutation(n, shuffle_seed(seed, key))
            Y = Y[perm]
            y_ids = y_ids[perm] if y_ids is not None else None
        data.append((arrays[x], Y))
        seeds.append(task_seed(seed, key))
        if id_map is not None:
            task_ids.append((id_map[x], y_ids))
            try:                        # cheap: an id split that leaves too few rows fails here
                _split(n, seeds[-1], s, task_ids[-1])
            except InputError as exc:
                raise InputError(f"pair {x}~{y}, task {key}: {exc}") from None
    results = _estimate_many(data, seeds, s, validate=False, progress=progress,
                             ids=task_ids if id_map is not None else None)

    obs: dict[tuple[str, str], list] = {}          # (x, y) -> [(r, result, latent null)]
    shuf: dict[tuple[str, str], np.ndarray] = {}   # (x, y) -> (R, n_shuffles) MI, NaN where not ok
    for (x, y, r, j, key), res in zip(tasks, results):
        if j < 0:
            null = np.zeros(0)
            if n_permutations and res.status == "ok":
                from .permutation import result_latent_null

                null = np.asarray(result_latent_null(res, n_permutations=n_permutations,
                                                     seed=task_seed(seed, key + "/latent_perm")), np.float64)
            obs.setdefault((x, y), []).append((r, res, null))
        else:
            m = shuf.setdefault((x, y), np.full((replicates, n_shuffles), np.nan))
            m[r, j] = res.mi if res.status == "ok" else np.nan

    nan = float("nan")
    out = []
    for x, y in plist:
        reps = obs[(x, y)]
        smat = shuf.get((x, y), np.zeros((replicates, 0)))
        n_dropped = int(np.isnan(smat).sum())
        row: dict[str, Any] = {"pair": f"{x}~{y}", "x": x, "y": y, "n": n, "replicates": replicates,
                               "shuffle_n_dropped": n_dropped}
        bad = [(r, res) for r, res, _ in reps if res.status != "ok"]
        row["n_ok_replicates"] = replicates - len(bad)
        row["n_canonical"] = sum(1 for _, res, _ in reps if res.status == "ok" and res.view == "canonical")
        if bad:      # flagged: which replicates fail is not random, so no partial mean
            r0, res0 = bad[0]
            detail = f"replicate {r0}: {res0.detail}" if res0.detail else f"replicate {r0}"
            row.update({c: nan for c in ("estimate", "sem", "latent_null_mean", "latent_null_sd", "p_latent",
                                         "shuffle_null_mean", "shuffle_null_sd", "p_shuffle", "null_mean",
                                         "null_sd", "p", "z")})
            row.update(latent_n_null=0, shuffle_n_null=0, null="none", status=res0.status,
                       detail=f"{detail}; {replicates - len(bad)} of {replicates} replicate(s) ok")
            warnings.warn(f"pair {x}~{y}: status {res0.status!r}, estimate is NaN: {row['detail']}",
                          LMIWarning, stacklevel=2)
            out.append(row)
            continue
        mi = np.array([res.mi for _, res, _ in reps])
        est = float(np.mean(mi))
        noted = [(r, res) for r, res, _ in reps if res.detail]   # ok with a caution (tied latents)
        row.update(estimate=est, sem=stats.sem(mi), status="ok",
                   detail=f"replicate {noted[0][0]}: {noted[0][1].detail}" if noted else "")
        if noted:
            warnings.warn(f"pair {x}~{y}: estimate {est:.4g} bits, {row['detail']}", LMIWarning, stacklevel=2)
        lnull = None
        if n_permutations:
            lnull = stats.null_of_means(np.stack([nl for *_, nl in reps]))
            m, sd, p = stats.null_summary(est, lnull)
            row.update(latent_n_null=n_permutations, latent_null_mean=m, latent_null_sd=sd, p_latent=p)
        else:
            row.update(latent_n_null=0, latent_null_mean=nan, latent_null_sd=nan, p_latent=nan)
        snull = None
        if n_shuffles:
            keep = ~np.isnan(smat).any(axis=0)     # draw j needs shuffle j of every replicate
            snull = stats.null_of_means(smat[:, keep]) if keep.any() else np.zeros(0)
            m, sd, p = stats.null_summary(est, snull)
            row.update(shuffle_n_null=int(snull.size), shuffle_null_mean=m, shuffle_null_sd=sd, p_shuffle=p)
            if n_dropped:
                warnings.warn(f"pair {x}~{y}: {n_dropped} of {smat.size} shuffle training(s) not ok; "
                              f"the retrain-shuffle null keeps {snull.size} of {n_shuffles} draws",
                              LMIWarning, stacklevel=2)
        else:
            row.update(shuffle_n_null=0, shuffle_null_mean=nan, shuffle_null_sd=nan, p_shuffle=nan)
        row.update(stats.chosen_null(est, p_null, snull, lnull))
        out.append(row)
    df = pd.DataFrame(out)
    df["q"], df["significant"] = stats.bh_over_ok(df["p"].to_numpy(np.float64), (df["status"] == "ok").to_numpy(),
                                                  alpha)
    for c in ("n", "replicates", "n_ok_replicates", "n_canonical", "latent_n_null", "shuffle_n_null",
              "shuffle_n_dropped"):
        df[c] = df[c].astype("int64")
    return df[PAIRWISE_COLUMNS]
