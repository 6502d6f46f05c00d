"""Pre-flight checks of a study: everything that can be known without training, before Ray starts.

``lmi-distributed plan``, ``run_study`` (before it connects to Ray or creates the output folder)
and ``jobs/all_pairs.py`` call :func:`preflight`, so the same mistake gives the same message
everywhere. Every problem found is collected, with its key path, into ONE ``ConfigError``:

- ``data.store`` exists and is a store (unless the study builds its demo store on the first run);
  ``data.truth`` exists and is JSON when given for a store that is not the demo's;
- every variable resolves against the store: its matrix exists, its ids, filter (``where``) and
  column block select something (``variables[i].matrix|ids|where|columns``);
- every pair can be paired (``pairing``), and the smallest pair's joint sample count N is enough
  for the estimator: N >= ``estimator.to_settings().min_samples()`` (more than k held-out and more
  than k training rows; ``estimator.k``);
- settings that contradict each other: a ``cupy`` KSG backend or ``require_gpu`` on CPU-only workers,
  a ``significance.p_null`` whose null the study does not draw;
- ``output.path``: not an existing file, not below a file, creatable and writable (checked with
  ``os.access`` and a probe file, so it also holds for root), not the data store itself.

Nothing is written (the probe file is removed at once) and Ray is not imported.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.errors import ConfigError, LMIError

__all__ = ["preflight", "check_study", "check_output_path", "PreflightInfo"]

Shape = tuple[int, int, int]


@dataclass
class PreflightInfo:
    """What the checks learned: pair shapes (n, d_x, d_y) when the store could be read."""

    store_exists: bool = False
    shapes: dict[tuple[str, str], Shape] = field(default_factory=dict)
    variables: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------- output path
def _probe_write(directory: Path) -> str | None:
    """None when a file can be created in ``directory``; else why not (os.access and a real
    probe file: root passes os.access everywhere but cannot write to /sys or a read-only mount)."""
    if not os.access(directory, os.W_OK | os.X_OK):
        return "no write permission"
    try:
        fd, probe = tempfile.mkstemp(prefix=".lmi-probe-", dir=directory)
    except OSError as exc:
        return exc.strerror or type(exc).__name__
    os.close(fd)
    os.unlink(probe)
    return None


def check_output_path(path: str | os.PathLike, key: str = "output.path") -> list[str]:
    """Problems with an output folder: an existing file, below a file, not creatable or not
    writable. Returns ``"  key: ..."`` lines (empty when the folder can be used)."""
    p = Path(path).expanduser().absolute()
    if p.exists():
        if not p.is_dir():
            return [f"  {key}: {p} exists and is not a directory"]
        why = _probe_write(p)
        return [f"  {key}: {p} is not writable ({why})"] if why else []
    anc = p.parent
    while not anc.exists() and anc != anc.parent:
        anc = anc.parent
    if not anc.is_dir():
        return [f"  {key}: {p} cannot be created: {anc} is a file, not a directory"]
    why = _probe_write(anc)
    if why:
        return [f"  {key}: {p} cannot be created: {anc} is not writable ({why})"]
    return []


# ---------------------------------------------------------------------- settings
def _settings_problems(cfg: StudyConfig) -> list[str]:
    """Settings that contradict each other (no data needed)."""
    errs: list[str] = []
    r, e = cfg.resources, cfg.estimator
    if r.gpus_per_worker == 0 and r.require_gpu:
        errs.append("  resources.require_gpu: true, but resources.gpus_per_worker is 0 (CPU workers)")
    if e.ksg_backend == "cupy" and r.gpus_per_worker == 0:
        errs.append("  estimator.ksg_backend: 'cupy' runs on GPU workers, but resources.gpus_per_worker is 0; "
                    "use 'auto' (CuPy on GPU workers, the tree on CPU ones)")
    if cfg.significance.p_null == "retrain_shuffles" and cfg.nulls.retrain_shuffles == 0:
        errs.append("  significance.p_null: 'retrain_shuffles', but nulls.retrain_shuffles is 0")
    if cfg.significance.p_null == "latent_permutations" and cfg.nulls.latent_permutations == 0:
        errs.append("  significance.p_null: 'latent_permutations', but nulls.latent_permutations is 0")
    return errs


def _paths_problems(cfg: StudyConfig, store_path: Path, out_dir: Path, output: bool) -> list[str]:
    errs: list[str] = []
    if output:
        errs += check_output_path(out_dir)
        if out_dir == store_path:
            errs.append(f"  output.path: {out_dir} is the data store itself (data.store); choose another folder")
    if cfg.data.truth and cfg.data.demo is None:
        tp = Path(cfg.data.truth).expanduser()
        if not tp.is_file():
            errs.append(f"  data.truth: {tp.absolute()} does not exist (or is not a file)")
        else:
            try:
                json.loads(tp.read_text())
            except (ValueError, OSError) as exc:
                errs.append(f"  data.truth: {tp.absolute()} is not readable JSON ({exc})")
    return errs


# ------------------------------------------------------------------------- data
def _variable_key(i: int, spec: Any, exc: Exception) -> str:
    """The most specific key path of a variable's DataError."""
    msg = str(exc)
    from lmi_distributed.data import FilterError

    low = msg.lower()
    if isinstance(exc, FilterError):
        return f"variables[{i}].where"
    if "unknown matrix" in low:
        return f"variables[{i}].matrix"
    if spec.where is not None and ("filter" in low or "obs column" in low):
        return f"variables[{i}].where"
    if spec.columns is not None and "column block" in low:
        return f"variables[{i}].columns"
    if spec.ids is not None and ("id" in low):
        return f"variables[{i}].ids"
    return f"variables[{i}]"


