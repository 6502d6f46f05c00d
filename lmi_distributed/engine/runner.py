"""Ray execution of a study: worker actors (one per GPU, or CPU fallback), bounded scheduling,
progress, retries, resume, aggregation.

The actor only pins a device and sets torch threads; the work is ``worker.run_batch`` (``engine/worker.py``).
Scheduling keeps at most ``resources.max_in_flight_per_worker`` batches per actor and waits with
``ray.wait`` (one result at a time), so faster actors take more batches. The study context
(config + resolved variables) is put in the object store once.

Before Ray starts, ``run_study`` runs the pre-flight checks (``engine.preflight``) and takes the
output folder's lock (``StudyLock``). Every try of a batch, whether it raised or its actor died,
counts toward ``max_batch_attempts`` (Ray retries no task itself); a batch given up is recorded as
failed (``engine.failures``) and retried by the next run. Actors restart (``max_restarts``); one
gone for good (its node lost) hands its batches to the others. Results are keyed by task, so
nothing is duplicated.
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
from lmi_distributed.engine.worker import BatchReceipt
from lmi_distributed.errors import ConfigError, LMIError

__all__ = ["run_study", "prepare_study", "connect_ray", "choose_workers", "WorkerChoice", "RunState",
           "StudyLock", "BatchLedger", "failure_detail"]


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
    from lmi_distributed.engine.study_data import (data_identity, forget_store, open_store_cached, out_dir_abs,
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
    pmi_keys = [t.key for t in plan.tasks if save == "all" or (save == "observed" and t.kind == "observed")
                or t.kind == "split"]  # a split's scores are its result
    attribution_keys = [t.key for t in plan.tasks if t.kind == "observed"] if cfg.estimator.attribution else []
    results.repair(pmi_keys, batch_keys={b.batch_id: [t.key for t in b.tasks] for b in plan.batches},
                   attribution_keys=attribution_keys, log=log)
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


# ------------------------------------------------------------------------- lock
#: A lock whose heartbeat (file mtime, refreshed while the run schedules) is older than this is
#: stale even when it names another host (whose processes we cannot see).
LOCK_STALE_S = 3600.0
LOCK_NAME = ".lmi-run.lock"
_HEARTBEAT_EVERY_S = 30.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


class StudyLock:
    """One ``run`` per output folder: ``<output.path>/.lmi-run.lock`` holds host, pid, start time.

    ``acquire`` refuses (``LMIError``) while another live run holds it. A lock of this host whose
    pid is gone, or any lock whose heartbeat is older than ``LOCK_STALE_S``, is stale: it is taken
    over with a one-line note. ``force=True`` (``--force-unlock``) takes over any lock. The folder
    is created here when missing, and removed again on release when nothing else was written.
    """

    def __init__(self, out_dir: str | os.PathLike, log: Callable[[str], None] = _log):
        self.dir = os.fspath(out_dir)
        self.path = os.path.join(self.dir, LOCK_NAME)
        self.log = log
        self.created_dir = False
        self.held = False
        self.token = uuid.uuid4().hex
        self._beat = 0.0

    def _read(self) -> dict | None:
        import json

        try:
            with open(self.path) as fh:
                return json.load(fh)
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable or half-written: judged by its age only

    def _stale_reason(self, old: dict) -> str | None:
        """Why an existing lock may be taken over, or None while its run may be alive."""
        try:
            age = time.time() - os.path.getmtime(self.path)
        except OSError:
            return "it vanished"
        if old.get("host") == socket.gethostname() and isinstance(old.get("pid"), int) \
                and not _pid_alive(old["pid"]):
            return f"pid {old['pid']} on this host is no longer running"
        if age > LOCK_STALE_S:
            return f"no heartbeat for {age / 60:.0f} min (> {LOCK_STALE_S / 60:.0f} min)"
        return None

    def acquire(self, force: bool = False) -> "StudyLock":
        import json

        if not os.path.isdir(self.dir):
            os.makedirs(self.dir, exist_ok=True)
            self.created_dir = True
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
              "started_iso": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": self.token}
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                old = self._read()
                if old is None:
                    continue  # released meanwhile: try again
                who = (f"host {old.get('host', '?')}, pid {old.get('pid', '?')}, "
                       f"started {old.get('started_iso', '?')}")
                why = "--force-unlock was given" if force else self._stale_reason(old)
                if why is None:
                    self._cleanup_dir()
                    raise LMIError(
                        f"output.path: {self.dir} is in use by another run ({who}; lock file {self.path}). "
                        f"Wait for it to finish, or pass --force-unlock if that run is gone")
                self.log(f"note: taking over the lock of an earlier run ({who}): {why}")
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            self._beat = time.time()
            return self
        self._cleanup_dir()
        raise LMIError(f"output.path: could not take the lock {self.path} (another run keeps taking it)")

    def heartbeat(self) -> None:
        """Refresh the lock's mtime (at most every 30 s) so other hosts see this run alive."""
        now = time.time()
        if self.held and now - self._beat >= _HEARTBEAT_EVERY_S:
            try:
                os.utime(self.path)
            except OSError:
                pass
            self._beat = now

    def release(self) -> None:
        """Remove the lock if it is still ours; remove the folder if this run created it and left it empty."""
        if self.held:
            old = self._read()
            if old and old.get("token") == self.token:
                try:
                    os.unlink(self.path)
                except FileNotFoundError:
                    pass
            self.held = False
        self._cleanup_dir()

    def _cleanup_dir(self) -> None:
        if self.created_dir:
            try:
                os.rmdir(self.dir)  # only when empty: a run that wrote nothing leaves nothing
            except OSError:
                pass

    def __enter__(self) -> "StudyLock":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


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
    """Ray actor body: pins a device, sets torch threads, runs ``worker.run_batch``."""

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
            from lmi_distributed.estimators import device as gpu

            if gpu.torch_gpu_usable():
                self.device = "cuda"
                torch.cuda.set_device(0)  # the first of the GPUs Ray made visible to this actor
        self.name = f"w{index}@{socket.gethostname()}:{os.getpid()}"
        _test_slow_restart()

    def info(self) -> dict:
        import torch

        import ray

        return {"index": self.index, "name": self.name, "device": self.device, "gpu_ids": self.gpu_ids,
                "torch_threads": torch.get_num_threads(), "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}

    def run(self, batch: Batch, ctx: dict, attempt: int) -> BatchReceipt:
        from lmi_distributed.engine.worker import run_batch

        _test_hook(batch.batch_id, attempt)
        return run_batch(batch, ctx["config"], ctx["store_path"], ctx["out_dir"], device=self.device,
                         variables=ctx["variables"], worker=self.name, attempt=attempt)


def _test_hook(batch_id: str, attempt: int) -> None:
    """Fault injection for tests only (environment variables, forwarded to the worker actors):
    ``LMI_TEST_HOOK_LOG=<file>`` appends ``<batch_id> <attempt> <pid>`` per execution;
    ``LMI_TEST_FAIL_BATCH=<id>[,<id>]`` raises inside the worker every time that batch runs;
    ``LMI_TEST_CRASH_BATCH=<id>[,<id>]`` kills the worker process (as a segfault or the OOM killer);
    ``LMI_TEST_SLOW_RESTART=<seconds>``: see :func:`_test_slow_restart`."""
    log_path = os.environ.get("LMI_TEST_HOOK_LOG")
    if log_path:
        with open(log_path, "a") as fh:
            fh.write(f"{batch_id} {attempt} {os.getpid()}\n")
    if batch_id in os.environ.get("LMI_TEST_FAIL_BATCH", "").split(","):
        raise RuntimeError(f"LMI_TEST_FAIL_BATCH: injected failure in batch {batch_id}")
    if batch_id in os.environ.get("LMI_TEST_CRASH_BATCH", "").split(","):
        os._exit(77)


def _test_slow_restart() -> None:
    """Test hook: ``LMI_TEST_SLOW_RESTART=<seconds>`` makes a *restarted* worker (Ray reconstructed
    the actor after a crash) take that long to start, as an import of torch does on a loaded node."""
    slow = os.environ.get("LMI_TEST_SLOW_RESTART")
    if slow:
        import ray

        if ray.get_runtime_context().was_current_actor_reconstructed:
            time.sleep(float(slow))


def _test_env() -> dict[str, str]:
    """The driver's ``LMI_TEST_*`` variables, passed on to the actors (see ``_test_hook``)."""
    return {k: v for k, v in os.environ.items() if k.startswith("LMI_TEST_") and k != "LMI_TEST_RAY_JOBS_ADDRESS"}


# ------------------------------------------------------------------ bookkeeping
def failure_detail(exc: BaseException) -> tuple[bool, str]:
    """``(retryable, one-line summary)`` of a batch's failure.

    The summary names the original exception (a Ray task error's cause), first line only. Our own
    errors (``LMIError``: bad data or settings) are deterministic: retrying cannot help. Anything
    else (an exception in the estimator, a CUDA OOM, a worker that died) may be retried.
    """
    cause = getattr(exc, "cause", None)
    root = cause if isinstance(cause, BaseException) else exc
    text = str(root).strip().splitlines()
    first = text[0] if text else ""
    if type(root).__name__ == "RayTaskError" or first.startswith("ray::"):
        first = next((ln for ln in reversed(text) if ln.strip()), first)
    detail = f"{type(root).__name__}: {first.strip()}"[:500]
    return not isinstance(root, LMIError), detail


@dataclass
class FailedBatch:
    batch: Batch
    attempts: int
    detail: str


class BatchLedger:
    """Ray-free bookkeeping of the scheduling loop: the queue, the batches in flight on each
    worker, workers lost for good, and attempts. Every try of a batch, whether it raised or its
    worker died, counts toward ``max_attempts`` (Ray itself retries nothing), so a batch runs at
    most ``max_attempts`` times in all; then it is given up (``failed``)."""

    def __init__(self, batches: list[Batch], workers: list[int], max_in_flight: int, max_attempts: int):
        self.queue: deque[tuple[Batch, int]] = deque((b, 0) for b in batches)
        self.inflight: dict[Any, tuple[Batch, int, int]] = {}
        self.count: dict[int, int] = {w: 0 for w in workers}  # live workers only
        self.dead: set[int] = set()
        self.failed: list[FailedBatch] = []
        self.max_in_flight = max_in_flight
        self.max_attempts = max_attempts

    def dispatch(self, submit: Callable[[int, Batch, int], Any], stop: bool = False) -> None:
        """Fill every live worker up to ``max_in_flight`` from the queue (``submit`` returns a ref)."""
        if stop:
            return
        for w in list(self.count):
            while self.queue and self.count[w] < self.max_in_flight:
                b, att = self.queue.popleft()
                self.inflight[submit(w, b, att)] = (b, w, att)
                self.count[w] += 1

    def finished(self, ref: Any) -> tuple[Batch, int, int]:
        """A ref came back (result or error): ``(batch, worker, attempt)``; frees its slot."""
        b, w, att = self.inflight.pop(ref)
        if w in self.count:
            self.count[w] -= 1
        return b, w, att

    def worker_lost(self, w: int) -> None:
        """Worker ``w`` is gone for good: give it no more batches (its in-flight ones fail on their own)."""
        self.count.pop(w, None)
        self.dead.add(w)

    def failure(self, b: Batch, att: int, detail: str, retryable: bool) -> bool:
        """Requeue a failed try (True), or give the batch up after ``max_attempts`` tries or a
        deterministic error (False; recorded in ``failed``)."""
        if retryable and att + 1 < self.max_attempts:
            self.queue.appendleft((b, att + 1))
            return True
        self.failed.append(FailedBatch(b, att + 1, detail))
        return False

    def in_flight_by_worker(self) -> dict[int, int]:
        return dict(self.count)

    @property
    def busy(self) -> bool:
        return bool(self.queue or self.inflight)


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
    failed_tasks: int = 0
    in_flight: dict = field(default_factory=dict)  # worker index -> batches in flight (live workers)

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
    force_unlock: bool = False,
    log: Callable[[str], None] = _log,
) -> dict:
    """Run (or resume) a study on Ray and aggregate it. Returns the summary dict.

    First the pre-flight checks (``engine.preflight``: one ``ConfigError`` listing every problem,
    before Ray starts and before the output folder exists), then the output folder's lock
    (``StudyLock``; ``force_unlock`` takes over a lock of a run that is gone).
    ``address``: Ray address (None: RAY_ADDRESS if set, else an embedded local Ray with
    ``num_cpus``). ``max_batches``: stop after that many batches (a partial run; rerun resumes).
    ``on_progress(state)``: called after each finished batch. ``shutdown``: shut Ray down at the
    end (default: only if this call started it).
    """
    from lmi_distributed.engine.study_data import out_dir_abs
    from lmi_distributed.engine.preflight import preflight

    t0 = time.perf_counter()
    preflight(cfg, log=log)
    log(f"pre-flight checks passed in {time.perf_counter() - t0:.2f} s")
    with StudyLock(out_dir_abs(cfg), log=log).acquire(force=force_unlock) as lock:
        return _run_study_locked(cfg, address=address, num_cpus=num_cpus, overwrite=overwrite,
                                 progress_every=progress_every, max_batches=max_batches, on_progress=on_progress,
                                 shutdown=shutdown, log=log, heartbeat=lock.heartbeat)


