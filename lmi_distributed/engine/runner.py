"""Ray execution of a study: worker actors (one per GPU, or CPU fallback), bounded scheduling,
progress, retries, resume, aggregation.

The actor only pins a device and sets torch threads; the work is ``execute.execute_batch``.
Scheduling keeps at most ``resources.max_in_flight_per_worker`` batches per actor and waits with
``ray.wait`` (one result at a time), so faster actors take more batches. The study context
(config + resolved variables) is put in the object store once. A batch lost with its actor is
retried by Ray (``max_restarts``/``max_task_retries``) and, failing that, requeued by the
engine up to ``max_batch_attempts`` times; results are keyed by task, so nothing is duplicated.
"""
from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from lmi_distributed.engine.config import StudyConfig
from lmi_distributed.engine.planner import Batch, Plan, plan_study
from lmi_distributed.engine.results import ResultStore
from lmi_distributed.errors import ConfigError, LMIError

__all__ = ["run_study", "prepare_study", "connect_ray", "choose_workers", "WorkerChoice", "RunState"]


def _log(msg: str) -> None:
    print(f"[lmi-distributed] {msg}", flush=True)


# ------------------------------------------------------------------ preparation
def prepare_study(cfg: StudyConfig, *, overwrite: bool = False, create_store: bool = True,
                  log: Callable[[str], None] = _log):
    """Build (or rebuild) the demo store if asked, resolve variables, plan, open the result store.

    The result store checks the study's fingerprint and the identity of every input matrix
    (uid, shape, provenance) against ``study.json``, then moves damaged task parts and pMI
    aside so only their tasks are recomputed (one log line). Returns (plan, store_path, out_dir,
    variables, result_store, resuming).
    """
    from lmi_distributed.engine.execute import (data_identity, forget_store, open_store_cached, out_dir_abs,
                                                pair_shape, resolve_variables, store_path_abs)

    store_path, out_dir = store_path_abs(cfg), out_dir_abs(cfg)
    forget_store(store_path)  # see the store as it is now (re-ingested matrices, a rebuilt demo)
    if cfg.data.demo is not None:
        from lmi_distributed.engine.demo import ensure_demo_store

        ensure_demo_store(store_path, cfg.data.demo, truth_path=cfg.data.truth, create=create_store, log=log)
    if not os.path.exists(store_path):
        raise ConfigError(f"data.store: {store_path} does not exist")
    variables = resolve_variables(cfg, store_path)
    plan = plan_study(cfg, lambda x, y: pair_shape(cfg, store_path, variables, x, y))
    identity = data_identity(cfg, open_store_cached(store_path))
    results = ResultStore(out_dir)
    resuming = results.init(cfg, overwrite=overwrite, identity=identity, log=log)
    save = cfg.output.save_pmi
    pmi_keys = [t.key for t in plan.tasks if save == "all" or (save == "observed" and t.kind == "observed")]
    results.repair(pmi_keys, batch_keys={b.batch_id: [t.key for t in b.tasks] for b in plan.batches}, log=log)
    resuming = resuming and bool(results.parts())
    return plan, store_path, out_dir, variables, results, resuming


# ------------------------------------------------------------------------- ray
def connect_ray(address: str | None = None, num_cpus: int | None = None,
                log: Callable[[str], None] = _log) -> str:
    """Connect to Ray: an explicit address, RAY_ADDRESS (as under ``ray job submit``), or an
    embedded local instance (``address="local"``, no dashboard). Returns a description."""
    import ray

    if ray.is_initialized():
        return "already connected"
    addr = address or os.environ.get("RAY_ADDRESS")
    if addr and addr != "local":
        ray.init(address="auto" if addr == "auto" or not address else addr,
                 log_to_driver=True, ignore_reinit_error=True)
        desc = f"connected to Ray cluster at {ray.get_runtime_context().gcs_address}"
    else:
        kw: dict[str, Any] = {"address": "local", "include_dashboard": False, "ignore_reinit_error": True}
        if num_cpus is not None:
            kw["num_cpus"] = num_cpus
        ray.init(**kw)
        desc = f"started an embedded local Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs)"
    log(desc)
    return desc


@dataclass
class WorkerChoice:
    n_workers: int
    use_gpu: bool
    num_gpus: float
    num_cpus: float
    torch_threads: int
    message: str


