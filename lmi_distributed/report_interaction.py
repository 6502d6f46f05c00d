"""Figures and the report section of an interaction study (paper Fig. 5; matplotlib Agg).

- ``plot_mi_vs_null``: per pair, the LMI estimate (bits, +- SEM over replicates) next to the
  retrain-shuffle null (mean +- sd; the paper's null) and the latent-permutation null (Fig. 5a-b);
- ``plot_roc``: the ROC curve of every split, with the mean AUC +- SEM (Fig. 5c-d);
- ``plot_pr``: the precision-recall curve of every split with the positive rate (the AP of a
  random ranking) as a line: positives are rare, so AP says more than AUC about the top of the list;
- ``interaction_html``: the report.html section (figures embedded, AUC/AP table, flagged splits).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from lmi_distributed.report import embed_png, pyplot, save_figure

__all__ = ["plot_mi_vs_null", "plot_roc", "plot_pr", "interaction_html"]


def plot_mi_vs_null(pairs, path: str | Path) -> Path | None:
    """Bars: estimate (+- SEM), retrain-shuffle null mean (+- sd), latent null mean (+- sd), bits;
    the known MI as a dashed mark when ``truth`` is present. None when no pair has an estimate."""
    if not len(pairs) or pairs["estimate"].isna().all():
        return None
    plt = pyplot()
    n = len(pairs)
    fig, ax = plt.subplots(figsize=(4.4 + 1.8 * n, 3.6))
    xs = np.arange(n)
    w = 0.26
    get = lambda c: pairs[c].to_numpy(float) if c in pairs else np.full(n, np.nan)  # noqa: E731
    ax.bar(xs - w, get("estimate"), w, yerr=np.nan_to_num(get("sem")), capsize=3, label="LMI (± SEM)",
           color="#3b75af")
    ax.bar(xs, get("shuffle_null_mean"), w, yerr=np.nan_to_num(get("shuffle_null_sd")), capsize=3,
           label="retrain-shuffle null (± sd)", color="#aaaaaa")
    ax.bar(xs + w, get("latent_null_mean"), w, yerr=np.nan_to_num(get("latent_null_sd")), capsize=3,
           label="latent-permutation null (± sd)", color="#dddddd", edgecolor="#888888")
    for xi, v in zip(xs, get("estimate")):   # the estimate inside its bar, the nulls above theirs
        if np.isfinite(v):
            ax.text(xi - w, v / 2, f"{v:.2f}", ha="center", va="center", fontsize=8, color="white")
    for off, c in ((0.0, "shuffle_null_mean"), (w, "latent_null_mean")):
        for xi, v in zip(xs, get(c)):
            if np.isfinite(v):
                ax.annotate(f"{v:.2f}", (xi + off, max(v, 0.0)), textcoords="offset points", xytext=(0, 8),
                            ha="center", fontsize=7)
    if "truth" in pairs and np.isfinite(get("truth")).any():
        ax.scatter(xs - w, get("truth"), marker="_", s=600, color="black", zorder=3, label="true MI")
        for xi, v in zip(xs, get("truth")):
            if np.isfinite(v):
                ax.annotate(f"true {v:.2f}", (xi - w / 2, v), textcoords="offset points", xytext=(14, 0),
                            va="center", fontsize=7)
    ax.set_xticks(xs, [f"I({x};{y})" for x, y in zip(pairs["x"], pairs["y"])])
    ax.set_ylabel("MI (bits)")
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xlim(-0.6, n - 0.4 + 1.1)   # room on the right for the legend, off the bars
    ax.legend(fontsize=7, loc="center right")
    ax.set_title("interaction partners vs shuffled pairs", fontsize=9)
    return save_figure(fig, path)


def _curves(df, xcol: str, ycol: str, ax, color: str) -> int:
    k = 0
    for r in df[df["status"] == "ok"].to_dict(orient="records"):
        xv, yv = np.asarray(r[xcol], float), np.asarray(r[ycol], float)
        if xv.size:
            ax.plot(xv, yv, color=color, alpha=0.45, lw=1)
            k += 1
    return k


def _pm(m: Any, s: Any) -> str:
    if m is None or not np.isfinite(m):
        return "–"
    return f"{m:.3f}" + (f" ± {s:.3f}" if s is not None and np.isfinite(s) else "")


def plot_roc(splits, path: str | Path, summary: dict) -> Path | None:
    """ROC curves of the ok splits (one line each) and the diagonal; None when none is ok."""
    if not (splits["status"] == "ok").any():
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    k = _curves(splits, "fpr", "tpr", ax, "#3b75af")
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="random (AUC 0.5)")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(f"held-out pairs, {k} split(s): AUC {_pm(summary.get('auc_mean'), summary.get('auc_sem'))}",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    return save_figure(fig, path)


def plot_pr(splits, path: str | Path, summary: dict) -> Path | None:
    """Precision-recall curves of the ok splits and the positive rate; None when none is ok."""
    if not (splits["status"] == "ok").any():
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    k = _curves(splits, "recall", "precision", ax, "#c0504d")
    base = summary.get("ap_baseline_mean")
    if base is not None and np.isfinite(base):
        ax.axhline(base, color="grey", ls="--", lw=1, label=f"positive rate {base:.3f} (random AP)")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"{k} split(s): AP {_pm(summary.get('ap_mean'), summary.get('ap_sem'))}", fontsize=9)
    ax.legend(fontsize=7, loc="upper right")
    return save_figure(fig, path)


def _img(out: Path, name: str | None, alt: str) -> str:
    if not name or not (out / name).is_file():
        return ""
    return embed_png(out / name, alt)


def interaction_html(out: str | Path, s: dict) -> str:
    """The report section: MI vs null bars, ROC and PR curves, the AUC/AP table, flagged splits."""
    out = Path(out)
    figs = s.get("figures", {})
    f = lambda v: "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else html.escape(str(v)))  # noqa: E731
    rows = "".join(
        "<tr" + ('' if r['status'] == 'ok' else ' class="flag"') + f"><td>{r['split']}</td><td>{html.escape(r['status'])}</td>"
        f"<td>{r['n_train_pairs']}</td><td>{r['n_pos']}</td><td>{r['n_neg']}</td><td>{f(r['auc'])}</td>"
        f"<td>{f(r['ap'])}</td></tr>" for r in s.get("per_split", []))
    flagged = "".join(f"<li>split {x['split']}: {html.escape(x['status'])}: {html.escape(str(x['detail']))}</li>"
                      for x in s.get("flagged", []))
    shuffled = " (negative control: annotations shuffled)" if s.get("shuffle_annotations") else ""
    return f"""<h2>Interaction prediction{shuffled}</h2>