def _run_study_locked(
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
    heartbeat: Callable[[], None] | None = None,
) -> dict:
    """The body of ``run_study`` once the pre-flight passed and the lock is held."""
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
                      progress_every, max_batches, on_progress, log, heartbeat=heartbeat)
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

        from lmi_distributed.engine.failures import read_failed

        summary = write_outputs(cfg, out_dir, tasks, run_info=run_info, report=cfg.output.report,
                                keys=plan_keys, study_fingerprint=results.fingerprint,
                                failed=read_failed(out_dir, set(tasks["key"]) if len(tasks) else set()))
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
              max_batches: int | None, on_progress, log, heartbeat: Callable[[], None] | None = None) -> None:
    """Start the worker actors and keep them busy until every pending batch finished or failed.

    A batch that raises, or whose worker dies, is tried again (on any live worker) until it has
    run ``resources.max_batch_attempts`` times in all; Ray retries nothing itself
    (``max_task_retries=0``), so the two never multiply. A batch given up is recorded as failed
    (``engine.failures``) and the rest of the study goes on. Raises only when no worker is left.
    """
    import ray

    r = cfg.resources
    t_actors = time.perf_counter()
    choice = choose_workers(cfg, ray.cluster_resources(), len(pending))
    log(choice.message)
    if cfg.estimator.ksg_backend == "cupy" and not choice.use_gpu:
        raise ConfigError("estimator.ksg_backend: 'cupy' needs GPU workers, but the run falls back to CPU "
                          "workers (no GPU in the Ray cluster); use 'auto'")
    if "max_task_retries" in r.model_fields_set:
        log("note: resources.max_task_retries is not passed to Ray; every try of a batch counts toward "
            "resources.max_batch_attempts")
    run_info.update({"workers": choice.n_workers, "device": "cuda" if choice.use_gpu else "cpu",
                     "torch_threads": choice.torch_threads})
    env = {k: str(choice.torch_threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")}
    env.update(_test_env())
    actors, alive = _start_actors(cfg, choice, env, state, log)
    run_info["actors_start_s"] = round(time.perf_counter() - t_actors, 3)
    devs = sorted({w["device"] for w in state.workers})
    log(f"{len(alive)} worker(s) ready on {', '.join(devs)}")

    ctx_ref = ray.put({"config": cfg, "store_path": store_path, "out_dir": out_dir, "variables": variables})
    ledger = BatchLedger(pending, alive, r.max_in_flight_per_worker, r.max_batch_attempts)

    def submit(w: int, b: Batch, att: int):
        return actors[w].run.options(name=f"lmi batch {b.batch_id}", retry_exceptions=False).remote(b, ctx_ref, att)

    gauge = _tasks_gauge()
    last = time.perf_counter()
    stop = False
    try:
        while ledger.busy:
            ledger.dispatch(submit, stop)
            state.in_flight = ledger.in_flight_by_worker()
            if not ledger.inflight:
                break
            done, _ = ray.wait(list(ledger.inflight), num_returns=1, timeout=progress_every)
            for ref in done:
                b, w, att = ledger.finished(ref)
                try:
                    receipt = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - every failure is judged below
                    _on_failure(ledger, actors, state, out_dir, b, w, att, exc, log, r.worker_restart_s)
                    continue
                _on_success(cfg, state, out_dir, b, receipt, gauge)
                state.in_flight = ledger.in_flight_by_worker()
                if on_progress is not None:
                    on_progress(state)
                if max_batches is not None and state.done_batches >= max_batches and not stop:
                    log(f"stopping after {state.done_batches} batch(es) as asked (rerun to resume)")
                    stop = True
                    ledger.queue.clear()
            if heartbeat is not None:
                heartbeat()
            if time.perf_counter() - last >= progress_every or not ledger.busy:
                log(state.line())
                last = time.perf_counter()
    finally:
        _record_failures(ledger, run_info)
        for a in actors:
            try:
                ray.kill(a)
            except Exception:  # noqa: BLE001 - an actor already gone needs no killing
                pass


def _start_actors(cfg: StudyConfig, choice: WorkerChoice, env: dict, state: RunState, log) -> tuple[list, list[int]]:
    """Create the worker actors and wait (180 s at most) until they answer; returns (actors, alive)."""
    import ray

    Actor = ray.remote(_LMIWorker)
    tag = uuid.uuid4().hex[:6]
    actors = [Actor.options(num_cpus=choice.num_cpus, num_gpus=choice.num_gpus, max_restarts=cfg.resources.max_restarts,
                            max_task_retries=0, name=f"lmi-{cfg.name}-{i}-{tag}",
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
    return actors, alive


def _tasks_gauge():
    try:
        from ray.util.metrics import Gauge

        return Gauge("lmi_tasks_done", description="LMI study tasks finished", tag_keys=("study",))
    except Exception:  # noqa: BLE001
        return None


def _on_success(cfg: StudyConfig, state: RunState, out_dir: str, b: Batch, receipt: BatchReceipt, gauge) -> None:
    from lmi_distributed.engine.failures import clear_failed

    state.done_tasks += receipt.n_tasks
    state.done_batches += 1
    clear_failed(out_dir, [b.batch_id])  # it failed in an earlier run; it is done now
    t = receipt.timing
    state.compute_s += t.get("train_s", 0.0) + t.get("null_s", 0.0)
    state.io_s += t.get("read_s", 0.0) + t.get("write_s", 0.0)
    if gauge is not None:
        try:
            gauge.set(state.done_tasks, tags={"study": cfg.name})
        except Exception:  # noqa: BLE001 - the dashboard gauge is optional; progress is logged anyway
            pass


def _on_failure(ledger: BatchLedger, actors: list, state: RunState, out_dir: str, b: Batch, w: int, att: int,
                exc: BaseException, log, restart_s: float) -> None:
    """A try of batch ``b`` on worker ``w`` failed: retry it elsewhere, or record it as failed.
    ``restart_s``: how long a worker that lost the batch may take to answer again
    (``resources.worker_restart_s``) before it counts as gone for good."""
    from ray.exceptions import RayActorError

    from lmi_distributed.engine.failures import write_failed

    retryable, detail = failure_detail(exc)
    if isinstance(exc, RayActorError) and w not in ledger.dead and not _actor_alive(actors[w], restart_s):
        ledger.worker_lost(w)
        log(f"worker {w} is gone for good (no answer within {restart_s:g} s; resources.worker_restart_s); "
            f"{len(ledger.count)} left")
    if ledger.failure(b, att, detail, retryable):
        state.retried_batches += 1
        log(f"batch {b.batch_id} failed on worker {w} ({detail}); retrying "
            f"(attempt {att + 2}/{ledger.max_attempts})")
    else:
        state.failed_tasks += b.size
        write_failed(out_dir, b, att + 1, detail)
        log(f"batch {b.batch_id} failed {att + 1} time(s) ({detail}); its {b.size} task(s) are recorded as "
            f"failed and will be retried on the next run")
    if not ledger.count and ledger.busy:
        raise LMIError("every worker actor died; see the Ray logs (finished batches are kept: rerun to resume)")


def _record_failures(ledger: BatchLedger, run_info: dict) -> None:
    run_info["tasks_failed"] = sum(f.batch.size for f in ledger.failed)
    run_info["failed_batches"] = [{"batch_id": f.batch.batch_id, "tasks": [t.key for t in f.batch.tasks],
                                   "attempts": f.attempts, "detail": f.detail} for f in ledger.failed[:50]]


def _actor_alive(actor, wait_s: float) -> bool:
    """Whether a worker that lost a batch still serves (after a restart, if Ray restarts it):
    pings it for up to ``wait_s`` seconds; a restarting actor answers "unavailable" meanwhile (a
    restart starts a new process that imports torch: 30 s was too short on a loaded 2-core node,
    where both workers of a test run were declared gone while restarting), one that is dead for
    good (no restarts left, killed) answers "died" at once, one whose node is lost answers "died"
    once Ray notices, or never."""
    import ray
    from ray.exceptions import ActorDiedError, GetTimeoutError

    deadline = time.monotonic() + wait_s
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        try:
            ray.get(actor.info.remote(), timeout=left)
            return True
        except (ActorDiedError, GetTimeoutError):
            return False
        except Exception:  # noqa: BLE001 - unavailable while restarting: ask again
            time.sleep(min(1.0, max(left, 0)))


def main_exit_code(summary: dict) -> int:
    return 0 if summary.get("run", {}).get("complete", True) else 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use jobs/all_pairs.py or `lmi-distributed run`")