def choose_workers(cfg: StudyConfig, cluster: dict[str, float], n_batches: int) -> WorkerChoice:
    """Decide worker count and resources from the cluster's totals; never ask for missing GPUs.

    GPUs in the cluster and ``gpus_per_worker > 0``: one actor per ``gpus_per_worker`` share.
    No GPU: CPU actors when ``cpu_fallback`` (and say so), else ConfigError; ``require_gpu``
    fails instead of falling back.
    """
    r = cfg.resources
    n_gpu = float(cluster.get("GPU", 0) or 0)
    n_cpu = float(cluster.get("CPU", 1) or 1)
    threads = r.torch_threads or max(1, int(r.cpus_per_worker))
    want_gpu = r.gpus_per_worker > 0
    if want_gpu and n_gpu >= r.gpus_per_worker:
        slots = int(n_gpu // r.gpus_per_worker + 1e-9)
        n = slots if r.workers == "auto" else min(int(r.workers), slots)
        cpus = min(r.cpus_per_worker, max(n_cpu / max(n, 1), 0.01))
        msg = f"{n} GPU worker(s), {r.gpus_per_worker:g} GPU each (cluster has {n_gpu:g} GPU)"
        choice = WorkerChoice(n, True, r.gpus_per_worker, cpus, threads, msg)
    else:
        if want_gpu and r.require_gpu:
            raise ConfigError(
                f"resources.require_gpu: the Ray cluster has {n_gpu:g} GPU(s) but each worker asks for "
                f"{r.gpus_per_worker:g}; add GPU nodes, lower resources.gpus_per_worker, or set require_gpu: false")
        if want_gpu and not r.cpu_fallback:
            raise ConfigError(
                f"resources.cpu_fallback: the Ray cluster has {n_gpu:g} GPU(s) (each worker asks for "
                f"{r.gpus_per_worker:g}) and cpu_fallback is false")
        cpus = min(r.cpus_per_worker, n_cpu)
        slots = max(1, int(n_cpu // cpus + 1e-9))
        n = slots if r.workers == "auto" else min(int(r.workers), slots)
        why = "no GPU in the Ray cluster" if want_gpu else "gpus_per_worker is 0"
        msg = f"{why}: using {n} CPU worker(s), {cpus:g} CPU and {threads} torch thread(s) each"
        choice = WorkerChoice(n, False, 0.0, cpus, threads, msg)
    choice.n_workers = max(1, min(choice.n_workers, max(n_batches, 1)))
    return choice


class _LMIWorker:
    """Ray actor body: pins a device, sets torch threads, runs ``execute_batch``."""

    def __init__(self, index: int, torch_threads: int, use_gpu: bool):
        import torch

        self.index = index
        torch.set_num_threads(torch_threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        self.device = "cpu"
        self.gpu_ids: list = []
        if use_gpu:
            import ray

            self.gpu_ids = list(ray.get_gpu_ids())
            if torch.cuda.is_available():
                self.device = "cuda"
                torch.cuda.set_device(0)  # the first of the GPUs Ray made visible to this actor
        self.name = f"w{index}@{socket.gethostname()}:{os.getpid()}"

    def info(self) -> dict:
        import torch

        return {"index": self.index, "name": self.name, "device": self.device, "gpu_ids": self.gpu_ids,
                "torch_threads": torch.get_num_threads(), "pid": os.getpid()}

    def run(self, batch: Batch, ctx: dict, attempt: int) -> list[dict]:
        from lmi_distributed.engine.execute import execute_batch

        recs = execute_batch(batch, ctx["config"], ctx["store_path"], ctx["out_dir"], device=self.device,
                             variables=ctx["variables"], worker=self.name, attempt=attempt)
        for r in recs:
            r.pop("latent_null", None)  # already in the Parquet part; keep the reply small
        return recs


@dataclass
class RunState:
    """Live bookkeeping of a run (passed to the ``on_progress`` hook)."""

    total_tasks: int
    done_tasks: int = 0
    done_batches: int = 0
    total_batches: int = 0
    retried_batches: int = 0
    started: float = field(default_factory=time.perf_counter)
    workers: list = field(default_factory=list)
    actors: list = field(default_factory=list)  # Ray actor handles (for tests / introspection)
    compute_s: float = 0.0
    io_s: float = 0.0

    def line(self) -> str:
        el = time.perf_counter() - self.started
        rate = self.done_tasks / el if el > 0 else 0.0
        left = self.total_tasks - self.done_tasks
        eta = left / rate if rate > 0 else None
        return (f"{self.done_tasks}/{self.total_tasks} tasks, {self.done_batches}/{self.total_batches} batches, "
                f"{rate:.2f} tasks/s, elapsed {el:.0f}s, ETA " + (f"{eta:.0f}s" if eta is not None else "?"))


def run_study(
    cfg: StudyConfig,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    overwrite: bool = False,
    progress_every: float = 10.0,
    max_batches: int | None = None,
    on_progress: Callable[[RunState], None] | None = None,
    shutdown: bool | None = None,
    log: Callable[[str], None] = _log,
) -> dict:
    """Run (or resume) a study on Ray and aggregate it. Returns the summary dict.

    ``address``: Ray address (None: RAY_ADDRESS if set, else an embedded local Ray with
    ``num_cpus``). ``max_batches``: stop after that many batches (a partial run; rerun resumes).
    ``on_progress(state)``: called after each finished batch. ``shutdown``: shut Ray down at the
    end (default: only if this call started it).
    """
    import ray

    t_start = time.perf_counter()
    plan, store_path, out_dir, variables, results, resuming = prepare_study(cfg, overwrite=overwrite, log=log)
    done_keys = results.finished_keys()
    pending = [b.without(done_keys) for b in plan.batches]
    pending = [b for b in pending if b.size]
    n_left = sum(b.size for b in pending)
    log(f"study {cfg.name!r}: {len(plan.tasks)} tasks in {len(plan.batches)} batches; "
        f"{len(plan.tasks) - n_left} already done{' (resuming)' if resuming else ''}, {n_left} to run")
    run_info: dict[str, Any] = {"resumed": bool(resuming), "tasks_total": len(plan.tasks),
                                "tasks_skipped": len(plan.tasks) - n_left}
    t_prep = time.perf_counter()
    state = RunState(total_tasks=n_left, total_batches=len(pending))
    started_ray = False
    if pending:
        started_ray = not ray.is_initialized()
        connect_ray(address, num_cpus, log=log)
        try:
            _schedule(cfg, plan, pending, store_path, out_dir, variables, state, run_info,
                      progress_every, max_batches, on_progress, log)
        finally:
            if shutdown or (shutdown is None and started_ray):
                ray.shutdown()
    t_run = time.perf_counter()
    plan_keys = [t.key for t in plan.tasks]
    tasks = results.read_tasks(keys=plan_keys)  # only the current plan's records count
    counts = results.key_counts()
    dups = sorted(k for k, c in counts.items() if c > 1)
    if dups:
        log(f"warning: {len(dups)} task key(s) stored more than once (kept the first): {dups[:5]}")
    run_info.update({
        "wall_s": round(time.perf_counter() - t_start, 3), "prepare_s": round(t_prep - t_start, 3),
        "execute_s": round(t_run - t_prep, 3), "tasks_run": state.done_tasks,
        "batches_run": state.done_batches, "batches_retried": state.retried_batches,
        "compute_s": round(state.compute_s, 3), "io_s": round(state.io_s, 3),
        "duplicate_keys": len(dups), "complete": len(tasks) == len(plan.tasks),
    })
    summary = {}
    if plan_keys:  # always: a stale summary of earlier results must not outlive them
        from lmi_distributed.engine.aggregate import write_outputs

        summary = write_outputs(cfg, out_dir, tasks, run_info=run_info, report=cfg.output.report,
                                keys=plan_keys, study_fingerprint=results.fingerprint)
        log(f"wrote {out_dir}/pairs.parquet, summary.json" + (", heatmap.png, report.html" if cfg.output.report else "")
            + f" ({len(tasks)}/{len(plan.tasks)} tasks done, {summary.get('n_significant', 0)} significant pair(s))"
            + ("" if summary.get("complete") else f"; q-values {summary.get('q_values')}")
            + (f"; {len(summary.get('flagged', []))} pair(s) flagged: "
               + ", ".join(f"{f['pair']} {f['status']}" for f in summary["flagged"][:5])
               if summary.get("flagged") and summary.get("complete") else ""))
    summary.setdefault("run", run_info)
    summary["out_dir"] = out_dir
    return summary


def _schedule(cfg: StudyConfig, plan: Plan, pending: list[Batch], store_path: str, out_dir: str,
              variables: dict, state: RunState, run_info: dict, progress_every: float,
              max_batches: int | None, on_progress, log) -> None:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError, RayTaskError

    r = cfg.resources
    t_actors = time.perf_counter()
    choice = choose_workers(cfg, ray.cluster_resources(), len(pending))
    log(choice.message)
    run_info.update({"workers": choice.n_workers, "device": "cuda" if choice.use_gpu else "cpu",
                     "torch_threads": choice.torch_threads})
    env = {k: str(choice.torch_threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    Actor = ray.remote(_LMIWorker)
    tag = uuid.uuid4().hex[:6]
    actors = [Actor.options(num_cpus=choice.num_cpus, num_gpus=choice.num_gpus, max_restarts=r.max_restarts,
                            max_task_retries=r.max_task_retries, name=f"lmi-{cfg.name}-{i}-{tag}",
                            runtime_env={"env_vars": env}).remote(i, choice.torch_threads, choice.use_gpu)
              for i in range(choice.n_workers)]
    # Never wait forever on resources that cannot be granted: give actors a deadline to start.
    info_refs = {a.info.remote(): i for i, a in enumerate(actors)}
    ready, not_ready = ray.wait(list(info_refs), num_returns=len(info_refs), timeout=180)
    alive: list[int] = []
    for ref in ready:
        try:
            inf = ray.get(ref)
            alive.append(info_refs[ref])
            state.workers.append(inf)
        except Exception as exc:  # noqa: BLE001
            log(f"worker {info_refs[ref]} failed to start: {exc}")
    for ref in not_ready:
        log(f"worker {info_refs[ref]} did not start within 180 s (resources busy?); going on without it")
        ray.kill(actors[info_refs[ref]])
    if not alive:
        raise LMIError("no worker actor could start on the Ray cluster (see the messages above)")
    alive.sort()
    state.actors = actors
    run_info["actors_start_s"] = round(time.perf_counter() - t_actors, 3)
    devs = sorted({w["device"] for w in state.workers})
    log(f"{len(alive)} worker(s) ready on {', '.join(devs)}")

    ctx_ref = ray.put({"config": cfg, "store_path": store_path, "out_dir": out_dir, "variables": variables})
    queue: deque[tuple[Batch, int]] = deque((b, 0) for b in pending)
    inflight: dict[Any, tuple[Batch, int, int]] = {}
    count = {i: 0 for i in alive}
    last = time.perf_counter()
    stop = False
    try:
        from ray.util.metrics import Gauge

        gauge = Gauge("lmi_tasks_done", description="LMI study tasks finished", tag_keys=("study",))
    except Exception:  # noqa: BLE001
        gauge = None
    while (queue and not stop) or inflight:
        if not stop:
            for i in list(count):
                while queue and count[i] < r.max_in_flight_per_worker:
                    b, att = queue.popleft()
                    ref = actors[i].run.options(name=f"lmi batch {b.batch_id}").remote(b, ctx_ref, att)
                    inflight[ref] = (b, i, att)
                    count[i] += 1
        if not inflight:
            break
        done, _ = ray.wait(list(inflight), num_returns=1, timeout=progress_every)
        for ref in done:
            b, i, att = inflight.pop(ref)
            count[i] -= 1
            try:
                recs = ray.get(ref)
            except (RayActorError, RayTaskError, GetTimeoutError, Exception) as exc:  # noqa: BLE001
                cause = getattr(exc, "cause", None)
                if isinstance(cause, LMIError):  # bad data or settings: retrying cannot help
                    raise type(cause)(f"batch {b.batch_id}: {cause}") from exc
                if att + 1 >= r.max_batch_attempts:
                    raise LMIError(f"batch {b.batch_id} failed {att + 1} time(s); last error: {exc}") from exc
                log(f"batch {b.batch_id} lost on worker {i} ({type(exc).__name__}); retrying "
                    f"(attempt {att + 2}/{r.max_batch_attempts})")
                state.retried_batches += 1
                if isinstance(exc, RayActorError) and not _actor_alive(actors[i]):
                    log(f"worker {i} is gone for good; {len(count) - 1} left")
                    count.pop(i, None)
                    if not count:
                        raise LMIError("every worker actor died; see the Ray logs") from exc
                queue.appendleft((b, att + 1))
                continue
            state.done_tasks += len(recs)
            state.done_batches += 1
            if recs:
                t = recs[0].get("_timing", {})
                state.compute_s += t.get("train_s", 0.0) + t.get("null_s", 0.0)
                state.io_s += t.get("read_s", 0.0) + t.get("write_s", 0.0)
            if gauge is not None:
                try:
                    gauge.set(state.done_tasks, tags={"study": cfg.name})
                except Exception:  # noqa: BLE001
                    pass
            if on_progress is not None:
                on_progress(state)
            if max_batches is not None and state.done_batches >= max_batches and not stop:
                log(f"stopping after {state.done_batches} batch(es) as asked (rerun to resume)")
                stop = True
        if time.perf_counter() - last >= progress_every or (not queue and not inflight):
            log(state.line())
            last = time.perf_counter()
    for a in actors:
        try:
            ray.kill(a)
        except Exception:  # noqa: BLE001
            pass


def _actor_alive(actor) -> bool:
    import ray

    try:
        ray.get(actor.info.remote(), timeout=30)
        return True
    except Exception:  # noqa: BLE001
        return False


def main_exit_code(summary: dict) -> int:
    return 0 if summary.get("run", {}).get("complete", True) else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use jobs/all_pairs.py or `lmi-distributed run`")
