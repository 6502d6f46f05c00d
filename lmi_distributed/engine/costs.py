"""Measured cost model of a study on CPU workers: the expected wall time and an upper bound.

``planner`` says WHAT a study runs (tasks, batches); this module says HOW LONG it takes.

Model (seconds; one worker with ``threads`` torch threads, alone on the machine):

- one batch of P tasks of shape (n, d_x, d_y) trains while any of its tasks is active; a task
  stops early (``patience``) or at ``max_epochs``, and leaves the batch. With per-task epochs
  e_1..e_P the batch's training takes
  ``max_i(e_i) * epoch_fixed_s + sum_i(e_i) * pair_epoch_s + batch_fixed_s + P * pair_fixed_s``
  where ``pair_epoch_s`` (one task's share of an epoch: minibatch steps + validation pass) and
  ``epoch_fixed_s`` (per epoch whatever P) come from the shape (FLOPs and minibatch steps), and
  ``batch_fixed_s`` / ``pair_fixed_s`` cover set-up, the final encode and each task's KSG;
  a worker's first batch adds a warm-up (kernels loaded);
- every observed task adds ``n_latent_permutations * perm_s`` (latent-permutation null);
- W workers with t threads each on C cores slow each other down by ``max(1, (W*t + load)/C)``
  (``load``: other processes, e.g. the 1-minute load average when planning); the overheads'
  CPU part slows down like one thread, ``max(1, (1 + load)/C)``;
- batches go to the first free worker in plan order (the longest worker's queue sets the time);
- plus Ray start-up, actor start-up, preparation and aggregation/report (``Overheads``).

Coefficients come, in order of preference, from a calibration of this machine (``calibrate``:
a few timed epochs of the study's first shape(s) through ``estimators.estimate_many``, a few
latent permutations, and a pilot: the first batch to its early stop, which rescales them;
normalised to an idle machine by the load seen while measuring; cached as JSON), else from the
committed ``DEFAULT_COSTS`` (fitted by hand to ``jobs/results/benchmark_training*.json`` and the
calibrations recorded in ``jobs/results/benchmark_plan.json``). Expected epochs come from the study's own finished tasks
(result store), else the calibration's pilot (the first batch trained to its early stop on the
study's data, nothing written), else ``PRIOR_BEST_FRACTIONS`` (the demo's stored best epochs).
FLOP counting (``planner.task_flops``) stays for the TFLOP line.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.planner import Plan, Shape, _hidden, _mlp_params

__all__ = ["MachineCosts", "Overheads", "ShapeCosts", "EpochModel", "Prediction", "DEFAULT_COSTS",
           "DEFAULT_OVERHEADS", "PRIOR_BEST_FRACTIONS", "shape_costs", "epoch_model", "expected_max",
           "predict", "calibrate", "calibration_key", "cache_dir", "load_calibration", "worker_threads",
           "default_workers", "schedule", "done_epochs", "DEFAULT_WARMUP_S"]

CALIBRATION_VERSION = 1


# ------------------------------------------------------------------ coefficients
@dataclass(frozen=True)
class MachineCosts:
    """Per-machine coefficients of the shape model, for one worker with ``threads`` threads.

    ``flops``: sustained FLOP/s of the training matmuls; ``step_s``: fixed seconds per minibatch
    step of a batch (any P); ``pair_step_s``: extra seconds per step per task (kernel launches,
    optimiser, indexing); ``epoch_s``: fixed seconds per epoch (validation call, host sync);
    ``batch_s`` / ``pair_s``: fixed seconds per batch / per task (init, preprocessing, KSG of
    ~1000 held-out rows, records); ``perm_s_per_nlogn``: one latent permutation per
    n_test*log2(n_test); ``thread_exponent``: speed-up of the FLOP term ~ threads**exponent.
    """

    flops: float
    step_s: float
    pair_step_s: float
    epoch_s: float
    batch_s: float
    pair_s: float
    perm_s_per_nlogn: float
    threads: int = 1
    thread_exponent: float = 0.7


#: Fitted by hand (rounded) to: the calibrations recorded in jobs/results/benchmark_plan.json
#: (hidden 128, minibatch 128, n 1000-2000, d 6-12, 1 thread, normalised to an idle machine:
#: 5-16 ms per pair-epoch, 3-7 ms per epoch, ~8 ms per task, ~0.6 ms per permutation at
#: n_test=500) and jobs/results/benchmark_training*.json (hidden 1024, minibatch 512, 2 threads:
#: 0.19-0.42 s per pair-epoch; the model gives 0.33 s at d=10, big matmuls run faster than small
#: ones). Within a factor ~1.5 of those; ``plan --calibrate`` replaces them by measurements.
DEFAULT_COSTS = MachineCosts(flops=6.0e10, step_s=3.0e-4, pair_step_s=4.0e-4, epoch_s=2.5e-3,
                             batch_s=0.2, pair_s=0.01, perm_s_per_nlogn=1.2e-7, threads=1)


@dataclass(frozen=True)
class Overheads:
    """Seconds outside the batches on an idle machine: ``wait_s`` (Ray's process start-up and
    polling, which a busy machine hardly slows) and ``cpu_s`` (imports of the CLI and of the
    actors, pre-flight, preparation, aggregation), slowed like one thread by the load; plus
    ``report_s`` of CPU when ``output.report``. Fitted to jobs/results/benchmark_engine*.json
    (ray start ~5 s, actors ~3 s, preparation ~1 s at low load) and the runs of
    jobs/benchmark_plan.py (45-65 s outside the batches at load 6-8 on 2 cores: Ray's start-up
    alone took ~30 s and the actors' ~20 s there)."""

    wait_s: float = 5.0
    cpu_s: float = 10.0
    report_s: float = 2.0

    def total(self, report: bool, slowdown: float = 1.0) -> float:
        """Seconds; ``slowdown``: how much slower one thread runs than on an idle machine."""
        return self.wait_s + (self.cpu_s + (self.report_s if report else 0.0)) * max(slowdown, 1.0)


DEFAULT_OVERHEADS = Overheads()
#: A worker's first-batch warm-up on an idle machine (s): the calibrations' cold - warm fit (~2 s
#: measured at load ~7, i.e. ~0.5 s idle).
DEFAULT_WARMUP_S = 0.5

#: Best epoch / max_epochs of the demo's 20 stored tasks (configs/demo.yaml: lr 1e-3, hidden
#: 128, max_epochs 100, patience 20; jobs/results/benchmark_plan.json "prior"). The prior epochs of
#: a task are ``min(max_epochs, fraction * max_epochs + patience + 1)`` for each fraction: the
#: held-out loss still improves late, so most tasks run (close) to max_epochs.
PRIOR_BEST_FRACTIONS = (0.89, 0.95, 0.98, 0.99, 0.99)


@dataclass(frozen=True)
class ShapeCosts:
    """Seconds for one shape at the worker's thread count (no contention)."""

    pair_epoch_s: float   # one task's share of one epoch
    epoch_fixed_s: float  # per epoch of a batch, whatever its size
    batch_fixed_s: float  # per batch
    pair_fixed_s: float   # per task: KSG, encode, records
    perm_s: float         # one latent permutation of one observed task
    source: str = "default"

    def batch_seconds(self, epochs: Sequence[float], n_perm: int) -> float:
        """Training + nulls of one batch whose tasks run ``epochs`` epochs; ``n_perm``: latent
        permutations summed over its observed tasks."""
        if not len(epochs):
            return 0.0
        return (max(epochs) * self.epoch_fixed_s + sum(epochs) * self.pair_epoch_s + self.batch_fixed_s
                + len(epochs) * self.pair_fixed_s + n_perm * self.perm_s)


def _steps(n: int, cfg: StudyConfig) -> tuple[int, int, int]:
    e = cfg.estimator
    n_train = int(n * e.train_fraction)
    return n_train, max(n - n_train, 2), max(1, -(-n_train // e.batch_size))


def worker_threads(cfg: StudyConfig) -> int:
    """Torch threads of one worker (as ``runner.choose_workers``)."""
    r = cfg.resources
    return int(r.torch_threads or max(1, int(r.cpus_per_worker)))


def shape_costs(shape: Shape, cfg: StudyConfig, mc: MachineCosts = DEFAULT_COSTS,
                threads: int | None = None) -> ShapeCosts:
    """Model coefficients of one shape (n, d_x, d_y) from machine coefficients ``mc``."""
    n, dx, dy = shape
    e = cfg.estimator
    t = threads or worker_threads(cfg)
    params = 3 * (_mlp_params(dx, _hidden(dx, e.hidden), e.latent_dim)
                  + _mlp_params(dy, _hidden(dy, e.hidden), e.latent_dim))
    n_train, n_test, steps = _steps(n, cfg)
    flops = mc.flops * (t / mc.threads) ** mc.thread_exponent
    pair_epoch = (6.0 * n_train + 2.0 * n_test) * params / flops + steps * mc.pair_step_s
    perm = mc.perm_s_per_nlogn * n_test * math.log2(n_test)
    ksg = 20 * perm  # one KSG with its own neighbour search ~ 20 permutations (benchmark_ksg/_permutation)
    return ShapeCosts(pair_epoch, steps * mc.step_s + mc.epoch_s, mc.batch_s,
                      mc.pair_s * n / 2000 + ksg, perm, "default")


# ------------------------------------------------------------------ epochs
@dataclass(frozen=True)
class EpochModel:
    """Epochs a task trains: samples to draw from, and where they came from."""

    samples: tuple[float, ...]
    max_epochs: int
    source: str

    @property
    def mean(self) -> float:
        return float(np.mean(self.samples))

    def batch(self, size: int) -> list[float]:
        """Expected epochs of a batch's tasks: the mean for all but one, which takes the expected
        maximum of ``size`` draws (the batch trains until its slowest task stops)."""
        if size <= 0:
            return []
        mx = expected_max(self.samples, size)
        rest = (size * self.mean - mx) / (size - 1) if size > 1 else 0.0
        return [mx] + [max(rest, 1.0)] * (size - 1)


def expected_max(samples: Sequence[float], k: int) -> float:
    """E[max of k draws with replacement] from the empirical distribution of ``samples``."""
    x = np.sort(np.asarray(samples, dtype=float))
    m = len(x)
    if m == 0:
        raise ValueError("no samples")
    i = np.arange(1, m + 1)
    w = (i / m) ** k - ((i - 1) / m) ** k
    return float(np.dot(w, x))


def epoch_model(cfg: StudyConfig, *, done_epochs: Iterable[int] = (),
                pilot_epochs: Iterable[int] = ()) -> EpochModel:
    """Expected epochs: the study's finished tasks (>= 3), else the pilot's, else the prior."""
    e = cfg.estimator
    done = [int(v) for v in done_epochs]
    if len(done) >= 3:
        return EpochModel(tuple(done), e.max_epochs, f"{len(done)} finished task(s) of this study")
    pilot = [int(v) for v in pilot_epochs]
    if pilot:
        return EpochModel(tuple(pilot), e.max_epochs, f"calibration pilot ({len(pilot)} task(s))")
    s = tuple(float(min(e.max_epochs, round(f * e.max_epochs) + e.patience + 1)) for f in PRIOR_BEST_FRACTIONS)
    return EpochModel(s, e.max_epochs, "prior (the demo's best epochs as fractions of max_epochs)")


# ------------------------------------------------------------------ schedule
def default_workers(cfg: StudyConfig, cores: int, n_batches: int) -> int:
    """CPU workers ``run`` would start on a local Ray of ``cores`` CPUs (``runner.choose_workers``)."""
    r = cfg.resources
    slots = max(1, int(cores // max(min(r.cpus_per_worker, cores), 1e-9) + 1e-9))
    n = slots if r.workers == "auto" else min(int(r.workers), slots)
    return max(1, min(n, max(n_batches, 1)))


def schedule(durations: Sequence[float], workers: int, start_s: float = 0.0) -> tuple[float, list[float]]:
    """Greedy list scheduling in plan order (each batch to the first free worker); ``start_s``:
    every worker's warm-up before its first batch. Returns (makespan, busy seconds per worker)."""
    busy = [float(start_s)] * max(1, workers)
    for d in durations:
        i = int(np.argmin(busy))
        busy[i] += d
    return max(busy), busy


@dataclass
class Prediction:
    """Expected and upper-bound wall time of (the rest of) a study, seconds."""

    expected_s: float
    bound_s: float
    batches_s: float          # the longest worker's queue, expected
    bound_batches_s: float
    overhead_s: float
    workers: int
    threads: int
    cores: int
    contention: float
    load: float
    epochs_mean: float
    epochs_source: str
    costs_source: str
    n_batches: int
    per_batch_s: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def predict(plan: Plan, cfg: StudyConfig, *, workers: int | None = None, cores: int | None = None,
            calibration: Mapping[str, Any] | None = None, done: Mapping[str, int] | None = None,
            load: float = 0.0, overheads: Overheads = DEFAULT_OVERHEADS,
            machine: MachineCosts = DEFAULT_COSTS) -> Prediction:
    """Predict the wall time of ``run`` for the tasks of ``plan`` not in ``done``.

    ``done``: finished task key -> epochs it trained (the result store); their batches shrink
    and their epochs become the epoch model. ``calibration``: a dict from :func:`calibrate`.
    ``cores``: CPUs of the local Ray (default ``os.cpu_count()``); ``workers``: as ``--workers``.
    ``load``: other processes' load (runnable threads) on those cores.
    """
    done = dict(done or {})
    cores = int(cores or os.cpu_count() or 1)
    threads = worker_threads(cfg)
    batches = [b.without(set(done)) for b in plan.batches]
    batches = [b for b in batches if b.size]
    w = int(workers) if workers else default_workers(cfg, cores, len(batches))
    w = max(1, min(w, max(len(batches), 1)))
    contention = max(1.0, (w * threads + max(load, 0.0)) / cores)
    cal = dict(calibration or {})
    em = epoch_model(cfg, done_epochs=done.values(), pilot_epochs=(cal.get("pilot") or {}).get("epochs", ()))
    measured = {tuple(json.loads(k)): v for k, v in (cal.get("shapes") or {}).items()}
    ratio = _calibration_ratio(measured, cfg, machine, threads)
    max_e = float(cfg.estimator.max_epochs)
    exp_d, bound_d = [], []
    for b in batches:
        sc = _costs_for(b.shape, cfg, machine, threads, measured, ratio)
        n_perm = sum(t.n_latent_permutations for t in b.tasks if t.kind == "observed")
        if b.tasks[0].kind == "split":  # interaction split: one training of the full join (upper bound)
            n_perm = 0
        exp_d.append(sc.batch_seconds(em.batch(b.size), n_perm) * contention)
        bound_d.append(sc.batch_seconds([max_e] * b.size, n_perm) * contention)
    # a worker's first batch also loads torch's and numba's kernels (calibration: cold - warm fit)
    warm = float(cal.get("first_fit_extra_s", DEFAULT_WARMUP_S)) / float(cal.get("contention_at_calibration", 1.0))
    span, _ = schedule(exp_d, w, warm * contention)
    bspan, _ = schedule(bound_d, w, warm * contention)
    one_thread = max(1.0, (1.0 + max(load, 0.0)) / cores)
    over = overheads.total(bool(getattr(cfg.output, "report", False)), one_thread)
    src = "calibration" if measured else "default coefficients"
    if measured and ratio is not None and any(tuple(b.shape) not in measured for b in batches):
        src += " (+ default model scaled for uncalibrated shapes)"
    return Prediction(span + over, bspan + over, span, bspan, over, w, threads, cores, contention, load,
                      em.mean, em.source, src, len(batches), exp_d)


def _measured_costs(v: Mapping[str, Any]) -> ShapeCosts:
    return ShapeCosts(float(v["pair_epoch_s"]), float(v["epoch_fixed_s"]), float(v["batch_fixed_s"]),
                      float(v["pair_fixed_s"]), float(v["perm_s"]), "calibration")


def _calibration_ratio(measured: Mapping[tuple, Any], cfg: StudyConfig, mc: MachineCosts,
                       threads: int) -> float | None:
    """Median (measured / default) per-pair-epoch time over calibrated shapes: scales the default
    model for shapes the calibration did not time."""
    if not measured:
        return None
    r = [float(v["pair_epoch_s"]) / shape_costs(s, cfg, mc, threads).pair_epoch_s  # type: ignore[arg-type]
         for s, v in measured.items()]
    return float(np.median(r))


def _costs_for(shape: Shape, cfg: StudyConfig, mc: MachineCosts, threads: int,
               measured: Mapping[tuple, Any], ratio: float | None) -> ShapeCosts:
    if tuple(shape) in measured:
        return _measured_costs(measured[tuple(shape)])
    sc = shape_costs(shape, cfg, mc, threads)
    if ratio is None:
        return sc
    return ShapeCosts(sc.pair_epoch_s * ratio, sc.epoch_fixed_s * ratio, sc.batch_fixed_s, sc.pair_fixed_s,
                      sc.perm_s, "default x calibration")


# ------------------------------------------------------------------ calibration
def cache_dir() -> Path:
    """Where calibrations are cached: ``$LMI_CACHE_DIR`` or ``~/.cache/lmi_distributed``."""
    root = os.environ.get("LMI_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lmi_distributed")
    return Path(root) / "calibration"


def machine_id() -> dict:
    import torch

    return {"host": socket.gethostname(), "cpus": os.cpu_count(), "machine": platform.machine(),
            "processor": platform.processor(), "torch": torch.__version__}


def _cal_shapes(plan: Plan, max_shapes: int) -> list[tuple[Shape, int]]:
    """The first ``max_shapes`` shapes of the plan's (non-split) batches, each with the size of
    its first batch."""
    out: dict[Shape, int] = {}
    for b in plan.batches:
        if b.tasks and b.tasks[0].kind != "split" and b.shape not in out and b.shape[0] > 0:
            out[b.shape] = b.size
    return list(out.items())[:max_shapes]


def calibration_key(cfg: StudyConfig, plan: Plan, *, max_shapes: int = 2, pilot: bool = True) -> str:
    """Cache key: machine + shapes (with batch sizes) + estimator settings + threads (+ the data
    and first batch when a pilot is run)."""
    from lmi_distributed.engine.study_data import store_path_abs

    key: dict[str, Any] = {"v": CALIBRATION_VERSION, "machine": machine_id(),
                           "shapes": [[list(s), p] for s, p in _cal_shapes(plan, max_shapes)],
                           "estimator": cfg.estimator_settings("cpu").numbers_dump(),
                           "threads": worker_threads(cfg), "pilot": pilot}
    if pilot:
        key["data"] = {"store": store_path_abs(cfg), "demo": repr(cfg.data.demo),
                       "first_batch": [t.key for t in plan.batches[0].tasks] if plan.batches else [],
                       "pairing": repr(cfg.pairing)}
    return hashlib.blake2b(json.dumps(key, sort_keys=True, default=str).encode(), digest_size=10).hexdigest()


def load_calibration(cfg: StudyConfig, plan: Plan, *, pilot: bool = True) -> dict | None:
    """The cached calibration of this study's shapes/settings on this machine, or None.
    Without a pilot-bearing entry, a timing-only one is used."""
    for p in ((True, False) if pilot else (False,)):
        path = cache_dir() / f"{calibration_key(cfg, plan, pilot=p)}.json"
        if path.exists():
            try:
                return json.loads(path.read_text())
            except (OSError, ValueError):
                return None
    return None


def _synthetic_pair(shape: Shape, seed: int) -> tuple[np.ndarray, np.ndarray]:
    n, dx, dy = shape
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 2))
    x = rng.standard_normal((n, dx)) * 0.5
    y = rng.standard_normal((n, dy)) * 0.5
    x[:, :min(2, dx)] += z[:, :min(2, dx)]
    y[:, :min(2, dy)] += z[:, :min(2, dy)]
    return x.astype(np.float32), y.astype(np.float32)


def _time_fit(shape: Shape, P: int, settings: Any, epochs: int) -> tuple[float, float, Any]:
    """(seconds per epoch after the first, total seconds, first result) of P synthetic pairs."""
    import warnings

    from lmi_distributed.estimators.api import estimate_many

    pairs = [_synthetic_pair(shape, i) for i in range(P)]
    stamps: list[float] = []
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = estimate_many(pairs, seeds=list(range(P)), settings=settings, validate=False,
                            progress=lambda e, n_act, v: stamps.append(time.perf_counter()))
    total = time.perf_counter() - t0
    per_epoch = (stamps[-1] - stamps[0]) / max(len(stamps) - 1, 1)
    return per_epoch, total, res[0]


def calibrate(cfg: StudyConfig, plan: Plan, *, epochs: int = 4, max_shapes: int = 2, pilot: bool = True,
              permutations: int = 20, save: bool = True,
              log: Callable[[str], None] = lambda m: None) -> dict:
    """Time this machine on the study's first shape(s) through the real estimator code; cache it.

    Per shape (the first batch's size P): ``epochs`` + 1 epochs (early stopping off) of P and of
    1 synthetic pair(s) of that shape -> seconds per epoch = epoch_fixed_s + P * pair_epoch_s;
    the rest of each fit is batch_fixed_s + P * pair_fixed_s (set-up, encode, KSG); then
    ``permutations`` latent permutations of one result -> perm_s. ``pilot``: also the study's
    first batch on its real data (``worker.execute_batch``, nothing written) trained to its early
    stop, for the epochs and to rescale the shape's timings to its training time (skipped when
    the store does not exist yet). Runs with the worker's torch
    threads. Returns the JSON dict (also written to ``cache_dir()/<key>.json`` when ``save``).
    """
    import torch

    from lmi_distributed.estimators.permutation import result_latent_null
    from lmi_distributed.estimators.training import torch_threads

    threads = worker_threads(cfg)
    base = cfg.estimator_settings("cpu")
    settings = base.replace(max_epochs=epochs + 1, patience=epochs + 1)
    out: dict[str, Any] = {"version": CALIBRATION_VERSION, "machine": machine_id(), "threads": threads,
                           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "loadavg_before": list(os.getloadavg()),
                           "epochs_timed": epochs, "shapes": {}}
    t_all = time.perf_counter()
    cores = os.cpu_count() or 1
    with torch_threads(threads):
        shapes = _cal_shapes(plan, max_shapes)
        if shapes:  # warm-up: imports, numba kernels (cached on disk after the first ever run)
            _, t_cold, _ = _time_fit(shapes[0][0], 1, base.replace(max_epochs=1, patience=1), 1)
            _, t_warm, _ = _time_fit(shapes[0][0], 1, base.replace(max_epochs=1, patience=1), 1)
            out["first_fit_extra_s"] = max(t_cold - t_warm, 0.0)
        for shape, P in shapes:
            log(f"calibrating shape n={shape[0]} d_x={shape[1]} d_y={shape[2]} ({P} pair(s), {epochs} epochs)")
            eP, tP, res = _time_fit(shape, P, settings, epochs)
            if P > 1:
                e1, t1, _ = _time_fit(shape, 1, settings, epochs)
                pair_epoch = max((eP - e1) / (P - 1), 1e-6)
                epoch_fixed = max(e1 - pair_epoch, 0.0)
                rest_P, rest_1 = tP - (epochs + 1) * eP, t1 - (epochs + 1) * e1
                pair_fixed = max((rest_P - rest_1) / (P - 1), 0.0)
                batch_fixed = max(rest_1 - pair_fixed, 0.0)
            else:  # one pair: split by the default model's proportions
                sc = shape_costs(shape, cfg, threads=threads)
                frac = sc.pair_epoch_s / (sc.pair_epoch_s + sc.epoch_fixed_s)
                pair_epoch, epoch_fixed = eP * frac, eP * (1 - frac)
                pair_fixed, batch_fixed = max(tP - (epochs + 1) * eP, 0.0), 0.0
            perm_s = 0.0
            if permutations > 0:  # the same count twice: the first one loads the kernels
                for seed in (0, 1):
                    t0 = time.perf_counter()
                    result_latent_null(res, n_permutations=permutations, seed=seed, backend=cfg.estimator.ksg_backend)
                    perm_s = (time.perf_counter() - t0) / permutations
            out["shapes"][json.dumps(list(shape))] = {
                "P": P, "epoch_s_P": eP, "pair_epoch_s": pair_epoch, "epoch_fixed_s": epoch_fixed,
                "batch_fixed_s": batch_fixed, "pair_fixed_s": pair_fixed, "perm_s": perm_s,
                "fit_s_P": tP}
        out["timing_loadavg"] = list(os.getloadavg())
        if pilot:
            out["pilot"] = _pilot(cfg, plan, log)
            _scale_to_pilot(out, plan)
    # the timings ran beside other processes: divide by the contention seen then (1-minute load
    # average before we started = the others' load), so that ``predict`` can apply the load of
    # the run instead. A rough correction: the load average lags by about a minute.
    other = max(float(out["loadavg_before"][0]), 0.0)
    slow = max(1.0, (threads + other) / cores)
    out["contention_at_calibration"] = slow
    for v in out["shapes"].values():
        for k in ("pair_epoch_s", "epoch_fixed_s", "batch_fixed_s", "pair_fixed_s", "perm_s"):
            v[k + "_measured"] = v[k]
            v[k] = v[k] / slow
    out["loadavg_after"] = list(os.getloadavg())
    out["seconds"] = time.perf_counter() - t_all
    out["torch_threads_seen"] = torch.get_num_threads()
    if save:
        p = cache_dir() / f"{calibration_key(cfg, plan, max_shapes=max_shapes, pilot=bool(out.get('pilot')))}.json"
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        os.replace(tmp, p)
        out["path"] = str(p)
    return out


def _scale_to_pilot(out: dict, plan: Plan) -> None:
    """The pilot (a real batch, tens of seconds) is a longer and truer measurement than the few
    timed epochs (seconds, which another process can disturb): scale the per-epoch and per-task
    terms of its shape so that the model gives the pilot's training time, and take the
    permutation cost from the pilot's null. Records ``pilot_scale``."""
    pl = out.get("pilot")
    if not pl or not pl.get("train_s") or not plan.batches:
        return
    b = plan.batches[0]
    v = out["shapes"].get(json.dumps(list(b.shape)))
    if v is None:
        return
    ep = pl["epochs"]
    model = (max(ep) * v["epoch_fixed_s"] + sum(ep) * v["pair_epoch_s"] + v["batch_fixed_s"]
             + len(ep) * v["pair_fixed_s"])
    if model <= 0:
        return
    k = float(pl["train_s"]) / model
    for key in ("pair_epoch_s", "epoch_fixed_s", "batch_fixed_s", "pair_fixed_s"):
        v[key] *= k
    v["pilot_scale"] = k
    n_perm = sum(t.n_latent_permutations for t in b.tasks if t.kind == "observed")
    if n_perm and pl.get("null_s"):
        v["perm_s"] = float(pl["null_s"]) / n_perm


def _pilot(cfg: StudyConfig, plan: Plan, log: Callable[[str], None]) -> dict | None:
    """The study's first batch on its data, to its early stop, nothing written: epochs + seconds."""
    from lmi_distributed.engine.study_data import out_dir_abs, store_path_abs
    from lmi_distributed.engine.worker import execute_batch

    store = store_path_abs(cfg)
    if not plan.batches or not os.path.exists(store):
        log(f"no pilot: the store {store} does not exist yet (the epochs come from the prior)")
        return None
    b = plan.batches[0]
    log(f"pilot: batch {b.batch_id} ({b.size} task(s)) to its early stop on the study's data")
    t0 = time.perf_counter()
    recs = execute_batch(b, cfg, store, out_dir_abs(cfg), write=False)
    tm = recs[0].get("_timing", {}) if recs else {}
    return {"batch_id": b.batch_id, "epochs": [int(r["epochs"]) for r in recs],
            "best_epochs": [int(r["best_epoch"]) for r in recs], "wall_s": time.perf_counter() - t0,
            "train_s": tm.get("train_s"), "null_s": tm.get("null_s"), "read_s": tm.get("read_s")}


def done_epochs(out_dir: str, keys: Iterable[str]) -> dict[str, int]:
    """Finished task key -> epochs trained, from the study's result store (empty when none)."""
    from lmi_distributed.engine.results import ResultStore

    rs = ResultStore(out_dir)
    if not rs.parts():
        return {}
    df = rs.read_tasks(keys)
    if df.empty or "epochs" not in df:
        return {}
    return {str(k): int(e) for k, e in zip(df["key"], df["epochs"])}
