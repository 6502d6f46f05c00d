"""Attribution figures (paper A.2.3): top dimensions per pair, and R^2 maps of image-shaped variables.

Input: the ``attribution.parquet`` table (:mod:`lmi_distributed.engine.attribution`): one row per
(pair, side, dim) with ``r2`` (held-out R^2, unitless, mean over replicates), ``sem``, ``rank``,
``feature``, ``status``. Matplotlib with the Agg backend, as :mod:`lmi_distributed.report`.
Flagged pairs (status not ok) are drawn as an empty panel saying why, never as bars.
"""
from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from lmi_distributed.report import embed_png, pyplot, save_figure

__all__ = ["plot_top_dims", "plot_image_maps", "attribution_html"]


def _label(row: Mapping[str, Any]) -> str:
    f = row.get("feature")
    return str(f) if isinstance(f, str) and f else f"dim {int(row['dim'])}"


def plot_top_dims(table: Any, path: str | Path, top: int = 8, max_pairs: int = 12) -> Path | None:
    """Horizontal bars of the ``top`` best-explained dimensions (R^2 +- SEM) of each side of each
    pair, one row of two panels (X side, Y side) per pair, at most ``max_pairs`` pairs (table
    order). Returns the PNG path, or None for an empty table."""
    if table is None or len(table) == 0:
        return None
    plt = pyplot()
    pairs = list(dict.fromkeys(table["pair"]))[:max_pairs]
    fig, axes = plt.subplots(len(pairs), 2, figsize=(9, 1.1 + 0.25 * top * len(pairs)), squeeze=False)
    for i, pk in enumerate(pairs):
        for j, side in enumerate(("x", "y")):
            ax = axes[i, j]
            sub = table[(table["pair"] == pk) & (table["side"] == side)]
            var = sub["variable"].iloc[0] if len(sub) else side
            other = (sub["y"] if side == "x" else sub["x"]).iloc[0] if len(sub) else "?"
            ax.set_title(f"{pk}: {var} explained by latent of {other}", fontsize=8)
            status = sub["status"].iloc[0] if len(sub) else "missing"
            best = sub[sub["rank"].notna()].sort_values("rank").head(top)
            if status != "ok" or best.empty:
                ax.text(0.5, 0.5, f"no attribution ({status})", ha="center", va="center", fontsize=8,
                        transform=ax.transAxes)
                ax.set_xticks([])
                ax.set_yticks([])
                continue
            ypos = np.arange(len(best))[::-1]
            err = best["sem"].to_numpy(np.float64)
            ax.barh(ypos, best["r2"].to_numpy(np.float64), xerr=np.where(np.isfinite(err), err, 0.0),
                    color="#4a7fb0", height=0.7)
            ax.set_yticks(ypos, [_label(r) for r in best.to_dict(orient="records")], fontsize=7)
            ax.axvline(0.0, color="k", lw=0.5)
            ax.set_xlim(min(0.0, float(best["r2"].min()) - 0.05), 1.0)
            ax.tick_params(axis="x", labelsize=7)
            n_nan = int(sub["r2"].isna().sum())
            if n_nan:
                ax.text(0.99, 0.02, f"{n_nan} constant dim(s): NaN", ha="right", va="bottom", fontsize=6,
                        transform=ax.transAxes, color="#a04040")
    for ax in axes[-1]:
        ax.set_xlabel("held-out R² of the cross-decoder (1 = fully explained)", fontsize=7)
    return save_figure(fig, path)


def plot_image_maps(table: Any, shapes: Mapping[str, Any], path: str | Path,
                    max_panels: int = 24) -> tuple[Path | None, list[str]]:
    """R^2 of each dimension of image-shaped variables (``shapes``: {variable: (rows, cols)}) as a
    heatmap, one panel per (pair, side) whose variable is named; NaN (constant pixels, flagged
    pairs) grey. Returns (PNG path or None, notes on variables skipped because rows*cols is not
    their dimension)."""
    plt = pyplot()
    panels, notes = [], []
    for (pk, side), sub in table.groupby(["pair", "side"], sort=False):
        var = sub["variable"].iloc[0]
        if var not in shapes:
            continue
        h, w = (int(v) for v in shapes[var])
        if h * w != len(sub):
            note = f"output.image_shape.{var}: {h}x{w} = {h * w} but {var} has {len(sub)} dimensions; map skipped"
            if note not in notes:
                notes.append(note)
            continue
        panels.append((pk, side, var, sub.sort_values("dim")["r2"].to_numpy(np.float64).reshape(h, w),
                       sub["status"].iloc[0]))
    panels = panels[:max_panels]
    if not panels:
        return None, notes
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols + 0.6, 2.6 * rows), squeeze=False)
    cmap = plt.get_cmap("viridis").with_extremes(bad="#bbbbbb")
    im = None
    for ax, (pk, side, var, img, status) in zip(axes.flat, panels):
        im = ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=0.0, vmax=1.0)
        ax.set_title(f"{pk}\n{var} (side {side})" + ("" if status == "ok" else f": {status}"), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.8, label="held-out R² (grey: NaN)")
    return save_figure(fig, path, tight=False), notes   # the shared colorbar: no tight layout


def attribution_html(out_dir: str | Path, summary: Mapping[str, Any]) -> str:
    """The report's attribution section (figures embedded), or "" when the study has none."""
    block = summary.get("attribution")
    if not block:
        return ""
    out = Path(out_dir)
    parts = ['<h2>Attribution</h2><p>Held-out R² of each cross-decoder per dimension (mean over replicates; '
             'NaN for dimensions constant on the held-out rows). Table: '
             f'<a href="{html.escape(block["table"])}">{html.escape(block["table"])}</a>.</p>']
    for note in block.get("notes", []):
        parts.append(f'<p class="warn">{html.escape(note)}</p>')
    for name in block.get("figures", []):
        p = out / name
        if p.exists():
            parts.append(f'<p><a href="{html.escape(name)}">{html.escape(name)}</a></p>{embed_png(p, name)}')
    return "\n".join(parts)
