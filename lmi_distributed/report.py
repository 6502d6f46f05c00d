"""Plots and a one-page HTML report of a study (matplotlib Agg; no display needed).

``mi_matrix`` lays the pairs table out as a variables x variables matrix (bits); the heatmap
marks cells whose BH q <= alpha with a star; the HTML page embeds it and the pairs table
(estimate vs truth when the truth is known). Pairs whose ``status`` is not ``ok`` are shown, not
hidden: a "Flagged pairs" section lists each with its status and why, and a partial study (not
every task stored) carries a warning at the top. Files are written under a temporary name and
renamed into place.
"""
from __future__ import annotations

import base64
import html
import json
from pathlib import Path
from typing import Any

import numpy as np


__all__ = ["mi_matrix", "plot_heatmap", "plot_truth", "write_report"]


def mi_matrix(pairs, value: str = "estimate", symmetric: bool | None = None):
    """(rows, cols, M, sig): M[i, j] = ``value`` of pair (rows[i], cols[j]); NaN where absent.

    All-pairs studies (x and y from one set) give a square, symmetric matrix over the union of
    variables; X-set x Y-set studies give |X| x |Y|. ``sig`` is the boolean mask of significant cells.
    """
    xs = list(dict.fromkeys(pairs["x"]))
    ys = list(dict.fromkeys(pairs["y"]))
    if symmetric is None:
        symmetric = not (set(xs).isdisjoint(ys))
    if symmetric:
        names = list(dict.fromkeys(xs + ys))
        rows, cols = names, names
    else:
        rows, cols = xs, ys
    M = np.full((len(rows), len(cols)), np.nan)
    S = np.zeros((len(rows), len(cols)), dtype=bool)
    ri = {n: i for i, n in enumerate(rows)}
    ci = {n: i for i, n in enumerate(cols)}
    sig = pairs["significant"] if "significant" in pairs else [False] * len(pairs)
    for x, y, v, s in zip(pairs["x"], pairs["y"], pairs[value], sig):
        M[ri[x], ci[y]] = v
        S[ri[x], ci[y]] = bool(s)
        if symmetric and y in ri and x in ci:
            M[ri[y], ci[x]] = v
            S[ri[y], ci[x]] = bool(s)
    return rows, cols, M, S


def plot_heatmap(pairs, path: str | Path, title: str = "LMI (bits)") -> Path:
    """Heatmap PNG of the MI matrix; '*' marks significant cells; truth in brackets if known."""
    plt = pyplot()

    rows, cols, M, S = mi_matrix(pairs)
    T = mi_matrix(pairs, "truth")[2] if "truth" in pairs else None
    fig, ax = plt.subplots(figsize=(1.1 * len(cols) + 2.5, 0.9 * len(rows) + 1.8))
    im = ax.imshow(np.ma.masked_invalid(M), cmap="viridis", vmin=0)
    fig.colorbar(im, ax=ax, label="MI estimate (bits)")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    finite = M[np.isfinite(M)]
    vmax = float(finite.max()) if finite.size else 1.0
    for i in range(len(rows)):
        for j in range(len(cols)):
            if np.isnan(M[i, j]):
                continue
            txt = f"{M[i, j]:.2f}" + ("*" if S[i, j] else "")
            if T is not None and np.isfinite(T[i, j]):
                txt += f"\n[{T[i, j]:.2f}]"
            ax.text(j, i, txt, ha="center", va="center", fontsize=8,
                    color="black" if M[i, j] > 0.6 * vmax else "white")
    ax.set_title(title + ("  (* q <= alpha; [truth])" if T is not None else "  (* q <= alpha)"), fontsize=9)
    return save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed: workers, CI, servers)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, *, tight: bool = True) -> Path:
    """Lay out (``tight``), write ``fig`` as a PNG atomically (temporary name, then rename) and
    close it; returns the path. Every figure of every report goes through here."""
    path = Path(path)
    if tight:
        fig.tight_layout()
    tmp = path.parent / f".tmp-{path.name}"
    fig.savefig(tmp, dpi=110, format="png")
    tmp.replace(path)
    pyplot().close(fig)
    return path


def embed_png(path: str | Path, alt: str) -> str:
    """An ``<img>`` with the PNG at ``path`` inlined (base64), so report.html stands alone."""
    b64 = base64.b64encode(Path(path).read_bytes()).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def plot_truth(pairs, path: str | Path) -> Path | None:
    """Scatter of estimate (± SEM) against the known MI (bits); None when no truth is known."""
    if "truth" not in pairs or pairs["truth"].isna().all() or pairs["estimate"].isna().all():
        return None
    plt = pyplot()

    t = pairs["truth"].to_numpy(float)
    e = pairs["estimate"].to_numpy(float)
    err = pairs["sem"].fillna(0).to_numpy(float) if "sem" in pairs else None
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    hi = float(np.nanmax(np.concatenate([t, e]))) * 1.1 if np.isfinite(np.nanmax(t)) else 1.0
    ax.plot([0, hi], [0, hi], color="grey", lw=1, ls="--", label="estimate = truth")
    ax.errorbar(t, e, yerr=err, fmt="o", ms=4, capsize=2, label="pairs (± SEM)")
    ax.set_xlabel("true MI (bits)")
    ax.set_ylabel("LMI estimate (bits)")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _fmt(v: Any) -> str:
    if isinstance(v, (float, np.floating)):
        if np.isnan(v):
            return "–"
        return f"{v:.3g}" if abs(v) < 1e-3 and v != 0 else f"{v:.3f}"
    return html.escape(str(v))


