"""Known-answer benchmarks of the paper's workflows (one function per workflow).

    python jobs/benchmark_workflows.py lineage            # embedded local Ray, 2 CPUs
    python jobs/benchmark_workflows.py lineage --seeds 0 1 2 --quick

``lineage``: configs/lineage_demo.yaml (demo settings) on the synthetic lineage data, both
variants (``markov``: DPI holds; ``sister``: a clone factor after day 2 violates it) x seeds
(data seed = study seed). Per run: the estimates against the closed-form truth (bits), the DPI
difference with its Welch interval and the verdict (expected: ``consistent with DPI`` for markov,
``DPI violated (non-Markovian)`` for sister), and the pMI trend along pseudotime (Spearman, mean
pMI in the lowest and highest pseudotime quartile). Prints a table and writes
jobs/results/benchmark_workflows_lineage.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

EXPECTED = {"markov": "consistent with DPI", "sister": "DPI violated (non-Markovian)"}


def lineage(seeds: list[int], workdir: Path, quick: bool = False, num_cpus: int = 2) -> dict:
    """Run the lineage demo for both variants x ``seeds``; return the rows and a pass/fail summary."""
    import pandas as pd

    from lmi_distributed.engine.config import load_study
    from lmi_distributed.engine.runner import run_study

    rows = []
    for variant in ("markov", "sister"):
        for seed in seeds:
            tag = f"{variant}-s{seed}"
            sets = [f"data.demo.lineage.variant={variant}", f"data.demo.seed={seed}", f"seed={seed}",
                    f"data.store={workdir / tag / 'store.zarr'}", f"data.truth={workdir / tag / 'truth.json'}",
                    f"output.path={workdir / tag / 'out'}"]
            if quick:
                sets += ["data.demo.lineage.clones=300", "data.demo.lineage.genes=200", "replicates=3",
                         "estimator.max_epochs=30", "nulls.latent_permutations=20", "lineage.rolling_window=50"]
            cfg = load_study(ROOT / "configs" / "lineage_demo.yaml", sets)
            t0 = time.perf_counter()
            summary = run_study(cfg, num_cpus=num_cpus, overwrite=True, progress_every=60.0, log=lambda m: None)
            wall = time.perf_counter() - t0
            out = Path(cfg.output.path)
            pairs = pd.read_parquet(out / "pairs.parquet").set_index("pair")
            dpi = pd.read_parquet(out / "dpi.parquet").iloc[0]
            trend = summary["lineage"]["cell_pmi"]["trend"]
            row = {"variant": variant, "seed": seed, "wall_s": round(wall, 1),
                   "est_early_late": float(pairs.loc["day2~day6", "estimate"]),
                   "sem_early_late": float(pairs.loc["day2~day6", "sem"]),
                   "truth_early_late": float(pairs.loc["day2~day6", "truth"]),
                   "est_sisters": float(pairs.loc["day6~day6_sister", "estimate"]),
                   "sem_sisters": float(pairs.loc["day6~day6_sister", "sem"]),
                   "truth_sisters": float(pairs.loc["day6~day6_sister", "truth"]),
                   "difference": float(dpi["difference"]), "ci_low": float(dpi["ci_low"]),
                   "ci_high": float(dpi["ci_high"]), "truth_difference": float(dpi["truth_difference"]),
                   "verdict": str(dpi["verdict"]), "expected": EXPECTED[variant],
                   "verdict_right": str(dpi["verdict"]) == EXPECTED[variant]}
            for pk, short in (("day2~day6", "early"), ("day6~day6_sister", "sisters")):
                t = trend.get(pk, {})
                q = t.get("quartile_mean_pmi") or [float("nan")] * 4
                row.update({f"pmi_spearman_{short}": t.get("spearman"), f"pmi_q1_{short}": q[0],
                            f"pmi_q4_{short}": q[3]})
            rows.append(row)
            print(f"{tag}: {row['verdict']} (diff {row['difference']:+.3f} [{row['ci_low']:+.3f}, "
                  f"{row['ci_high']:+.3f}] bits, truth {row['truth_difference']:+.3f}); {wall:.0f} s", flush=True)
    return {"rows": rows, "all_verdicts_right": all(r["verdict_right"] for r in rows)}


WORKFLOWS = {"lineage": lineage}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", choices=sorted(WORKFLOWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="small settings (a smoke run, not the documented numbers)")
    p.add_argument("--num-cpus", type=int, default=2)
    p.add_argument("--workdir", default=None, help="stores and results (default: a temp dir)")
    p.add_argument("--out", default=None, help="JSON (default jobs/results/benchmark_workflows_<workflow>.json)")
    args = p.parse_args(argv)
    import pandas as pd

    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="lmi-bench-wf-") as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        res = WORKFLOWS[args.workflow](args.seeds, work, quick=args.quick, num_cpus=args.num_cpus)
    df = pd.DataFrame(res["rows"])
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(df.round(3).to_string(index=False))
    out = Path(args.out or ROOT / "jobs" / "results" / f"benchmark_workflows_{args.workflow}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"workflow": args.workflow, "seeds": args.seeds, "quick": args.quick, "units": "bits",
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                        "load_avg_at_end": os.getloadavg()}, "total_s": round(time.time() - t0, 1)}
    out.write_text(json.dumps({**meta, **res}, indent=2))
    print(f"wrote {out}")
    return 0 if all(r.get("verdict_right", True) for r in res["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
