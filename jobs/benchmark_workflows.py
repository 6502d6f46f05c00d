"""Benchmarks of the paper's workflows as study kinds: do they recover their synthetic truths?

One function per workflow (``bench_<kind>``) returns table rows; ``main`` prints them and saves
JSON to ``jobs/results/benchmark_workflows_<kind>.json`` (one file per workflow).

    python jobs/benchmark_workflows.py interaction                 # the demo config, seed 0
    python jobs/benchmark_workflows.py interaction --seeds 0 1 2 --num-cpus 2

interaction: ``configs/interaction_demo.yaml`` run end to end (embedded local Ray, as
``lmi-distributed run``) on the synthetic proteome with signal and with the annotation table
shuffled (``data.demo.proteome.shuffle_annotations``); per run: wall time, I(K;T) in bits vs its
truth and the retrain-shuffle null, AUC and AP (mean +- SEM over splits). Known answers: AUC >= 0.8
with signal, 0.5 +- 0.05 shuffled.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_interaction(args) -> list[dict]:
    """Rows: one per (seed, variant) run of the interaction demo."""
    from lmi_distributed.engine.config import load_study
    from lmi_distributed.engine.runner import run_study

    rows = []
    for seed in args.seeds:
        for variant, shuffled in (("signal", False), ("shuffled", True)):
            if args.variants and variant not in args.variants:
                continue
            base = Path(args.workdir) / f"interaction_s{seed}_{variant}"
            cfg = load_study(ROOT / "configs" / "interaction_demo.yaml", [
                f"seed={seed}", f"data.demo.proteome.seed={seed}",
                f"data.demo.proteome.shuffle_annotations={str(shuffled).lower()}",
                f"data.store={base / 'store.zarr'}", f"data.truth={base / 'truth.json'}",
                f"pairing.table={base / 'annotations.csv'}", f"output.path={base / 'out'}"] + args.set)
            t0 = time.perf_counter()
            summary = run_study(cfg, num_cpus=args.num_cpus, overwrite=True, progress_every=60.0)
            wall = time.perf_counter() - t0
            pair = summary["pairs"][0]
            it = summary["interaction"]
            rows.append({"workflow": "interaction", "seed": seed, "variant": variant, "wall_s": round(wall, 1),
                         "mi_bits": pair.get("estimate"), "truth_bits": pair.get("truth"),
                         "shuffle_null_mean": pair.get("shuffle_null_mean"), "p_shuffle": pair.get("p_shuffle"),
                         "p_latent": pair.get("p_latent"), "auc_mean": it.get("auc_mean"),
                         "auc_sem": it.get("auc_sem"), "ap_mean": it.get("ap_mean"), "ap_sem": it.get("ap_sem"),
                         "ap_baseline": it.get("ap_baseline_mean"), "splits_ok": it.get("n_ok"),
                         "splits": it.get("splits"), "held_out": it.get("held_out"),
                         "workers": summary.get("run", {}).get("workers"),
                         "load_avg_1m_at_end": round(os.getloadavg()[0], 1)})
    return rows


WORKFLOWS: dict[str, Callable] = {"interaction": bench_interaction}


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("workflow", choices=sorted(WORKFLOWS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the embedded local Ray")
    p.add_argument("--workdir", default=str(ROOT / "runs" / "benchmark_workflows"))
    p.add_argument("--variants", nargs="+", default=None, help="interaction: signal and/or shuffled (default both)")
    p.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE", help="config override")
    p.add_argument("--out", default=None, help="JSON path (default jobs/results/benchmark_workflows_<kind>.json)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    rows = WORKFLOWS[args.workflow](args)
    cols = list(rows[0]) if rows else []
    print("\n" + " | ".join(cols))
    for r in rows:
        print(" | ".join(_fmt(r[c]) for c in cols))
    out = Path(args.out or ROOT / "jobs" / "results" / f"benchmark_workflows_{args.workflow}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():  # keep the rows of other (seed, variant) runs: run variants one at a time if need be
        ident = lambda r: (r.get("seed"), r.get("variant"))  # noqa: E731
        mine = {ident(r) for r in rows}
        rows = [r for r in json.loads(out.read_text()).get("rows", []) if ident(r) not in mine] + rows
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out.write_text(json.dumps({"workflow": args.workflow, "seeds": args.seeds, "overrides": args.set,
                               "cpu_count": os.cpu_count(), "load_avg_at_end": load, "rows": rows}, indent=2))
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