def write_report(out_dir: str | Path, pairs, summary: dict, sections_html: str = "") -> Path:
    """Write ``heatmap.png`` and ``report.html`` (self-contained: the PNG is embedded).

    ``sections_html``: the study's own sections (attribution, the kind's: interaction,
    lineage; already escaped HTML), placed before the pairs table."""
    out = Path(out_dir)
    png = plot_heatmap(pairs, out / "heatmap.png", title=f"{summary.get('study', '')}: LMI (bits)")
    tpng = plot_truth(pairs, out / "estimate_vs_truth.png")
    truth_html = ""
    if tpng is not None:
        truth_html = f"<h2>Estimate vs truth</h2>{embed_png(tpng, 'estimate vs truth')}"
    cols = ["x", "y"] + (["status"] if "status" in pairs else []) + ["n", "replicates", "estimate", "sem"] + (["truth"] if "truth" in pairs else []) + [
        "null", "null_mean", "null_sd", "p_latent", "p_shuffle", "p", "q", "z", "significant"]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join(
        "<tr" + (' class="sig"' if r["significant"] else (' class="flag"' if r.get("status", "ok") != "ok" else ""))
        + ">"
        + "".join(f"<td>{_fmt(r[c])}</td>" for c in cols) + "</tr>"
        for r in pairs.to_dict(orient="records"))
    run = summary.get("run", {})
    facts = {
        "pairs": summary.get("n_pairs"), "significant (q <= alpha)": summary.get("n_significant"),
        "alpha": summary.get("alpha"), "replicates": summary.get("replicates"),
        "nulls": json.dumps(summary.get("nulls")), "p from": summary.get("p_null"),
        "tasks": summary.get("n_tasks"), "wall time (s)": run.get("wall_s"),
        "workers": run.get("workers"), "device": run.get("device"),
    }
    if summary.get("truth_mae_bits") is not None:
        facts["mean |estimate − truth| (bits)"] = f"{summary['truth_mae_bits']:.3f}"
    if summary.get("q_values"):
        facts["q-values"] = summary["q_values"]
    fact_html = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in facts.items())
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(str(summary.get('study')))} — LMI study</title>
<style>body{{font-family:sans-serif;margin:1.5em;max-width:1100px}} table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:right}} tr.sig td{{background:#e8f6e8}}
tr.flag td{{background:#fbeaea}} .warn{{background:#fff3cd;border:1px solid #e0c060;padding:6px}}
.facts th{{text-align:left}}</style></head><body>
<h1>{html.escape(str(summary.get('study')))}</h1>
{_warning_html(summary)}
<p>{html.escape(str(summary.get('description', '')))}</p>
<p>Latent mutual information (LMI) per pair, in bits: mean over replicates ± SEM; permutation
p = (1 + #&#123;null ≥ estimate&#125;) / (1 + n_null) against the null named in the <i>null</i> column
(latent permutations: held-out Y latents permuted, KSG recomputed; retrain shuffles: Y rows
shuffled and the network trained anew); q: Benjamini–Hochberg over the study's pairs.</p>
<table class="facts">{fact_html}</table>
<h2>MI matrix</h2>{embed_png(png, "MI heatmap")}
{truth_html}
{sections_html}
<h2>Pairs</h2><table><tr>{head}</tr>{body}</table>
{_flagged_html(pairs)}
</body></html>"""
    path = out / "report.html"
    tmp = out / ".tmp-report.html"
    tmp.write_text(page)
    tmp.replace(path)
    return path


def _warning_html(summary: dict) -> str:
    """The partial-study banner ('' for a complete study)."""
    if summary.get("complete", True):
        return ""
    text = summary.get("q_values") or "partial study: not every task is stored; rerun to finish"
    return f'<p class="warn"><b>Partial results.</b> q-values {html.escape(str(text))}.</p>'


def _flagged_html(pairs) -> str:
    """A section listing every pair whose status is not ok, and why ('' when none)."""
    if "status" not in pairs:
        return ""
    bad = pairs[pairs["status"] != "ok"]
    if not len(bad):
        return ""
    rows = "".join(_flag_row(r) for r in bad.to_dict(orient="records"))
    return (f'<h2 id="flagged">Flagged pairs ({len(bad)})</h2><p>No estimate is reported for these pairs; '
            "they are left out of the q-values and of any ranking.</p>"
            f"<table><tr><th>pair</th><th>status</th><th>ok replicates</th><th>why</th></tr>{rows}</table>")


def _flag_row(r: dict) -> str:
    pair = r.get("pair") or f"{r['x']}~{r['y']}"
    cells = [html.escape(str(pair)), html.escape(str(r["status"])), _fmt(r.get("n_ok_replicates", ""))]
    why = html.escape(str(r.get("detail", "")))
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + f'<td style="text-align:left">{why}</td></tr>'
