"""Study configuration: pydantic v2 models and a YAML loader whose errors name the key path.

A study (``configs/*.yaml``)::

    name: demo
    seed: 0
    data: {store: runs/demo/store.zarr, demo: {kind: gaussian_markov_chain, n: 1500, t: 5, k: 2, d: 12, rho: 0.8}}
    variables: [X0, X1, {name: A, matrix: M, columns: [0, 10]}]
    pairs: {all_pairs_of: [X0, X1, A]}        # or {explicit: [[X0, X1]]} or {x_set: [...], y_set: [...]}
    pairing: {rule: aligned}                  # aligned | join | grouped (fields: see lmi_distributed.data)
    replicates: 2                             # repeated pairings / trainings per pair
    nulls: {retrain_shuffles: 0, latent_permutations: 100}
    estimator: {}                             # LMISettings overrides; empty = the defaults
                                              # (the paper's: {contrastive_weight: 0, ksg_gaussianize: false, ksg_noise: 0, view: latents})
    resources: {workers: auto, gpus_per_worker: 1, pairs_per_batch: 16, cpu_fallback: true}
    output: {path: runs/demo}
    significance: {alpha: 0.05, p_null: auto}

Relative paths are resolved against the current directory when the study runs.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from lmi_distributed.engine.config_lineage import LineageConfig, LineageDemo, check_lineage
from lmi_distributed.engine.config_interaction import (InteractionConfig, ProteomeDemo, check_interaction,
                                                       interaction_defaults)
from lmi_distributed.errors import ConfigError
from lmi_distributed.estimators.settings import SettingsFields

__all__ = [
    "StudyConfig",
    "load_study",
    "parse_study",
    "apply_overrides",
    "format_validation_error",
]

_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DemoData(_Strict):
    """Build the store from synthetic data when it is missing (the demo study)."""

    kind: Literal["gaussian_markov_chain", "lineage", "proteome"] = "gaussian_markov_chain"
    n: int = Field(1500, ge=20, description="rows (samples)")
    t: int = Field(5, ge=2, description="number of variables (chain length)")
    k: int = Field(2, ge=1, description="dependent dimensions per link")
    d: int = Field(12, ge=1, description="features per variable")
    rho: float = Field(0.8, gt=-1.0, lt=1.0, description="correlation between consecutive links")
    seed: int = 0
    proteome: Optional[ProteomeDemo] = None  # kind proteome: engine/config_interaction.py
    lineage: Optional[LineageDemo] = Field(None, description="kind lineage: synthetic_lineage parameters "
                                           "(n, t, k, d, rho are the Gaussian chain's and not used)")

    @model_validator(mode="after")
    def _lineage_block(self) -> "DemoData":
        if self.kind == "lineage" and self.lineage is None:
            self.lineage = LineageDemo()
        if self.kind != "lineage" and self.lineage is not None:
            raise ValueError("'lineage' is only for kind: lineage")
        return self


class DataConfig(_Strict):
    store: str = Field(..., min_length=1, description="path of the Zarr store")
    demo: Optional[DemoData] = None
    truth: Optional[str] = Field(
        None, description="JSON with known pairwise MI in bits ({'pairs': {'X~Y': bits}}), for the report"
    )


class VariableConfig(_Strict):
    """One variable: rows x features of a store matrix (fields of ``data.VariableSpec``)."""

    name: str
    matrix: str
    where: Optional[str] = None
    ids: Optional[Union[list[str], str]] = None
    columns: Optional[tuple[int, int]] = None

    @field_validator("name")
    @classmethod
    def _name_ok(cls, v: str) -> str:
        if not _NAME_RE.match(v):
            raise ValueError("a variable name of letters, digits, '_', '.', '-'")
        return v


class PairsConfig(_Strict):
    """Exactly one of: ``explicit`` list, ``all_pairs_of`` a set, or ``x_set`` x ``y_set``."""

    explicit: Optional[list[tuple[str, str]]] = None
    all_pairs_of: Optional[Union[list[str], Literal["all"]]] = None
    x_set: Optional[list[str]] = None
    y_set: Optional[list[str]] = None

    @model_validator(mode="after")
    def _one_form(self) -> "PairsConfig":
        forms = [self.explicit is not None, self.all_pairs_of is not None,
                 self.x_set is not None or self.y_set is not None]
        if sum(forms) != 1:
            raise ValueError("exactly one of 'explicit', 'all_pairs_of', or 'x_set' with 'y_set'")
        if forms[2] and (self.x_set is None or self.y_set is None):
            raise ValueError("'x_set' and 'y_set' together")
        return self


class PairingConfig(BaseModel):
    """Pairing rule; the fields beyond ``rule`` are those of ``data.PairingSpec``."""

    model_config = ConfigDict(extra="allow")
    rule: Literal["aligned", "join", "grouped"] = "aligned"


class NullsConfig(_Strict):
    retrain_shuffles: int = Field(0, ge=0, description="paper's null: shuffle Y rows, train anew")
    latent_permutations: int = Field(100, ge=0, description="permute held-out Y latents, recompute KSG")


class EstimatorConfig(SettingsFields):
    """The study's ``estimator`` block: the fields of ``LMISettings`` (one model, defined in
    ``estimators/settings.py``; defaults are its, the paper's but for ``settings.PAPER``'s three).
    ``device`` and ``num_threads`` are set
    per worker by the engine from ``resources``, so a study may not set them, and they are left
    out of its dumps (``study.json`` reads back as a valid study)."""

    device: str = Field("cpu", exclude=True)
    num_threads: Optional[int] = Field(None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _engine_owned(cls, v: Any) -> Any:
        if isinstance(v, dict):
            for key, instead in (("device", "resources.gpus_per_worker"), ("num_threads", "resources.torch_threads")):
                if key in v:
                    raise ValueError(f"'{key}' is set per worker by the engine; use {instead}")
        return v


class ResourcesConfig(_Strict):
    workers: Union[int, Literal["auto"]] = Field("auto", description="actors; auto = one per GPU (or per CPU slot)")
    gpus_per_worker: float = Field(1.0, ge=0, description="fractional allowed (e.g. 0.5: two actors share a GPU)")
    cpus_per_worker: float = Field(1.0, gt=0)
    torch_threads: Optional[int] = Field(None, ge=1, description="default: cpus_per_worker rounded, at least 1")
    pairs_per_batch: int = Field(16, ge=1, description="tasks (trainings) per batched model")
    max_in_flight_per_worker: int = Field(2, ge=1)
    cpu_fallback: bool = True
    require_gpu: bool = False
    max_restarts: int = Field(3, ge=0, description="actor restarts after a crash")
    worker_restart_s: float = Field(120.0, gt=0, description="seconds a worker that lost a batch may take to "
                                    "answer again (a restart: a new process that imports torch) before it "
                                    "counts as gone for good; raise it on heavily loaded nodes")
    max_task_retries: int = Field(2, ge=0, description="deprecated, ignored: Ray retries no batch itself; "
                                  "every try counts toward max_batch_attempts")
    max_batch_attempts: int = Field(3, ge=1, description="tries per batch in all (exceptions and lost workers); "
                                    "then its tasks are recorded as failed and retried by the next run")

    @field_validator("workers")
    @classmethod
    def _workers_pos(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("a positive integer or 'auto'")
        return v

    @field_validator("gpus_per_worker")
    @classmethod
    def _gpu_frac(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError("a fraction <= 1 or a whole number of GPUs")
        return v


class OutputConfig(_Strict):
    path: str = Field(..., min_length=1)
    save_pmi: Literal["observed", "all", "none"] = "observed"
    report: bool = True
    #: attribution: variables whose dims are an image ({name: [rows, cols]}, e.g. 8x8 digits)
    image_shape: Optional[dict[str, tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]]] = None


class SignificanceConfig(_Strict):
    alpha: float = Field(0.05, gt=0, lt=1)
    p_null: Literal["auto", "retrain_shuffles", "latent_permutations"] = Field(
        "auto", description="null behind p/q; auto = retrain_shuffles if any, else latent_permutations"
    )


class StudyConfig(_Strict):
    name: str = Field(..., min_length=1)
    kind: Literal["pairs", "lineage", "interaction"] = "pairs"
    lineage: Optional[LineageConfig] = None
    description: str = ""
    seed: int = Field(0, ge=0)
    data: DataConfig
    variables: list[VariableConfig] = Field(..., min_length=1)
    pairs: PairsConfig
    pairing: PairingConfig = Field(default_factory=PairingConfig)
    replicates: int = Field(1, ge=1)
    nulls: NullsConfig = Field(default_factory=NullsConfig)
    estimator: EstimatorConfig = Field(default_factory=EstimatorConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    output: OutputConfig
    significance: SignificanceConfig = Field(default_factory=SignificanceConfig)
    interaction: Optional[InteractionConfig] = None  # kind interaction: engine/config_interaction.py

    _interaction_defaults = model_validator(mode="after")(interaction_defaults)

    @model_validator(mode="after")
    def _kind_block(self) -> "StudyConfig":
        for k in ("lineage",):
            if (self.kind == k) != (getattr(self, k) is not None):
                raise ValueError(f"'{k}' block is required for kind: {k} and only allowed there (kind is {self.kind!r})")
        return self

    @field_validator("variables", mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        # "X0" is short for {name: X0, matrix: X0}
        if isinstance(v, list):
            return [{"name": e, "matrix": e} if isinstance(e, str) else e for e in v]
        return v

    # ------------------------------------------------------------------ derived
    @property
    def variable_names(self) -> list[str]:
        return [v.name for v in self.variables]

    def variable(self, name: str) -> VariableConfig:
        for v in self.variables:
            if v.name == name:
                return v
        raise KeyError(name)

    def pair_list(self) -> list[tuple[str, str]]:
        """Ordered, de-duplicated (x, y) pairs of the study."""
        p = self.pairs
        if p.explicit is not None:
            out = [tuple(e) for e in p.explicit]
        elif p.all_pairs_of is not None:
            names = self.variable_names if p.all_pairs_of == "all" else list(p.all_pairs_of)
            out = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        else:
            out = [(a, b) for a in p.x_set for b in p.y_set if a != b]
        seen: set[tuple[str, str]] = set()
        uniq = []
        for e in out:
            if e not in seen:
                seen.add(e)
                uniq.append(e)
        return uniq  # type: ignore[return-value]

    def estimator_settings(self, device: str = "cpu"):
        """The study's ``LMISettings`` on ``device`` (the worker's)."""
        return self.estimator.to_settings(device=device)

    def fingerprint(self) -> str:
        """Hash of everything that changes a task's numbers (not pairs, replicates, resources).

        Adding pairs, replicates or shuffles to a finished study reuses its finished tasks;
        changing the seed, data, variables, pairing or estimator settings does not.
        """
        blob = {
            "seed": self.seed,
            "data": self.data.model_dump(exclude={"truth"}),
            "variables": [v.model_dump() for v in self.variables],
            "pairing": self.pairing.model_dump(),
            # only the settings that change numbers: turning attribution on for a finished study
            # keeps its tasks, and resume recomputes only those without arrays (ResultStore.repair)
            "estimator": self.estimator.numbers_dump(),
            "latent_permutations": self.nulls.latent_permutations,
            "save_pmi": self.output.save_pmi,
        }
        if self.interaction is not None:
            blob["interaction"] = self.interaction.fingerprint_fields()
        for block in ("proteome", "lineage"):   # fingerprints of studies before these demos existed stay
            if blob["data"].get("demo") and blob["data"]["demo"].get(block) is None:
                blob["data"]["demo"].pop(block, None)
        return hashlib.blake2b(json.dumps(blob, sort_keys=True, default=str).encode(), digest_size=10).hexdigest()


def image_shape_problems(cfg: StudyConfig) -> list[str]:
    """Config check of ``output.image_shape``: named variables exist, attribution is on."""
    shapes = cfg.output.image_shape or {}
    errs = []
    for name in shapes:
        if name not in cfg.variable_names:
            errs.append(f"  output.image_shape.{name}: expected one of the variables {cfg.variable_names}")
    if shapes and not cfg.estimator.attribution:
        errs.append("  output.image_shape: only used by attribution; set estimator.attribution: true")
    return errs


# ---------------------------------------------------------------------- loading
def _loc_str(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def format_validation_error(exc: ValidationError, source: str = "study config") -> str:
    """One line per problem: ``key.path[i]: expected ... (got ...)``."""
    lines = [f"{source}: {exc.error_count()} problem(s)"]
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and ("function-after" in p or "[" in p and "]" in p and p.startswith(("list", "tuple", "union", "literal")))))
        typ = err.get("type", "")
        msg = err.get("msg", "")
        if typ == "extra_forbidden":
            text = "unknown key (not expected here)"
        elif typ == "missing":
            text = "missing required key"
        else:
            text = "expected " + msg[0].lower() + msg[1:] if msg else "invalid"
            text = text.replace("expected value error, ", "expected ").replace("expected input should be", "expected")
            if "input" in err and typ not in ("missing",):
                got = repr(err["input"])
                if len(got) > 80:
                    got = got[:77] + "..."
                text += f" (got {got})"
        lines.append(f"  {_loc_str(loc)}: {text}")
    return "\n".join(lines)


def _check_references(cfg: StudyConfig) -> list[str]:
    errs: list[str] = []
    names = cfg.variable_names
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            errs.append(f"  variables[{i}].name: expected a unique variable name (got {n!r} twice)")
        seen.add(n)
    known = set(names)
    p = cfg.pairs
    if p.explicit is not None:
        for i, (a, b) in enumerate(p.explicit):
            for j, n in enumerate((a, b)):
                if n not in known:
                    errs.append(f"  pairs.explicit[{i}][{j}]: expected one of the variables {names} (got {n!r})")
            if a == b:
                errs.append(f"  pairs.explicit[{i}]: expected two different variables (got {a!r} twice)")
    if isinstance(p.all_pairs_of, list):
        for i, n in enumerate(p.all_pairs_of):
            if n not in known:
                errs.append(f"  pairs.all_pairs_of[{i}]: expected one of the variables {names} (got {n!r})")
    for key in ("x_set", "y_set"):
        for i, n in enumerate(getattr(p, key) or []):
            if n not in known:
                errs.append(f"  pairs.{key}[{i}]: expected one of the variables {names} (got {n!r})")
    if not errs and not cfg.pair_list():
        errs.append("  pairs: expected at least one pair of different variables")
    return errs


def _check_pairing(cfg: StudyConfig) -> list[str]:
    """Validate ``pairing`` against data.PairingSpec when the data layer is available."""
    try:
        from lmi_distributed.data import PairingSpec  # type: ignore[attr-defined]
        from pydantic import TypeAdapter
    except ImportError:  # data layer not installed: the rule literal was checked already
        return []
    try:
        TypeAdapter(PairingSpec).validate_python(cfg.pairing.model_dump())
    except ValidationError as exc:
        return ["  pairing." + ln.strip() if not ln.strip().startswith("(") else "  pairing" + ln.strip()[12:]
                for ln in format_validation_error(exc).splitlines()[1:]]
    except Exception as exc:  # noqa: BLE001
        return [f"  pairing: {exc}"]
    return []


def _check_filters(cfg: StudyConfig) -> list[str]:
    """Each variable's ``where`` filter, checked without data (syntax, allowed forms, sizes,
    literal zero divisors) so a bad filter fails at config load, before any store is read."""
    from lmi_distributed.data import FilterError, validate_filter

    errs = []
    for i, v in enumerate(cfg.variables):
        if v.where is None:
            continue
        try:
            validate_filter(v.where, f"variable {v.name!r}")
        except FilterError as exc:
            errs.append(f"  variables[{i}].where: {exc}")
    return errs


def parse_study(raw: Any, source: str = "study config") -> StudyConfig:
    """Validate a dict as a study; raise ConfigError naming each bad key path."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of study keys at the top level (got {type(raw).__name__})")
    pairing = raw.get("pairing")
    if isinstance(pairing, dict) and any(isinstance(k, bool) for k in pairing):
        raise ConfigError(f"{source}: pairing.on: YAML reads a bare `on` key as true; quote it: \"on\": ids")
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
    errs = (_check_references(cfg) + _check_pairing(cfg) + _check_filters(cfg) + image_shape_problems(cfg)
            + check_interaction(cfg))
    if not errs:
        errs += check_lineage(cfg)
    if errs:
        raise ConfigError(f"{source}: {len(errs)} problem(s)\n" + "\n".join(errs))
    return cfg


def _set_dotted(d: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    cur = d
    for p in parts[:-1]:
        if not isinstance(cur.get(p), dict):
            cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str] | None) -> dict:
    """Apply ``key.path=value`` overrides (value parsed as YAML) to a raw study dict."""
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY.PATH=VALUE")
        key, val = item.split("=", 1)
        _set_dotted(raw, key.strip(), yaml.safe_load(val))
    return raw


def load_study(path: str | Path, overrides: list[str] | None = None) -> StudyConfig:
    """Read and validate a study YAML file (with optional ``key.path=value`` overrides)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: study config file not found")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: not valid YAML: {exc}") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides)
    return parse_study(raw, source=str(p))
