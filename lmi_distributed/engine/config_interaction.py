"""The ``interaction`` block of a study (``kind: interaction``, paper section 4.1) and the
synthetic-proteome demo block (``data.demo: {kind: proteome, proteome: {...}}``).

A study of kind ``interaction`` is an ordinary pairs study (its pairs get I(X; Y) with the
retrain-shuffle and latent nulls; pair them with the ``join`` rule through the annotation table)
plus held-out prediction: ``splits`` random splits, each holding out ``held_out`` proteins; the
model is trained on the annotated pairs among the other proteins and scores every ordered pair
of held-out proteins with the density ratio (paper Algorithm 2). See ``engine/interaction.py``.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


__all__ = ["InteractionConfig", "ProteomeDemo", "check_interaction", "interaction_defaults"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class InteractionConfig(_Strict):
    """Held-out interaction prediction (paper 4.1 / A.4.1; the paper's R = 20 splits, H = 170)."""

    x: Optional[str] = Field(None, description="variable on the table's x side (e.g. kinase); "
                                               "default: x of the study's only pair")
    y: Optional[str] = Field(None, description="variable on the table's y side (e.g. target)")
    splits: int = Field(20, ge=1, description="random splits R (each one task, run in parallel)")
    held_out: int = Field(170, ge=2, description="proteins H held out per split")
    shuffle_annotations: bool = Field(
        False, description="negative control: permute the table's y ids across rows (seeded by the study "
                           "seed) before training and labelling the splits; AUC should be ~0.5")
    query_pairs: Literal["sides", "all"] = Field(
        "sides", description="sides: held-out a among the table's x-side proteins, b among its y side, a != b "
                             "(directed as in the table); all: every ordered pair (a, b) of held-out proteins, "
                             "a == b included (the paper's 170 x 170 = 2.89e4 pairs)")
    convention: Literal["insert", "latentmi"] = Field(
        "insert", description="out-of-sample density-ratio convention (estimators.ksg.oos_pmi)")

    def pair(self, cfg: Any) -> tuple[str, str]:
        """(x, y) variable names of the prediction task."""
        if self.x is not None and self.y is not None:
            return self.x, self.y
        return cfg.pair_list()[0]

    def fingerprint_fields(self) -> dict:
        """Settings that change a split's numbers (not ``splits``: more splits reuse the done ones)."""
        return self.model_dump(exclude={"splits"})


class ProteomeDemo(_Strict):
    """Parameters of ``synthetic_proteome.synthetic_proteome`` and where its table goes."""

    n_proteins: int = Field(480, ge=8)
    n_families: int = Field(12, ge=2)
    d: int = Field(64, ge=2, description="embedding dimensions")
    latent_dim: int = Field(4, ge=1)
    partners: int = Field(2, ge=1)
    annotate: float = Field(0.12, gt=0, le=1)
    separation: float = Field(3.0, gt=0)
    noise: float = Field(0.5, ge=0)
    shuffle_annotations: bool = False
    seed: int = 0
    matrix: str = Field("embedding", description="name of the embedding matrix in the store")
    x_column: str = "x_id"
    y_column: str = "y_id"
    table: Optional[str] = Field(None, description="CSV to write the annotation table to; "
                                                   "default: the study's pairing.table")

    def generator_kwargs(self) -> dict:
        return self.model_dump(exclude={"matrix", "x_column", "y_column", "table"})


def interaction_defaults(cfg: Any) -> Any:
    """Fill in the proteome demo's defaults: its block, and its table path (``pairing.table``)."""
    demo = cfg.data.demo
    if demo is not None and getattr(demo, "kind", None) == "proteome":
        if demo.proteome is None:
            demo.proteome = ProteomeDemo()
        if demo.proteome.table is None and getattr(cfg.pairing, "table", None):
            demo.proteome.table = str(cfg.pairing.table)
    return cfg


def check_interaction(cfg: Any) -> list[str]:
    """Problems of the interaction block and the proteome demo, one ``"  key: ..."`` line each:
    the block is given iff ``kind`` is interaction, its names exist, the pairing is a join."""
    errs: list[str] = []
    demo = cfg.data.demo
    if demo is not None and getattr(demo, "kind", None) == "proteome":
        if demo.proteome is not None and demo.proteome.table is None:
            errs.append("  data.demo.proteome.table: where to write the demo's annotation table "
                        "(or set pairing.table)")
    elif demo is not None and getattr(demo, "proteome", None) is not None:
        errs.append("  data.demo.proteome: only with data.demo.kind: proteome")
    it = cfg.interaction
    if cfg.kind != "interaction":
        if it is not None:
            errs.append(f"  interaction: only with kind: interaction (kind is {cfg.kind!r})")
        return errs
    if it is None:
        return errs + ["  interaction: kind 'interaction' needs an 'interaction' block ({} for the defaults)"]
    if (it.x is None) != (it.y is None):
        errs.append("  interaction.x: give interaction.x and interaction.y together, or neither")
    names = cfg.variable_names
    for key in ("x", "y"):
        v = getattr(it, key)
        if v is not None and v not in names:
            errs.append(f"  interaction.{key}: expected one of the variables {names} (got {v!r})")
    if it.x is None and it.y is None and len(cfg.pair_list()) != 1:
        errs.append(f"  interaction.x: name the variables of the prediction (the study has "
                    f"{len(cfg.pair_list())} pairs)")
    if it.x is not None and it.y is not None and it.x in names and it.y in names \
            and (it.x, it.y) not in cfg.pair_list():
        errs.append(f"  interaction.x: ({it.x}, {it.y}) must be one of the study's pairs (part (a): its I(X;Y))")
    if cfg.pairing.rule != "join":
        errs.append(f"  pairing.rule: kind 'interaction' pairs proteins through the annotation table: "
                    f"expected 'join' (got {cfg.pairing.rule!r})")
    return errs