def _min_n_problem(cfg: StudyConfig, sizes: dict[tuple[str, str], int], source: str) -> list[str]:
    """``estimator.k``: the smallest pair's N against the estimator's minimum."""
    if not sizes:
        return []
    s = cfg.estimator.to_settings()
    need = s.min_samples()
    small = sorted((n, f"{x}~{y}") for (x, y), n in sizes.items() if n < need)
    if not small:
        return []
    n0, p0 = small[0]
    more = f"; {len(small)} pair(s) too small: " + ", ".join(f"{p} (N={n})" for n, p in small[:5]) \
        + (", ..." if len(small) > 5 else "") if len(small) > 1 else ""
    return [f"  estimator.k: k={s.k} with train_fraction {s.train_fraction:g} needs N >= {need} joint samples "
            f"per pair (more than k held-out and k training rows); the smallest pair {p0} has N={n0}"
            f"{source}{more}"]


def _demo_problems(cfg: StudyConfig, info: PreflightInfo) -> list[str]:
    """Checks against the demo store that the first run will build (matrices X0..X{t-1}, n x d)."""
    dm = cfg.data.demo
    if dm.kind == "lineage":  # the synthetic lineage store (engine/lineage.py)
        from lmi_distributed.engine.lineage import lineage_demo_problems
        return lineage_demo_problems(cfg, info)
    if dm.kind == "proteome":  # the interaction workflow's synthetic proteome (engine/interaction.py)
        from lmi_distributed.engine.interaction import proteome_demo_problems

        return proteome_demo_problems(cfg, info)
    names = [f"X{i}" for i in range(dm.t)]
    errs: list[str] = []
    for i, v in enumerate(cfg.variables):
        if v.matrix not in names:
            errs.append(f"  variables[{i}].matrix: variable {v.name!r}: unknown matrix {v.matrix!r} in the demo "
                        f"store (it will hold {names})")
        elif v.columns is not None and v.columns[1] > dm.d:
            errs.append(f"  variables[{i}].columns: variable {v.name!r}: column block [{v.columns[0]}, "
                        f"{v.columns[1]}) outside the demo matrices' {dm.d} columns")
    if not errs:
        errs += _min_n_problem(cfg, {p: dm.n for p in cfg.pair_list()}, " (the demo store's row count)")
    info.notes.append(f"store {cfg.data.store} not built yet: it is built on the first run")
    return errs


