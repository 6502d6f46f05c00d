"""Synthetic proteome with a known answer, for the interaction workflow (paper section 4.1).

Each protein belongs to one of F hidden *families*. Its hidden factor is the family centroid
plus protein noise (``latent_dim`` dims); its embedding (``d`` dims, standing in for a protein
language-model embedding such as ProtT5) is a fixed random nonlinear map of that factor
(``tanh`` of a random projection, then a random linear lift) plus a little measurement noise.

Interactions are directed and live at the family level: each family f "acts on" ``partners``
other families g (a sparse random family graph). Every ordered protein pair (a, b) with
family(a) -> family(b) in the graph is *annotated* with probability ``annotate`` (the curated
table only ever sees a subset of the true interactions). The annotation table has two id columns
(``x_column``, ``y_column``), like a kinase-target or ligand-receptor table.

Known answers:

- ``truth_bits``: I(K; T) in bits for (K, T) drawn uniformly from the (population of) annotated
  pairs. Given the families, which members of an interacting family pair are annotated is
  random, so I(K; T) = I(F_K; F_T) with p(f, g) proportional to n_f * n_g on the edges of the
  family graph (computed exactly here). It is what the embeddings can reveal when families are
  identifiable from them (they are, with the default separation). 0 with ``shuffle_annotations``.
- held-out prediction: a protein pair of interacting families is far likelier to be annotated
  than any other, so a density-ratio score learned on other proteins ranks held-out annotated
  pairs on top (AUC well above 0.5; its ceiling is below 1 because most pairs of interacting
  families are not annotated). With ``shuffle_annotations`` the y column of the table is
  permuted across rows: the table keeps its size and per-protein degrees but carries no
  information about the embeddings, and the AUC is 0.5 up to noise.

Pure numpy (no I/O): ``engine/interaction.py`` writes the result to a store and a CSV table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Proteome", "synthetic_proteome", "family_pair_mi_bits"]


@dataclass
class Proteome:
    """A synthetic proteome and its annotation table.

    ``embedding`` (P, d) float32; ``ids`` (P,) str; ``family`` (P,) int64 in [0, F);
    ``graph`` (F, F) bool, graph[f, g]: family f acts on family g; ``x_idx``, ``y_idx`` (M,)
    int64 protein indices of the M annotated (directed) pairs; ``truth_bits``: I(K; T) in bits
    (see the module docstring); ``params``: the generator's arguments."""

    embedding: np.ndarray
    ids: np.ndarray
    family: np.ndarray
    graph: np.ndarray
    x_idx: np.ndarray
    y_idx: np.ndarray
    truth_bits: float
    params: dict = field(default_factory=dict)

    def table(self, x_column: str = "x_id", y_column: str = "y_id"):
        """The annotation table: a pandas DataFrame with columns (x_column, y_column) of ids."""
        import pandas as pd

        return pd.DataFrame({x_column: self.ids[self.x_idx], y_column: self.ids[self.y_idx]})


def family_pair_mi_bits(graph: np.ndarray, sizes: np.ndarray) -> float:
    """I(F_K; F_T) in bits when p(f, g) is proportional to sizes[f] * sizes[g] on the edges of the
    directed family ``graph`` (F, F) bool (self-edges excluded by the caller). 0 for no edges."""
    w = np.where(graph, np.outer(sizes, sizes).astype(np.float64), 0.0)
    total = w.sum()
    if total <= 0:
        return 0.0
    p = w / total
    px, py = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
    nz = p > 0
    return float(np.sum(p[nz] * np.log2(p[nz] / (px @ py)[nz])))


def synthetic_proteome(n_proteins: int = 480, n_families: int = 12, d: int = 64, latent_dim: int = 4,
                       partners: int = 2, annotate: float = 0.12, separation: float = 3.0,
                       noise: float = 0.5, shuffle_annotations: bool = False, seed: int = 0) -> Proteome:
    """Generate a proteome (see the module docstring). Families get (nearly) equal sizes.

    ``separation``: sd of the family centroids in the hidden space; ``noise``: sd of a protein's
    offset from its centroid (and 1/10 of it is added to the embedding). ``partners`` < F.
    Deterministic given ``seed``."""
    if n_families < 2 or not 1 <= partners < n_families:
        raise ValueError(f"need n_families >= 2 and 1 <= partners < n_families (got {n_families}, {partners})")
    if n_proteins < 2 * n_families:
        raise ValueError(f"need at least 2 proteins per family (n_proteins {n_proteins}, n_families {n_families})")
    if not 0 < annotate <= 1:
        raise ValueError(f"annotate must be in (0, 1], got {annotate}")
    rng = np.random.default_rng(seed)
    family = np.sort(np.arange(n_proteins) % n_families).astype(np.int64)
    sizes = np.bincount(family, minlength=n_families)
    centroids = rng.normal(0.0, separation, size=(n_families, latent_dim))
    h = centroids[family] + rng.normal(0.0, noise, size=(n_proteins, latent_dim))
    hidden = 4 * d
    A = rng.normal(0.0, 1.0 / np.sqrt(latent_dim * (separation ** 2 + noise ** 2)), size=(latent_dim, hidden))
    b = rng.uniform(-1.0, 1.0, size=hidden)
    B = rng.normal(0.0, 1.0 / np.sqrt(hidden), size=(hidden, d))
    emb = np.tanh(h @ A + b) @ B
    emb = emb + rng.normal(0.0, noise / 10.0, size=emb.shape) * emb.std(0, keepdims=True)
    graph = np.zeros((n_families, n_families), dtype=bool)
    for f in range(n_families):
        others = np.array([g for g in range(n_families) if g != f])
        graph[f, rng.choice(others, size=partners, replace=False)] = True
    xs, ys = [], []
    members = [np.flatnonzero(family == f) for f in range(n_families)]
    for f, g in zip(*np.nonzero(graph)):
        a, bb = np.meshgrid(members[f], members[g], indexing="ij")
        keep = rng.random(a.shape) < annotate
        xs.append(a[keep])
        ys.append(bb[keep])
    x_idx = np.concatenate(xs).astype(np.int64)
    y_idx = np.concatenate(ys).astype(np.int64)
    truth = family_pair_mi_bits(graph, sizes)
    if shuffle_annotations:
        y_idx = y_idx[rng.permutation(y_idx.size)]
        keep = x_idx != y_idx                                   # no protein paired with itself
        _, first = np.unique(x_idx[keep] * n_proteins + y_idx[keep], return_index=True)
        x_idx, y_idx = x_idx[keep][np.sort(first)], y_idx[keep][np.sort(first)]   # no duplicate pairs
        truth = 0.0
    ids = np.array([f"P{i:05d}" for i in range(n_proteins)])
    params = dict(n_proteins=n_proteins, n_families=n_families, d=d, latent_dim=latent_dim, partners=partners,
                  annotate=annotate, separation=separation, noise=noise,
                  shuffle_annotations=shuffle_annotations, seed=seed)
    return Proteome(emb.astype(np.float32), ids, family, graph, x_idx, y_idx, truth, params)
