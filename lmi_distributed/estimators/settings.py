"""Estimator settings: ONE pydantic model for the Python API and the study config.

``LMISettings`` is what ``estimate(X, Y, **settings)`` builds and what a study's ``estimator:``
block is validated against (the study's ``estimator`` block nests its fields), so the same
mistake gives the same message everywhere and a new setting cannot drift between the two.
Defaults are the paper's / latentmi 0.1.3's, except three chosen by the accuracy suite (issue 11):
an InfoNCE term on the latents (``contrastive_weight=1``), Gaussianised latents before KSG
(``ksg_gaussianize=True``) and latentmi's tie-breaking jitter, seeded (``ksg_noise=1e-10``).
:data:`PAPER` gives back the paper's estimator as computed here before (no jitter) exactly.

Every number must be finite (``lr: .inf`` or NaN is rejected), integers must be integers (not
``True``, not ``2.5``), unknown names are rejected with the list of valid ones. Errors raised
when the model is built directly are :class:`~lmi_distributed.errors.ConfigError`; inside a study
config they are reported with their key path (``estimator.lr``).
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

import numpy as np
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from lmi_distributed.errors import ConfigError

__all__ = ["LMISettings", "SettingsFields", "SETTING_NAMES", "KSG_BACKENDS", "PAPER", "resolve_settings",
           "settings_error"]

#: The paper's estimator, exactly as this package computed it before issue 11: the four settings
#: whose defaults now differ (docs/estimator.md "Accuracy suite"). ``estimate(X, Y, **PAPER)``,
#: ``LMI(**PAPER)``, ``LMISettings.paper()``, or in a study config ``estimator: {contrastive_weight: 0,
#: ksg_gaussianize: false, ksg_noise: 0, view: latents}``; studies computed before the defaults changed resume with these.
PAPER: dict[str, Any] = {"contrastive_weight": 0.0, "ksg_gaussianize": False, "ksg_noise": 0.0, "view": "latents"}

#: neighbour backends of the KSG estimator (``estimators.neighbors``)
KSG_BACKENDS = ("auto", "tree", "tiled", "cupy")
_DEVICE_RE = re.compile(r"^(cpu|cuda(:\d+)?)$")


def _strict_int(v: Any) -> Any:
    """Integers only: reject bools, strings and non-integral floats (pydantic would coerce them)."""
    if isinstance(v, bool) or isinstance(v, str):
        raise ValueError("an integer")
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, float) and not v.is_integer():
        raise ValueError("an integer")
    return v


def _real(v: Any) -> Any:
    """Real numbers only: reject bools. A numeric string is read as a number, because YAML 1.1
    (PyYAML) reads ``lr: 1e-3`` -- no dot -- as the string "1e-3"."""
    if isinstance(v, bool):
        raise ValueError("a number")
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            raise ValueError("a number") from None
    if isinstance(v, (np.floating, np.integer)):
        return float(v)
    return v


Int = Annotated[int, BeforeValidator(_strict_int)]
Real = Annotated[float, BeforeValidator(_real)]


class SettingsFields(BaseModel):
    """The estimator settings' fields and checks (units: rows, epochs, dims; lr per Adam step).

    A study config nests this class (pydantic then reports ``estimator.lr`` key paths);
    user code builds :class:`LMISettings`, the same fields raising ``ConfigError``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, validate_default=True)

    latent_dim: Int = Field(8, ge=1, description="latent dims per variable")
    hidden: Optional[Int] = Field(None, ge=4, description="None: 1024, or 2**floor(log2 d) when d > 2048")
    batch_size: Int = Field(512, ge=1)
    lr: Real = Field(1e-4, gt=0, description="Adam learning rate")
    adam_eps: Real = Field(1e-7, gt=0)
    max_epochs: Int = Field(300, ge=1)
    patience: Int = Field(30, ge=1, description="early stopping: epochs without held-out improvement")
    train_fraction: Real = Field(0.5, gt=0, lt=1)
    split: Literal["rows", "ids"] = Field(
        "rows", description="'rows': random rows; 'ids': held-out ids, no id in both halves (needs ids=)")
    clip: Real = Field(10.0, gt=0, description="z-scores are clipped to +-clip")
    k: Int = Field(3, ge=1, description="KSG neighbours")
    ksg_noise: Real = Field(1e-10, ge=0, description="seeded uniform [0, noise) jitter on latents before KSG "
                                                     "(latentmi's 1e-10, unseeded there; breaks exact ties)")
    ksg_gaussianize: bool = Field(True, description="map every latent dim to normal scores by its held-out "
                                                    "empirical CDF, keeping its robust scale, before KSG "
                                                    "(estimators.gaussianize); False: the paper's")
    ksg_backend: Literal["auto", "tree", "tiled", "cupy"] = "auto"
    device: str = Field("cpu", description="'cpu', 'cuda' or 'cuda:i' (a study's workers set it)")
    dtype: Literal["float32", "float64"] = "float32"
    precision: Literal["float32", "tf32", "bf16"] = Field(
        "float32", description="training matmuls; tf32/bf16 are faster on GPUs (docs/estimator.md)")
    num_threads: Optional[Int] = Field(None, ge=1, description="torch CPU threads; None: leave torch's setting")
    restore_best: bool = Field(True, description="False: keep the last epoch's weights (latentmi's effective behaviour)")
    attribution: bool = Field(
        False, description="True: per-dimension held-out R^2 of each cross-decoder (LMIResult.r2_x / r2_y; "
                           "one extra held-out forward pass; paper A.2.3)")
    # -- beyond the paper (issue 11); PAPER sets the paper's values -----------------------------
    contrastive_weight: Real = Field(
        1.0, ge=0, description="weight of an InfoNCE term on the latents added to the training and held-out "
                               "loss (estimators.contrastive); 0: the paper's loss")
    contrastive_temperature: Real = Field(3.0, gt=0, description="temperature of the InfoNCE cosine critic")
    self_weight: Real = Field(1.0, ge=0, description="weight of the two self-reconstruction MSEs in the "
                                                      "training loss (latentmi's alpha); 1: the paper's loss")
    view: Literal["select", "latents"] = Field(
        "select", description="'select': KSG also reads the top canonical variates of the inputs' normal "
                              "scores (width chosen on the training rows) and the larger held-out estimate "
                              "is reported (estimators.canonical); 'latents': the latents only, the paper's")
    view_bias: Literal["gaussian", "none"] = Field(
        "gaussian", description="'gaussian': subtract from the canonical view's KSG estimate KSG's bias at a "
                                "Gaussian with the view's cross-fitted correlations at its held-out variates' sds, simulated "
                                "(estimators.canonical.ksg_gaussian_bias); 'none': the KSG estimate as read "
                                "(session 7). No effect with view='latents'")

    @field_validator("device")
    @classmethod
    def _device_ok(cls, v: str) -> str:
        if not _DEVICE_RE.match(v):
            raise ValueError("'cpu', 'cuda' or 'cuda:i'")
        return v

    def to_settings(self, **changes: Any) -> "LMISettings":
        """These settings (with ``changes``) as a validated :class:`LMISettings`."""
        return LMISettings(**{**self.model_dump(), **changes})

    def replace(self, **changes: Any) -> "LMISettings":
        """A validated copy with ``changes`` applied (``model_copy`` would skip validation)."""
        return self.to_settings(**changes)

    def numbers_dump(self) -> dict[str, Any]:
        """The settings that change an estimate's numbers, for fingerprints (a study resumes only
        on results computed with the same ones). Left out: ``attribution`` (it adds arrays, changes
        no number) and the settings beyond the paper while they have the paper's values
        (contrastive weight 0 with its temperature, ``ksg_gaussianize`` False, ``self_weight`` 1,
        ``view`` "latents"; ``view_bias`` while the view is "latents" or the bias is "none", its
        behaviour before the setting existed), so a study computed with the paper's estimator before these settings existed keeps its
        fingerprint when run with :data:`PAPER` (``ksg_noise`` is always in: it always existed)."""
        d = self.model_dump()
        d.pop("attribution", None)
        if not d.get("contrastive_weight"):
            d.pop("contrastive_weight", None)
            d.pop("contrastive_temperature", None)
        if not d.get("ksg_gaussianize"):
            d.pop("ksg_gaussianize", None)
        if d.get("self_weight") == 1.0:
            d.pop("self_weight", None)
        if d.get("view") == "latents" or d.get("view_bias") == "none":
            d.pop("view_bias", None)
        if d.get("view") == "latents":
            d.pop("view", None)
        return d

    def min_samples(self) -> int:
        """Smallest N this estimator accepts: more than k held-out rows (KSG needs k
        neighbours of every held-out point) and more than k training rows; N >= 2(k+1) at
        the default 50/50 split."""
        n = 2
        while int(n * self.train_fraction) < self.k + 1 or n - int(n * self.train_fraction) < self.k + 1:
            n += 1
        return n


