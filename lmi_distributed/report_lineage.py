"""Figures and the report.html section of a ``kind: lineage`` study (matplotlib Agg).

- ``plot_dpi``: per DPI comparison, I(long) and I(short) (bits, mean +- SEM over replicates) and
  the verdict;
- ``plot_pmi_embedding``: mean pMI per cell (bits) on a 2-D embedding, other cells in grey
  (paper Fig. 6b);
- ``plot_pmi_pseudotime``: per-cell pMI against pseudotime with a centred rolling mean
  (paper Fig. 6c);
- ``lineage_html``: the DPI table and the figures, embedded as base64 PNGs.
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from lmi_distributed.report import _fmt, embed_png, pyplot, save_figure

__all__ = ["plot_dpi", "plot_pmi_embedding", "plot_pmi_pseudotime", "lineage_html"]


def plot_dpi(dpi, path: str | Path) -> Path:
    """Bar pairs I(long) vs I(short) per comparison (bits, +- SEM), verdict in the title of each
    group; truth as black ticks when known. Untested comparisons are drawn empty, marked 'not tested'."""
    plt = pyplot()
    n = len(dpi)
    fig, ax = plt.subplots(figsize=(max(4.5, 2.4 * n + 1.5), 4.2))
    xs = np.arange(n)
    for off, key, color in ((-0.2, "long", "#d95f02"), (0.2, "short", "#1b9e77")):
        est = dpi[f"{key}_estimate"].to_numpy(float)
        sem = dpi[f"{key}_sem"].fillna(0).to_numpy(float)
        ax.bar(xs + off, np.nan_to_num(est), width=0.38, yerr=sem, capsize=3, color=color,
               label=f"I({key}) ± SEM")
        if f"truth_{key}" in dpi:
            t = dpi[f"truth_{key}"].to_numpy(float)
            ax.scatter(xs + off, t, marker="_", s=400, color="black", zorder=3,
                       label="truth" if key == "long" else None)
    labels = [f"{r['comparison']}\nlong {r['long']}\nshort {r['short']}\n{r['verdict']}"
              for r in dpi.to_dict(orient="records")]
    ax.set_xticks(xs, labels, fontsize=7)
    ax.set_ylabel("MI (bits)")
    ax.set_title("DPI tests: Markov predicts I(long) ≤ I(short)", fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_pmi_embedding(cells, embedding: Sequence[str], background: np.ndarray, path: str | Path,
                       title: str = "pMI (bits)") -> Path:
    """Scatter of ``cells`` (columns ``embedding`` + ``mean_pmi`` bits) on the 2-D embedding,
    coloured by mean pMI; ``background`` (n, 2): every cell of the matrix, drawn grey beneath."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    bg = np.asarray(background, dtype=float)
    ax.scatter(bg[:, 0], bg[:, 1], s=3, c="lightgrey", lw=0, label="other cells")
    cells = cells.iloc[np.argsort(np.abs(cells["mean_pmi"].to_numpy(float)), kind="stable")]  # extremes on top
    v = cells["mean_pmi"].to_numpy(float)
    lim = float(np.nanpercentile(np.abs(v), 98)) if v.size else 1.0
    sc = ax.scatter(cells[embedding[0]], cells[embedding[1]], s=6, c=v, cmap="RdBu_r", vmin=-lim, vmax=lim, lw=0)
    fig.colorbar(sc, ax=ax, label="mean pMI (bits)")
    ax.set_xlabel(embedding[0])
    ax.set_ylabel(embedding[1])
    ax.set_title(title, fontsize=9)
    return save_figure(fig, path)


def plot_pmi_pseudotime(rolled, pseudotime: str, window: int, path: str | Path,
                        title: str = "pMI along pseudotime") -> Path:
    """Per-cell mean pMI (bits, grey dots) against pseudotime and the ``rolling_pmi`` column (the
    centred rolling mean over ``window`` cells)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.scatter(rolled[pseudotime], rolled["mean_pmi"], s=4, c="grey", alpha=0.4, lw=0, label="cells")
    ax.plot(rolled[pseudotime], rolled["rolling_pmi"], color="#d95f02", lw=2,
            label=f"rolling mean ({window} cells)")
    ax.axhline(0, color="black", lw=0.5)
    ax.set_xlabel(pseudotime)
    ax.set_ylabel("mean pMI (bits)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return save_figure(fig, path)


def _img(path: Path) -> str:
    return f"<p>{embed_png(path, Path(path).stem)}</p>"


def lineage_html(dpi, figures: list[Path], block: dict[str, Any]) -> str:
    """The report section: DPI table (verdicts, intervals in bits), then the figures."""
    cols = [c for c in ("comparison", "long", "short", "long_estimate", "long_sem", "short_estimate", "short_sem",
                        "difference", "ci_low", "ci_high", "truth_difference", "verdict", "detail") if c in dpi]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr" + ("" if r["status"] == "ok" else ' class="flag"') + ">"
                   + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>" for r in dpi.to_dict(orient="records"))
    conf = float(dpi["confidence"].iloc[0]) if len(dpi) else float("nan")
    parts = ["<h2>Lineage: DPI tests</h2>",
             "<p>If the conditions form a Markov chain long[0] – short – long[1], the data processing "
             "inequality gives I(long) ≤ I(short). difference = I(long) − I(short) in bits with a two-sided "
             f"{conf:.0%} Welch t-interval over replicates (random clonal pairings). Verdict: lower bound &gt; 0: "
             "DPI violated (non-Markovian); upper bound &lt; 0: consistent with DPI; interval containing 0: "
             "inconclusive; a flagged pair: not tested.</p>"]
    if len(dpi):
        parts.append(f"<table><tr>{head}</tr>{body}</table>")
    cp = block.get("cell_pmi")
    if cp:
        parts.append("<h2>Lineage: pointwise MI per cell</h2><p>cell_pmi.parquet: mean pMI (bits) per cell over the "
                     f"pairings that drew it into the held-out half ({cp['n_rows']} rows).</p>")
        for pk, why in cp.get("skipped_pairs", {}).items():
            parts.append(f'<p class="warn">{html.escape(pk)}: no cell pMI ({html.escape(why)})</p>')
        for pk, t in cp.get("trend", {}).items():
            if t.get("spearman") is not None:
                q = ", ".join(f"{v:.3f}" for v in t["quartile_mean_pmi"])
                parts.append(f"<p>{html.escape(pk)}: Spearman(pseudotime, pMI) = {t['spearman']:.3f} over "
                             f"{t['n_cells']} cells; mean pMI by pseudotime quartile: {q} bits.</p>")
    parts += [_img(p) for p in figures]
    return "\n".join(parts)
