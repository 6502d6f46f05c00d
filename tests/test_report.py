import numpy as np
import pandas as pd

from lmi_distributed.report import mi_matrix, plot_heatmap, write_report


def _pairs(xs, ys, sig):
    return pd.DataFrame({"x": xs, "y": ys, "estimate": np.linspace(0.1, 1.0, len(xs)), "significant": sig,
                         "truth": np.linspace(0.1, 1.0, len(xs)), "n": 10, "replicates": 1, "sem": np.nan,
                         "null": "latent_permutations", "null_mean": 0.0, "null_sd": 0.1, "p_latent": 0.01,
                         "p_shuffle": np.nan, "p": 0.01, "q": 0.02, "z": 3.0})


def test_matrix_symmetric_and_rectangular():
    rows, cols, M, S = mi_matrix(_pairs(["A", "A", "B"], ["B", "C", "C"], [True, False, True]))
    assert rows == cols == ["A", "B", "C"]
    assert M[0, 1] == M[1, 0] and S[1, 2] and S[2, 1] and not S[0, 2] and np.isnan(M[0, 0])
    rows, cols, M, S = mi_matrix(_pairs(["A", "A"], ["X", "Y"], [True, False]))
    assert rows == ["A"] and cols == ["X", "Y"] and M.shape == (1, 2)


def test_png_and_html(tmp_path):
    p = _pairs(["A", "A", "B"], ["B", "C", "C"], [True, False, True])
    png = plot_heatmap(p, tmp_path / "h.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    html = write_report(tmp_path, p, {"study": "s<1>", "n_pairs": 3, "n_significant": 2, "run": {"wall_s": 3}}).read_text()
    assert html.count("data:image/png;base64,") == 2 and "s&lt;1&gt;" in html and "Estimate vs truth" in html
    assert html.count('class="sig"') == 2


def test_flagged_pairs_and_partial_warning_shown(tmp_path):
    p = _pairs(["A", "A", "B"], ["B", "C", "C"], [True, False, False])
    p["status"] = ["ok", "degenerate", "ok"]
    p["detail"] = ["", "replicate 0: constant <column>", ""]
    p["n_ok_replicates"] = [1, 0, 1]
    p.loc[1, ["estimate", "p", "q", "z"]] = np.nan
    summary = {"study": "s", "complete": False, "q_values": "partial: computed over 2 of 3 pairs; rerun to finish"}
    html = write_report(tmp_path, p, summary).read_text()
    assert "Partial results." in html and "partial: computed over 2 of 3 pairs; rerun to finish" in html
    assert html.count('class="flag"') == 1 and "Flagged pairs (1)" in html
    assert "replicate 0: constant &lt;column&gt;" in html  # escaped
    assert "Partial results." not in write_report(tmp_path, p, {"study": "s", "complete": True}).read_text()
    assert not list(tmp_path.glob(".tmp-*"))