class LMISettings(SettingsFields):
    """Estimator settings; defaults are the paper's (latentmi 0.1.3) but for :data:`PAPER`'s four.
    Frozen; a bad or unknown setting raises :class:`~lmi_distributed.errors.ConfigError` naming it."""

    @classmethod
    def paper(cls, **changes: Any) -> "LMISettings":
        """The paper's estimator exactly (latentmi 0.1.3's settings: :data:`PAPER` over the
        defaults), with ``changes``."""
        return cls(**{**PAPER, **changes})

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise settings_error(exc) from None


SETTING_NAMES: tuple[str, ...] = tuple(LMISettings.model_fields)


def settings_error(exc: ValidationError, prefix: str = "LMISettings") -> ConfigError:
    """One line per bad setting: ``LMISettings.lr: expected ... (got inf)``; unknown names list
    the valid ones."""
    lines = []
    for err in exc.errors(include_url=False):
        name = ".".join(str(p) for p in err["loc"][:1]) or "(settings)"
        if err["type"] == "extra_forbidden":
            lines.append(f"unknown setting {name!r}; valid settings: {', '.join(SETTING_NAMES)}")
            continue
        msg = err.get("msg", "invalid").replace("Value error, ", "").replace("Input should be ", "")
        lines.append(f"{prefix}.{name}: expected {msg[0].lower() + msg[1:]} (got {err.get('input')!r})")
    return ConfigError("; ".join(lines))


def resolve_settings(settings: dict[str, Any]) -> LMISettings:
    """Build :class:`LMISettings` from keyword arguments. ``settings=LMISettings(...)`` may be
    given as a base that the other keywords override. Unknown names raise ``ConfigError``
    listing the valid ones."""
    settings = dict(settings)
    base = settings.pop("settings", None)
    if base is None:
        return LMISettings(**settings)
    if not isinstance(base, LMISettings):
        raise ConfigError(f"settings= must be an LMISettings, got {type(base).__name__}")
    return base.replace(**settings)
