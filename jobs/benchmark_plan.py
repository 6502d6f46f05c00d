"""Does `lmi-distributed plan` predict a CPU study's wall time? Predicted vs actual, per study.

For each study (the demo and small variants of it, via --set overrides; each a few minutes at
most on 2 cores) this script
1. builds its demo store (not timed: ``run`` builds it on a first run, ``plan`` never does);
2. runs ``lmi-distributed plan`` with the default coefficients (``--no-calibration``), then with
   ``--calibrate`` (timed: the calibration's own seconds), each writing its prediction as JSON;
3. runs the study as README's first command does (``lmi-distributed run``, embedded local Ray,
   CPU workers) into a fresh output folder, timing the whole command, and samples the 1-minute
   load average every 5 s meanwhile;
4. re-predicts with the calibration and the load actually seen during the run ("hindsight":
   the model's error without the error of guessing the other engineers' load).
Prints a table (predicted s, actual s, ratio) and writes jobs/results/benchmark_plan.json.

    nice -n 10 python jobs/benchmark_plan.py                 # all studies
    nice -n 10 python jobs/benchmark_plan.py --only small    # one
The machine is shared: every row carries the load averages seen.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = Path(os.environ.get("LMI_BENCH_DIR", "/tmp/lmi_benchmark_plan"))

#: name -> --set overrides of configs/demo.yaml (stores and outputs under WORK)
STUDIES: dict[str, list[str]] = {
    # 10 tasks (10 pairs x 1), n=1000, d=6: two batches, one per worker
    "small": ["data.demo.n=1000", "data.demo.d=6", "replicates=1", "estimator.max_epochs=40",
              "nulls.latent_permutations=50", "resources.pairs_per_batch=5"],
    # 3 batches on 2 workers (the longest queue holds 2), early stopping on (patience 5)
    "uneven": ["data.demo.n=1500", "data.demo.d=8", "replicates=1", "estimator.max_epochs=60",
               "estimator.patience=5", "nulls.latent_permutations=100", "resources.pairs_per_batch=4"],
    # the demo itself, fewer epochs (the full demo takes ~10 min when the machine is busy)
    "demo40": ["estimator.max_epochs=40"],
    # held out (added after the model's constants were set): 4 batches of 3, d=16, more permutations
    "holdout": ["data.demo.n=1500", "data.demo.d=16", "replicates=1", "estimator.max_epochs=30",
                "nulls.latent_permutations=200", "resources.pairs_per_batch=3"],
    # held out: one worker with 2 torch threads
    "threads2": ["data.demo.n=1200", "replicates=1", "estimator.max_epochs=40", "resources.workers=1",
                 "resources.cpus_per_worker=2", "resources.torch_threads=2"],
}
#: run by default (the held-out studies with --only)
DEFAULT_STUDIES = ["small", "uneven", "demo40"]


def _cli() -> list[str]:
    return [sys.executable, "-m", "lmi_distributed.cli.main"]


def _sets(name: str) -> list[str]:
    out = []
    for s in STUDIES[name] + [f"data.store={WORK / name / 'store.zarr'}", f"data.truth={WORK / name / 'truth.json'}",
                              f"output.path={WORK / name / 'out'}"]:
        out += ["--set", s]
    return out


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("LMI_CACHE_DIR", str(WORK / "cache"))
    return env


def _plan(name: str, extra: list[str]) -> tuple[dict, float, str]:
    js = WORK / name / f"plan{'_'.join(extra).replace('-', '')}.json"
    t0 = time.perf_counter()
    p = subprocess.run(_cli() + ["plan", "configs/demo.yaml"] + _sets(name) + extra + ["--json", str(js)],
                       cwd=ROOT, env=_env(), capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if p.returncode:
        raise RuntimeError(p.stdout + p.stderr)
    return json.loads(js.read_text())["prediction"], dt, p.stdout


class LoadSampler(threading.Thread):
    def __init__(self, every: float = 5.0):
        super().__init__(daemon=True)
        self.every, self.samples, self.stop = every, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self.stop.wait(self.every)


def _build_store(name: str) -> None:
    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine.demo import ensure_demo_store
    from lmi_distributed.engine.study_data import store_path_abs

    ns = argparse.Namespace(config=str(ROOT / "configs/demo.yaml"), overrides=_sets(name)[1::2], output=None)
    cfg = load_from_args(ns)
    ensure_demo_store(store_path_abs(cfg), cfg.data.demo, truth_path=cfg.data.truth, log=lambda m: None)


def _hindsight(name: str, other_load: float) -> dict:
    """The calibrated prediction again, with the others' load seen during the run."""
    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine.costs import load_calibration, predict
    from lmi_distributed.engine.planner import plan_study

    os.environ.setdefault("LMI_CACHE_DIR", str(WORK / "cache"))
    ns = argparse.Namespace(config=str(ROOT / "configs/demo.yaml"), overrides=_sets(name)[1::2], output=None)
    cfg = load_from_args(ns)
    dm = cfg.data.demo
    plan = plan_study(cfg, lambda x, y: (dm.n, dm.d, dm.d))
    return predict(plan, cfg, calibration=load_calibration(cfg, plan), load=other_load).to_dict()


