"""The ``lineage`` block of a ``kind: lineage`` study, and the lineage demo data block.

::

    kind: lineage
    lineage:
      comparisons:                 # DPI: I(long) <= I(short) when the chain long[0] - short - long[1] is Markov
        - {name: sister_vs_early, long: [day6, day6_sister], short: [day2, day6]}
      chains: [[day2, day4, day6]] # every triple i<j<k: I(Xi;Xk) <= I(Xi;Xj) and <= I(Xj;Xk)
      confidence: 0.95             # two-sided Welch t-interval over replicates
      pseudotime: pseudotime       # obs column (optional)
      embedding: [emb1, emb2]      # two obs columns (optional)
      rolling_window: 100          # cells, for pMI along pseudotime

Every pair a comparison names must be a pair of the study (either order).
"""
from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["LineageConfig", "DPIComparison", "LineageDemo", "check_lineage", "lineage_comparisons"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DPIComparison(_Strict):
    """DPI predicts I(long) <= I(short) (e.g. long = late sisters, short = early vs late)."""

    name: Optional[str] = None
    long: tuple[str, str]
    short: tuple[str, str]

    @model_validator(mode="after")
    def _distinct(self) -> "DPIComparison":
        for key in ("long", "short"):
            a, b = getattr(self, key)
            if a == b:
                raise ValueError(f"'{key}' needs two different variables (got {a!r} twice)")
        if set(self.long) == set(self.short):
            raise ValueError("'long' and 'short' name the same pair")
        return self

    @property
    def label(self) -> str:
        return self.name or f"I({self.long[0]};{self.long[1]}) <= I({self.short[0]};{self.short[1]})"


class LineageConfig(_Strict):
    comparisons: list[DPIComparison] = Field(default_factory=list)
    chains: list[list[str]] = Field(default_factory=list, description="ordered conditions; triples i<j<k tested")
    confidence: float = Field(0.95, gt=0, lt=1, description="two-sided level of the Welch t-interval")
    pseudotime: Optional[str] = Field(None, description="obs column with pseudotime")
    embedding: Optional[tuple[str, str]] = Field(None, description="two obs columns: a 2-D embedding")
    rolling_window: int = Field(100, ge=1, description="cells in the rolling mean of pMI along pseudotime")
    cell_pmi: bool = Field(True, description="write cell_pmi.parquet (needs output.save_pmi observed/all)")

    @field_validator("chains")
    @classmethod
    def _chains(cls, v: list[list[str]]) -> list[list[str]]:
        for c in v:
            if len(c) < 3 or len(set(c)) != len(c):
                raise ValueError("each chain lists at least 3 different variables")
        return v


class LineageDemo(_Strict):
    """``data.demo: {kind: lineage, lineage: {...}}``: the synthetic lineage store (fields of
    ``synthetic_lineage.LineageParams``; variables must be named day{early}, day{late},
    day{late}_sister for the truth to match)."""

    variant: str = Field("sister", pattern="^(markov|sister)$")
    clones: int = Field(600, ge=8)
    k: int = Field(2, ge=1)
    m: int = Field(4, ge=0)
    genes: int = Field(1000, ge=2)
    a_early: float = Field(0.9, gt=0, lt=1)
    a_late: float = Field(0.55, ge=0, lt=1)
    b_sister: float = Field(0.6, ge=0, lt=1)
    early_day: int = 2
    late_day: int = 6
    mean_extra_cells: float = Field(1.0, ge=0)

    def params(self, seed: int):
        from lmi_distributed.synthetic_lineage import LineageParams

        return LineageParams(seed=int(seed), **self.model_dump())


def lineage_comparisons(lin: LineageConfig) -> list[DPIComparison]:
    """The explicit comparisons, then two per triple i<j<k of each chain."""
    out = list(lin.comparisons)
    for chain in lin.chains:
        n = len(chain)
        for i in range(n):
            for j in range(i + 1, n):
                for k in range(j + 1, n):
                    a, b, c = chain[i], chain[j], chain[k]
                    out.append(DPIComparison(long=(a, c), short=(a, b)))
                    out.append(DPIComparison(long=(a, c), short=(b, c)))
    return out


def check_lineage(cfg) -> list[str]:
    """Config problems of a lineage study (one line each, naming the key), checked at load."""
    lin = cfg.lineage
    if lin is None:
        return []
    errs: list[str] = []
    names = set(cfg.variable_names)
    pairs = {frozenset(p) for p in cfg.pair_list()}
    for i, c in enumerate(lin.comparisons):
        for key in ("long", "short"):
            pr = getattr(c, key)
            bad = [n for n in pr if n not in names]
            if bad:
                errs.append(f"  lineage.comparisons[{i}].{key}: expected variables of the study (unknown {bad})")
            elif frozenset(pr) not in pairs:
                errs.append(f"  lineage.comparisons[{i}].{key}: the pair {list(pr)} is not among the study's pairs")
    for i, chain in enumerate(lin.chains):
        bad = [n for n in chain if n not in names]
        if bad:
            errs.append(f"  lineage.chains[{i}]: expected variables of the study (unknown {bad})")
            continue
        missing = [[a, b] for j, a in enumerate(chain) for b in chain[j + 1:] if frozenset((a, b)) not in pairs]
        if missing:
            errs.append(f"  lineage.chains[{i}]: pairs {missing} are not among the study's pairs "
                        "(use pairs: {all_pairs_of: [...]})")
    if not lin.comparisons and not lin.chains and lin.pseudotime is None and lin.embedding is None \
            and not lin.cell_pmi:
        errs.append("  lineage: nothing to do (no comparisons, chains, or cell pMI)")
    if lin.cell_pmi and cfg.output.save_pmi == "none":
        errs.append("  lineage.cell_pmi: needs output.save_pmi 'observed' or 'all' (got 'none')")
    return errs