def _data_problems(cfg: StudyConfig, store_path: Path, info: PreflightInfo) -> list[str]:
    """Open the store, resolve every variable, pair every pair; N against the estimator."""
    from lmi_distributed.engine.study_data import open_store_cached, pair_shape, variable_spec

    if not store_path.exists():
        if cfg.data.demo is not None:
            return _demo_problems(cfg, info)
        return [f"  data.store: {store_path} does not exist"]
    try:
        store = open_store_cached(str(store_path))
    except (LMIError, OSError) as exc:
        return [f"  data.store: {exc}"]
    info.store_exists = True
    from lmi_distributed.data import resolve_variable

    errs: list[str] = []
    for i, v in enumerate(cfg.variables):
        spec = variable_spec(cfg, v.name)
        try:
            info.variables[v.name] = resolve_variable(store, spec)
        except (LMIError, OSError) as exc:
            errs.append(f"  {_variable_key(i, spec, exc)}: {exc}")
    sizes: dict[tuple[str, str], int] = {}
    for x, y in cfg.pair_list():
        if x not in info.variables or y not in info.variables:
            continue  # reported above
        try:
            shape = pair_shape(cfg, str(store_path), info.variables, x, y)
        except (LMIError, OSError) as exc:
            errs.append(f"  pairing: pair {x}~{y}: {exc}")
            continue
        info.shapes[(x, y)] = shape
        sizes[(x, y)] = shape[0]
    if cfg.kind == "lineage":  # obs columns the lineage outputs read (engine/lineage.py)
        from lmi_distributed.engine.lineage import lineage_input_problems
        errs += lineage_input_problems(cfg, store)
    for name, (r, c) in (cfg.output.image_shape or {}).items():   # attribution maps (engine/attribution.py)
        v = info.variables.get(name)
        if v is not None and r * c != v.n_features:
            errs.append(f"  output.image_shape.{name}: {r} x {c} = {r * c} pixels, but variable {name!r} "
                        f"has {v.n_features} features")
    return errs + _min_n_problem(cfg, sizes, "")


# -------------------------------------------------------------------------- api
def check_study(cfg: StudyConfig, *, data: bool = True, output: bool = True) -> tuple[list[str], PreflightInfo]:
    """All problems of a study that can be found without training: ``(lines, info)``.

    ``data``: open the store and resolve variables and pairs. ``output``: check ``output.path``.
    """
    from lmi_distributed.engine.study_data import out_dir_abs, store_path_abs

    info = PreflightInfo()
    store_path, out_dir = Path(store_path_abs(cfg)), Path(out_dir_abs(cfg))
    errs = _settings_problems(cfg) + _paths_problems(cfg, store_path, out_dir, output)
    if data:
        errs += _data_problems(cfg, store_path, info)
        if cfg.kind == "interaction" and info.store_exists:
            from lmi_distributed.engine.interaction import interaction_problems

            errs += interaction_problems(cfg, info)
    return errs, info


def preflight(cfg: StudyConfig, *, data: bool = True, output: bool = True,
              log: Callable[[str], None] | None = None) -> PreflightInfo:
    """Run :func:`check_study`; raise ONE ``ConfigError`` listing every problem (key path first).

    Called by ``plan``, ``run_study`` (before Ray starts and before the output folder exists)
    and ``jobs/all_pairs.py``. Returns what was learned (pair shapes) when all is well.
    """
    errs, info = check_study(cfg, data=data, output=output)
    if errs:
        raise ConfigError(f"study {cfg.name!r}: {len(errs)} problem(s) found before starting "
                          f"(nothing was run or written)\n" + "\n".join(errs))
    if log is not None:
        for note in info.notes:
            log(note)
    return info