def run_one(name: str) -> dict:
    d = WORK / name
    shutil.rmtree(d / "out", ignore_errors=True)
    d.mkdir(parents=True, exist_ok=True)
    _build_store(name)
    row: dict = {"study": name, "overrides": STUDIES[name], "loadavg_start": list(os.getloadavg())}
    pred0, t_plan0, _ = _plan(name, ["--no-calibration"])
    predc, t_cal, out = _plan(name, ["--calibrate"])
    print(out, flush=True)
    row.update(plan_s=t_plan0, calibrate_plan_s=t_cal, predicted_default=pred0, predicted_calibrated=predc,
               loadavg_before_run=list(os.getloadavg()))
    sampler = LoadSampler()
    sampler.start()
    t0 = time.perf_counter()
    p = subprocess.run(_cli() + ["run", "configs/demo.yaml"] + _sets(name), cwd=ROOT, env=_env(),
                       capture_output=True, text=True)
    actual = time.perf_counter() - t0
    sampler.stop.set()
    sampler.join()
    if p.returncode not in (0, 3):  # 3: finished, some pairs flagged
        raise RuntimeError(p.stdout[-3000:] + p.stderr[-3000:])
    load_run = sum(sampler.samples) / max(len(sampler.samples), 1)
    w = predc["workers"] * predc["threads"]
    hs = _hindsight(name, max(load_run - w, 0.0))
    from lmi_distributed.engine.costs import done_epochs
    from lmi_distributed.engine.results import ResultStore

    epochs = list(done_epochs(str(d / "out"), _keys(name)).values())
    df = ResultStore(d / "out").read_tasks()
    g = df.groupby("batch_id")   # a task's wall_s is its batch's wall time / the batch's tasks
    row["actual_batch_s"] = {k: float(v) for k, v in (g["wall_s"].mean() * g.size()).items()}
    row["run_summary"] = json.loads((d / "out" / "summary.json").read_text()).get("run", {})
    row.update(actual_s=actual, loadavg_run_mean=load_run, loadavg_run_samples=sampler.samples,
               predicted_hindsight=hs, epochs_actual_mean=sum(epochs) / max(len(epochs), 1),
               ratio_default=pred0["expected_s"] / actual, ratio_calibrated=predc["expected_s"] / actual,
               ratio_hindsight=hs["expected_s"] / actual, bound_ok=predc["bound_s"] >= actual,
               run_tail=p.stdout[-600:])
    return row


def _keys(name: str) -> list[str]:
    from lmi_distributed.cli.run import load_from_args
    from lmi_distributed.engine.planner import plan_study

    ns = argparse.Namespace(config=str(ROOT / "configs/demo.yaml"), overrides=_sets(name)[1::2], output=None)
    cfg = load_from_args(ns)
    return [t.key for t in plan_study(cfg).tasks]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, choices=list(STUDIES))
    ap.add_argument("--repeat", type=int, default=1, help="run every study this many times (a fresh plan each)")
    ap.add_argument("--out", default=str(ROOT / "jobs/results/benchmark_plan.json"))
    a = ap.parse_args(argv)
    rows = []
    for rep in range(a.repeat):
        for name in a.only or DEFAULT_STUDIES:
            print(f"== {name} #{rep} (load {os.getloadavg()[0]:.2f})", flush=True)
            rows.append(run_one(name))
            rows[-1]["repeat"] = rep
            r = rows[-1]
            print(f"   actual {r['actual_s']:.0f} s, predicted {r['predicted_calibrated']['expected_s']:.0f} s "
                  f"(calibrated), {r['predicted_default']['expected_s']:.0f} s (default); run load {r['loadavg_run_mean']:.2f}",
                  flush=True)
            Path(a.out).write_text(json.dumps({"meta": meta(), "rows": rows}, indent=1))
    print(f"\n{'study':8} {'actual s':>9} {'default s':>10} {'ratio':>6} {'calib s':>8} {'ratio':>6} "
          f"{'hindsight s':>11} {'ratio':>6} {'bound s':>8} {'epochs':>6} {'load':>5}")
    for r in rows:
        print(f"{r['study']:8} {r['actual_s']:9.0f} {r['predicted_default']['expected_s']:10.0f} "
              f"{r['ratio_default']:6.2f} {r['predicted_calibrated']['expected_s']:8.0f} {r['ratio_calibrated']:6.2f} "
              f"{r['predicted_hindsight']['expected_s']:11.0f} {r['ratio_hindsight']:6.2f} "
              f"{r['predicted_calibrated']['bound_s']:8.0f} {r['epochs_actual_mean']:6.1f} {r['loadavg_run_mean']:5.2f}")
    rs = [abs(r["ratio_calibrated"] - 1) for r in rows]
    print(f"calibrated: {sum(x <= 0.3 for x in rs)}/{len(rs)} within 30 %; "
          f"default: {sum(abs(r['ratio_default'] - 1) <= 0.3 for r in rows)}/{len(rows)}; "
          f"hindsight: {sum(abs(r['ratio_hindsight'] - 1) <= 0.3 for r in rows)}/{len(rows)}")
    print(f"wrote {a.out}")
    return 0


def meta() -> dict:
    import platform

    import torch

    return {"cpu_count": os.cpu_count(), "torch": torch.__version__, "machine": platform.machine(),
            "note": "shared 2-core machine (other engineers' jobs running): see the load averages per row; "
                    "ratio = predicted / actual wall time of `lmi-distributed run`"}


if __name__ == "__main__":
    sys.exit(main())
