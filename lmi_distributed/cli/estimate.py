"""`lmi-distributed estimate X Y`: the LMI estimate of one pair of matrices, in bits.

X and Y are ``.npy`` files, AnnData ``.h5ad`` (its ``X``), Parquet/CSV/TSV embedding tables
(read as ``ingest`` reads them: an optional id column plus numeric vector columns, or one list
column), or ``STORE.zarr::MATRIX`` (a matrix of a dataset store). Rows are paired by position.

Examples::

    lmi-distributed estimate x.npy y.npy
    lmi-distributed estimate cells.h5ad proteins.parquet --permutations 100 --json
    lmi-distributed estimate data/store.zarr::rna data/store.zarr::atac --set max_epochs=50 --set lr=1e-3

Exit codes: 0 the estimate is ok; 2 a user error (missing file, wrong format, unknown setting,
row counts differ; one ``error:`` line); 3 the estimate ran but its status is not ok
(``degenerate``/``diverged``/``failed``; MI is NaN, the status and detail are printed).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

#: Exit code of an estimate whose status is not "ok".
EXIT_NOT_OK = 3


def read_matrix(spec: str, spool_dir: str | None = None) -> "np.ndarray":
    """The (N, d) float array named by ``spec`` (see the module docstring); DataError otherwise.

    A 1-D ``.npy`` is read as one feature, (N, 1)."""
    import numpy as np

    from lmi_distributed.errors import DataError

    if "::" in spec:
        from lmi_distributed.data import open_store

        store, name = spec.rsplit("::", 1)
        if not store or not name:
            raise DataError(f"{spec!r}: write a stored matrix as STORE::MATRIX, e.g. data/store.zarr::rna")
        if not Path(store).exists():
            raise DataError(f"{spec}: store {store} does not exist")
        return open_store(store).matrix(name).read_all()
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file")
    if path.suffix.lower() == ".npy":
        try:
            a = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise DataError(f"{spec}: not a readable .npy array ({exc})") from None
        if not isinstance(a, np.ndarray):
            raise DataError(f"{spec}: not a .npy array")
        if a.dtype.kind not in "fiub":
            raise DataError(f"{spec}: expected numbers, got dtype {a.dtype}")
        if a.ndim == 1:
            a = a.reshape(-1, 1)
        if a.ndim != 2:
            raise DataError(f"{spec}: expected an (N, d) matrix, got shape {a.shape}")
        return a
    from lmi_distributed.data.sources import open_source

    src = open_source(path, spool_dir=spool_dir)
    try:
        return src.read(0, src.n_rows)
    finally:
        src.close()


def parse_settings(items: list[str]) -> dict[str, Any]:
    """``NAME=VALUE`` items (values read as YAML) validated by ``LMISettings``; ConfigError on an
    unknown name or a bad value. Returns the given settings only (the rest keep their defaults)."""
    import yaml

    from lmi_distributed.errors import ConfigError
    from lmi_distributed.estimators.settings import LMISettings

    out: dict[str, Any] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE, e.g. --set max_epochs=50")
        try:
            out[name.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({exc})") from None
    LMISettings(**out)  # raises ConfigError naming the bad setting and the valid names
    return out


def _num(v: Any) -> Any:
    """JSON-safe: NaN/inf -> None."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _estimate(args: argparse.Namespace) -> int:
    import tempfile
    import warnings

    import numpy as np

    from lmi_distributed import stats
    from lmi_distributed.errors import DataError, InputError, LMIWarning

    if args.permutations < 0:
        raise InputError(f"--permutations must be >= 0, got {args.permutations}")
    if args.seed < 0:
        raise InputError(f"--seed must be >= 0, got {args.seed}")
    settings = parse_settings(args.set or [])
    with tempfile.TemporaryDirectory(prefix="lmi-estimate-") as spool:
        X = read_matrix(args.x, spool)
        Y = read_matrix(args.y, spool)
    if X.shape[0] != Y.shape[0]:
        raise DataError(f"rows are paired by position, but {args.x} has {X.shape[0]} rows and {args.y} has "
                        f"{Y.shape[0]}")
    from lmi_distributed import estimate

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LMIWarning)  # the status is printed below
        res = estimate(X, Y, seed=args.seed, **settings)
        null = None
        if args.permutations > 0:
            from lmi_distributed.estimators.permutation import result_latent_null
            from lmi_distributed.engine.seeds import derive_seed

            null = np.asarray(result_latent_null(res, n_permutations=args.permutations,
                                                 seed=derive_seed(args.seed, "latent_perm")), dtype=np.float64)
    ok = res.status == "ok"
    n_null = int(np.isfinite(null).sum()) if null is not None else 0
    p = stats.permutation_pvalue(res.mi, null) if ok and n_null > 0 else None
    detail = res.detail
    if null is not None and ok and n_null == 0:
        detail = (detail + "; " if detail else "") + "no latent null: permutations could tie (set ksg_noise)"
    out = {"mi_bits": _num(float(res.mi)), "status": res.status, "detail": detail, "n": int(X.shape[0]),
           "n_test": int(np.asarray(res.test_idx).size), "epochs": int(res.epochs),
           "best_epoch": int(res.best_epoch), "seed": int(args.seed), "p": p,
           "n_permutations": n_null if null is not None else 0, "view": res.view,
           "mi_latents_bits": _num(float(res.mi_latents)), "mi_canonical_bits": _num(float(res.mi_canonical)),
           "canonical_bias_bits": _num(float(res.canonical_bias)),
           "settings": res.settings.model_dump(mode="json")}
    if args.json:
        print(json.dumps(out))
    elif ok:
        line = (f"MI = {res.mi:.4f} bits (status ok; N={out['n']}, {out['n_test']} held-out rows, "
                f"{out['epochs']} epochs, best {out['best_epoch']}, seed {args.seed}, view {res.view})")
        if p is not None:
            line += f"; p = {p:.4g} ({n_null} latent permutations)"
        elif null is not None:
            line += f"; p not computed ({detail})"
        print(line)
    else:
        print(f"MI = NaN: status {res.status}: {res.detail} (N={out['n']}, seed {args.seed})")
    return 0 if ok else EXIT_NOT_OK


def register(subparsers) -> None:
    """Add the ``estimate`` subcommand."""
    p = subparsers.add_parser(
        "estimate", help="estimate the LMI (bits) of one pair of matrices (.npy, .h5ad, Parquet, STORE::MATRIX)",
        description=__doc__.split("\n\n", 1)[1], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("x", metavar="X", help="first variable: .npy, .h5ad, .parquet/.csv/.tsv, or STORE.zarr::MATRIX")
    p.add_argument("y", metavar="Y", help="second variable (same number of rows, paired by position)")
    p.add_argument("--permutations", type=int, default=0, metavar="B",
                   help="latent permutation null of B draws and its p-value (default: none)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, init, minibatches and permutations")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                   help="estimator setting (LMISettings), e.g. --set max_epochs=50 --set lr=1e-3")
    p.set_defaults(func=_estimate)