<p>{s.get('splits')} random splits, each holding out {s.get('held_out')} proteins; trained on the annotated
pairs among the others; every ordered held-out pair ({html.escape(str(s.get('x')))} → {html.escape(str(s.get('y')))})
scored with the density ratio (paper Algorithm 2 on the latents, bits) and ranked against the annotations.
Means ± SEM over the {s.get('n_ok')} ok split(s); splits that are not ok are listed and left out.</p>
<table class="facts"><tr><th>AUC (mean ± SEM)</th><td>{_pm(s.get('auc_mean'), s.get('auc_sem'))}</td></tr>
<tr><th>average precision (mean ± SEM)</th><td>{_pm(s.get('ap_mean'), s.get('ap_sem'))}</td></tr>
<tr><th>positive rate (random AP)</th><td>{_pm(s.get('ap_baseline_mean'), None)}</td></tr>
<tr><th>splits ok</th><td>{s.get('n_ok')} of {s.get('splits')}</td></tr></table>
{_img(out, figs.get('mi'), 'MI vs shuffled null')}
{_img(out, figs.get('roc'), 'ROC curves')} {_img(out, figs.get('pr'), 'precision-recall curves')}
<h3>Splits</h3><table><tr><th>split</th><th>status</th><th>training pairs</th><th>positives</th>
<th>negatives</th><th>AUC</th><th>AP</th></tr>{rows}</table>
{f'<h3>Flagged splits</h3><ul>{flagged}</ul>' if flagged else ''}"""
