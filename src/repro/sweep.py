"""Sweeps: compute the missing runs of any registered kind (repro.runs.KINDS), locally or on Slurm, resuming.

Runs are deduplicated by run id and looked up in the run store first, so re-running a sweep only computes
what is missing (a killed sweep resumes where it stopped; a half-written run is redone). The unit of work is
one run, or for a kind with a `batch` function the missing runs that share its `group_by` values (e.g. the
heads read from one ERM run's features, trained in one vectorized call); every run is still claimed and
written on its own through runs.get.

Units start longest first (the cost model of repro.cost), so that the last unit to finish is a short one.
A process pool is kept alive across sweeps of this process (`pool`), so its workers import torch and decode
each dataset once (repro.inputs caches decoded data per process) however many sweeps follow; it is replaced
when the environment the workers read (REPRO_*, CUDA_VISIBLE_DEVICES) changes, and shut down at exit.
`Progress` prints runs done / total, elapsed time and an ETA calibrated by the runs already finished.
"""
from __future__ import annotations

import atexit
import os
import sys
import time
from pathlib import Path
from typing import Callable

import pandas as pd

from repro import files, interrupts, runs

EXECUTORS = ("local", "slurm")
# The submitit options a section's `slurm:` mapping may set: key -> (test of the value, words for the error).
SLURM_OPTIONS = {
    "partition": (lambda v: isinstance(v, str) and v != "", "a partition name"),
    "gpus_per_node": (lambda v: _count(v, 0), "an integer >= 0"),
    "timeout_min": (lambda v: _count(v, 1), "an integer >= 1 (minutes)"),
    "array_parallelism": (lambda v: _count(v, 1), "an integer >= 1"),
    "folder": (lambda v: isinstance(v, str) and v != "", "a folder name"),
    "cluster": (lambda v: v in ("slurm", "local", "debug"), "slurm, local or debug (submitit's executors)"),
    "cpus_per_task": (lambda v: _count(v, 1), "an integer >= 1"),
    "mem_gb": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= files.MAX_INT,
               "a number > 0 (GB)"),
}
SLURM_KEYS = tuple(SLURM_OPTIONS)


def _count(v, low: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and low <= v <= files.MAX_INT


def slurm_problem(options) -> str | None:
    """What is wrong with a `slurm:` mapping of submitit options (SLURM_OPTIONS), or None."""
    if not isinstance(options, dict):
        return "a mapping of submitit options"
    for key, value in options.items():
        if key not in SLURM_OPTIONS:
            return f"a mapping of submitit options; unknown slurm option {files.quote(key)} (valid: {', '.join(SLURM_KEYS)})"
        test, words = SLURM_OPTIONS[key]
        if not test(value):
            return f"a mapping whose {key!r} is {words}"
    return None


def unique(kind: str, configs: list[dict]) -> dict[str, dict]:
    """{run_id: config} in first-seen order, duplicates dropped."""
    out = {}
    for config in configs:
        out.setdefault(runs.run_id(kind, config), config)
    return out


def plan(kind: str, configs: list[dict], store=None, estimate: bool = True) -> pd.DataFrame:
    """One row per distinct run: run_id, cached (bool), est_seconds (0 if cached).

    The estimate is the median wall time of finished runs of the same kind (and dataset, if any), else
    the kind's rough_seconds (repro.runs.KINDS). estimate=False skips it (est_seconds NaN) and reads no
    finished run.
    """
    if not estimate:
        rows = [{"run_id": rid, "cached": runs.is_done(runs.run_dir(kind, rid, store)), "est_seconds": float("nan")}
                for rid in unique(kind, configs)]
        return pd.DataFrame(rows, columns=["run_id", "cached", "est_seconds"])
    done = runs.load(kind, store)
    rows = []
    for rid, config in unique(kind, configs).items():
        cached = runs.is_done(runs.run_dir(kind, rid, store))
        past = done
        if "dataset" in config and "dataset" in done.columns:
            past = done[done["dataset"] == config["dataset"]]
        est = float(past["wall_s"].median()) if len(past) and past["wall_s"].notna().any() else \
            runs.KINDS[kind].rough_seconds
        rows.append({"run_id": rid, "cached": cached, "est_seconds": 0.0 if cached else est})
    return pd.DataFrame(rows, columns=["run_id", "cached", "est_seconds"])


def _init_worker(gpus=None, packed: int = 0) -> None:
    """Pin a pool worker: one GPU of the queue `gpus` (CUDA_VISIBLE_DEVICES, before torch starts CUDA), and the
    run's thread count (repro.device.run_threads_count) through the environment, so that torch is imported
    only if a kind needs it. A worker that shares its GPU (`packed` workers in the pool) uses deterministic
    kernels (see `pool`) and its share of the DataLoader workers. The worker leaves Ctrl-C to the pool's owner
    (repro.interrupts.worker)."""
    from repro import device as devices

    interrupts.worker()
    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    if packed:
        os.environ[devices.DETERMINISTIC_ENV] = "1"
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # before cuBLAS starts
        os.environ.setdefault(devices.LOADER_WORKERS_ENV, str(max(1, min(8, ((os.cpu_count() or 1) - 1) // packed))))
    threads = str(devices.run_threads_count())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _units(kind: str, configs: list[dict], compute: Callable | None) -> list[list[dict]]:
    """The missing configs in units of work: one config each, or for a kind with a batch function (and no
    compute override) the configs that share its group_by values."""
    entry = runs.KINDS[kind]
    if compute is not None or entry.batch is None:
        return [[c] for c in configs]
    groups: dict[str, list[dict]] = {}
    for c in configs:
        groups.setdefault(runs.canonical_json([c.get(k) for k in entry.group_by]), []).append(c)
    return list(groups.values())


def _unit(kind: str, configs: list[dict], compute: Callable | None, root: str) -> list[str]:
    """Compute one unit of work; each run is claimed and written on its own by runs.get."""
    store, entry = runs.Store(root), runs.KINDS[kind]
    if compute is None and entry.batch is not None:
        computes = runs.import_function(entry.batch)(configs, store)
    else:
        computes = [compute or runs.import_function(entry.compute)] * len(configs)
    return [str(runs.get(kind, c, fn, store)) for c, fn in zip(configs, computes)]


def run(kind: str, configs: list[dict], executor: str = "local", workers: int = 1, dry_run: bool = False,
        slurm: dict | None = None, store=None, compute: Callable | None = None,
        progress: "Progress | None" = None, runs_per_gpu: int | str | None = None) -> list[Path]:
    """Run directories of `configs` (in order, duplicates included), computing only the missing runs.

    executor="local": in this process (workers=1) or a spawn process pool of `workers` processes, each run with
    repro.device.run_threads_count() threads; with G CUDA GPUs, min(workers, G) GPUs with `runs_per_gpu` workers
    pinned to each (`pool`; default $REPRO_RUNS_PER_GPU, else 1; "auto": `packing`).
    executor="slurm": submitit job array; slurm = dict of partition, gpus_per_node,
    timeout_min, array_parallelism, folder (and cluster="local" to test without Slurm).
    dry_run prints the plan and returns [] without computing. compute overrides the kind's registered compute
    (and its batching).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    runs.registered(kind)  # an unknown kind fails here, naming the registered ones
    store = runs.Store(store) if not isinstance(store, runs.Store) else store
    table = plan(kind, configs, store, estimate=dry_run)
    missing = table[~table["cached"]]
    if dry_run:
        print(f"{kind}: {len(table)} runs, {int(table['cached'].sum())} cached, {len(missing)} missing, "
              f"estimated {missing['est_seconds'].sum() / 60:.1f} min of compute (one worker)")
        return []
    print(f"{kind}: {len(table)} runs, {int(table['cached'].sum())} cached, {len(missing)} to compute", flush=True)
    cached = set(table.loc[table["cached"], "run_id"])
    todo = {rid: c for rid, c in unique(kind, configs).items() if rid not in cached}
    units, root = longest_first(kind, _units(kind, list(todo.values()), compute)), str(store.root)
    if progress is not None:
        progress.expect(kind, [c for unit in units for c in unit])
    if units and executor == "slurm":
        _slurm(kind, units, compute, root, slurm or {})
    elif len(units) > 1 and pool_size(workers, per_gpu := packing(kind, todo.values(), runs_per_gpu)) > 1:
        _pool(kind, units, compute, root, workers, progress, per_gpu)
    else:
        for unit in units:
            _unit(kind, unit, compute, root)
            if progress is not None:
                progress.finished(kind, unit)
    return [runs.run_dir(kind, c, store) for c in configs]


def longest_first(kind: str, units: list[list[dict]]) -> list[list[dict]]:
    """Units by estimated cost (repro.cost.cost, summed over a unit's runs), largest first; ties keep their order.
    Only the order in which runs start changes: each run computes the same bits wherever and whenever it runs."""
    from repro import cost as cost_model

    return sorted(units, key=lambda unit: -sum(cost_model.cost(kind, c) for c in unit))


_TRACKER_QUIET = "ignore:resource_tracker:UserWarning"
_POOL: dict = {}  # "key": what the workers were started with, "pool": the ProcessPoolExecutor, "workers": its size


def _pool_key(workers: int, gpus: list[str], per_gpu: int = 1) -> tuple:
    """What a live pool's workers depend on: their count, their GPUs and runs per GPU, the environment they read,
    their working directory."""
    env = tuple(sorted((k, v) for k, v in os.environ.items()
                       if k.startswith("REPRO_") or k in ("CUDA_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS")))
    return workers, tuple(gpus), per_gpu, env, tuple(sys.path), os.getcwd()  # (configs may name relative data roots)


def packing(kind: str, configs, runs_per_gpu: int | str | None = None) -> int:
    """Runs per GPU of a sweep: `runs_per_gpu`, else $REPRO_RUNS_PER_GPU, else 1 (repro.device.runs_per_gpu).
    "auto" packs ERM runs by the peak memory `repro bench` measured for their workloads (repro.cost.runs_per_gpu),
    and is 1 where none was measured and for the other kinds."""
    from repro import device as devices

    k = devices.runs_per_gpu(runs_per_gpu)
    if k != "auto":
        return k
    if kind != "erm" or not devices.gpu_ids():
        return 1
    from repro import cost as cost_model

    return cost_model.runs_per_gpu(list(configs))


def pool_size(workers: int, per_gpu: int = 1) -> int:
    """Worker processes of a pool: `workers`, or with G CUDA GPUs min(workers, G) * per_gpu."""
    from repro import device as devices

    gpus = devices.gpu_ids()
    return min(workers, len(gpus)) * per_gpu if gpus else workers


def pool(workers: int, per_gpu: int = 1):
    """(a spawn ProcessPoolExecutor, its worker count), alive across sweeps of this process: reused while the
    count, the GPUs and the workers' environment stay the same, else replaced. On a machine with G CUDA GPUs,
    min(workers, G) GPUs with `per_gpu` workers pinned to each.

    Workers that share a GPU run with deterministic kernels (REPRO_DETERMINISTIC=1): cudnn.benchmark would time
    the candidate kernels of each convolution while the other runs load the GPU, and could pick another kernel
    (other bits) than a run alone would. A packed run then gives the bytes of a solo run with
    REPRO_DETERMINISTIC=1, unless memory is so short that cuDNN falls back from a kernel for lack of workspace."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from repro import device as devices

    gpus = devices.gpu_ids()
    used = gpus[:min(workers, len(gpus))]
    size = len(used) * per_gpu if gpus else workers
    key = _pool_key(size, gpus, per_gpu if gpus else 1)
    if _POOL.get("key") != key:
        shutdown()
        # An interrupted pool leaves its queues' semaphores to multiprocessing's resource tracker, which removes
        # them and then warns about them on stderr after the command's one line: its process (started with the
        # first pool) takes its warning filters from sys.warnoptions.
        if _TRACKER_QUIET not in sys.warnoptions:
            sys.warnoptions.append(_TRACKER_QUIET)
        ctx, queue = mp.get_context("spawn"), None
        if gpus:
            queue = ctx.Queue()
            for gpu in gpu_slots(used, size):  # k slots per GPU, one taken by each worker as it starts
                queue.put(gpu)
        packed = size if gpus and per_gpu > 1 else 0
        _POOL.update(key=key, workers=size, pool=ProcessPoolExecutor(size, mp_context=ctx, initializer=_init_worker,
                                                                      initargs=(queue, packed)))
    return _POOL["pool"], _POOL["workers"]


def gpu_slots(gpus: list[str], workers: int) -> list[str]:
    """The GPU of each of `workers` pool workers: round robin over `gpus`, so that each GPU gets as many."""
    return [gpus[i % len(gpus)] for i in range(workers)]


def shutdown(now: bool = False) -> None:
    """Stop the pool's workers (if any); the next pooled sweep starts a new pool. The runs being computed finish
    first, unless now=True (an interrupt): then they stop at once, each removing its temporary folder
    (repro.interrupts.stop)."""
    executor = _POOL.pop("pool", None)
    _POOL.clear()
    if executor is None:
        return
    if now:
        workers = list((getattr(executor, "_processes", None) or {}).values())
        executor.shutdown(wait=False, cancel_futures=True)
        interrupts.stop(workers)
    executor.shutdown(wait=True, cancel_futures=True)


atexit.register(shutdown)


def _prepares(kind: str, units: list[list[dict]], compute: Callable | None) -> list[tuple[Callable, dict]]:
    """(make, config) of the kind's shared inputs (runs.Kind.prepare), when more than one is read: computed by
    different workers at once instead of by whichever run reaches each first (the others wait on its lock)."""
    entry = runs.KINDS[kind]
    if entry.prepare is None or compute is not None:
        return []
    select, make = (runs.import_function(name) for name in entry.prepare)
    configs = select([c for unit in units for c in unit])
    return [(make, c) for c in configs] if len(configs) > 1 else []


def _pool(kind: str, units: list[list[dict]], compute: Callable | None, root: str, workers: int,
          progress: "Progress | None" = None, per_gpu: int = 1) -> None:
    """Compute units in the process pool (`pool`), in the order given; a failure stops the pool."""
    from concurrent.futures import FIRST_EXCEPTION, wait

    executor, _ = pool(workers, per_gpu)
    try:
        prepares = _prepares(kind, units, compute)
        warm = {executor.submit(interrupts.call, make, c) for make, c in prepares}  # queued first: started first
        futures = {executor.submit(interrupts.call, _unit, kind, unit, compute, root): unit for unit in units}
        if progress is not None and warm:
            progress.preparing(0, len(warm))
        pending = set(futures) | warm
        while pending:
            done, pending = wait(pending, timeout=5.0, return_when=FIRST_EXCEPTION)
            for f in done:
                f.result()
                if progress is not None and f in warm:
                    progress.preparing(len(warm - pending), len(warm))
                elif progress is not None:
                    progress.finished(kind, futures[f])
            if progress is not None:
                progress.show()
    except BaseException as err:
        shutdown(now=isinstance(err, KeyboardInterrupt))  # a broken or interrupted pool is not reused
        raise


class Progress:
    """Runs done / total, elapsed time and an ETA on one console line (rewritten in place on a terminal, else
    a new line every `every` seconds).

    The ETA is the cost model's estimate of the runs left (repro.cost.cost) divided by the rate at which
    estimated cost has been finished (cost finished since the first finish / time since then; after the first
    finish only: its cost / elapsed), so it is calibrated by the machine, the load and the number of workers
    once runs finish; before that it is the raw estimate divided by `workers`."""

    def __init__(self, workers: int = 1, stream=None, every: float = 5.0, clock=time.monotonic):
        self.stream = stream if stream is not None else sys.stderr
        self.workers, self.every, self.clock = max(1, workers), every, clock
        self.start, self.last_shown = clock(), None
        self.costs: dict[tuple, float] = {}  # (kind, run_id) -> estimated seconds
        self.done: set[tuple] = set()
        self.first: tuple[float, float] | None = None  # (time, finished cost) at the first finish
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.note, self.runs_start = None, self.start  # shared inputs being prepared; when the runs began

    def preparing(self, done: int, total: int) -> None:
        """`done` of the `total` shared inputs of the runs (runs.Kind.prepare) are ready; the ETA's clock starts
        when all are (the time spent preparing them is not charged to the runs)."""
        self.note = f"shared inputs {done}/{total}" if done < total else None
        if done >= total:
            self.runs_start = self.clock()
        self.show(force=True)

    def expect(self, kind: str, configs: list[dict]) -> None:
        from repro import cost as cost_model

        for c in configs:
            self.costs.setdefault((kind, runs.run_id(kind, c)), cost_model.cost(kind, c))

    def finished(self, kind: str, configs: list[dict]) -> None:
        self.done |= {(kind, runs.run_id(kind, c)) for c in configs}
        if self.first is None:
            self.first = (self.clock(), sum(v for k, v in self.costs.items() if k in self.done))
        self.show()

    def eta(self) -> float | None:
        """Seconds left (see the class docstring); None when nothing is left to estimate."""
        left = sum(v for k, v in self.costs.items() if k not in self.done)
        finished = sum(v for k, v in self.costs.items() if k in self.done)
        now = self.clock()
        if self.first is not None and finished > self.first[1] and now > self.first[0]:
            # from the first finish on: the workers' start (imports, data) is not charged to the runs left
            return left * (now - self.first[0]) / (finished - self.first[1])
        if finished > 0 and now > self.runs_start:
            return left * (now - self.runs_start) / finished
        return left / self.workers if left else None

    def line(self) -> str:
        elapsed, eta = self.clock() - self.start, self.eta()
        calibrated = any(k in self.done for k in self.costs)
        left = "done" if len(self.done) >= len(self.costs) else \
            f"ETA {_clock(eta)}" + ("" if calibrated else " (uncalibrated)") if eta is not None else "ETA ?"
        note = f" (preparing {self.note})" if self.note else ""
        return f"runs {len(self.done)}/{len(self.costs)}{note}, {_clock(elapsed)} elapsed, {left}"

    def show(self, force: bool = False) -> None:
        now = self.clock()
        if self.tty:
            self.stream.write("\r" + self.line().ljust(60))
        elif force or self.last_shown is None or now - self.last_shown >= self.every:
            self.stream.write(self.line() + "\n")
        else:
            return
        self.last_shown = now
        self.stream.flush()

    def close(self) -> None:
        """The final line (and a newline after the rewritten one on a terminal)."""
        self.stream.write(("\r" + self.line().ljust(60) if self.tty else self.line()) + "\n")
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else \
        f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _slurm(kind: str, units: list[list[dict]], compute: Callable | None, root: str, options: dict) -> None:
    """Submit one submitit job per unit of work as a job array and wait for all of them (repro.cluster.wait: a
    failed job is reported with its log's last lines once all ended)."""
    import submitit
    problem = slurm_problem(options)
    if problem:
        raise ValueError(f"the slurm options must be {problem}, got {files.quote(options)}")

    from repro import cluster
    folder = options.get("folder", os.path.join(root, ".submitit", "%j"))
    ex = submitit.AutoExecutor(folder=folder, cluster=options.get("cluster"))
    params = {"timeout_min": options.get("timeout_min", 60)}
    if "gpus_per_node" in options:
        params["gpus_per_node"] = options["gpus_per_node"]
    if "cpus_per_task" in options:
        params["cpus_per_task"] = options["cpus_per_task"]
    if "mem_gb" in options:
        params["mem_gb"] = options["mem_gb"]
    if "partition" in options:
        params["slurm_partition"] = options["partition"]
    if "array_parallelism" in options:
        params["slurm_array_parallelism"] = options["array_parallelism"]
    ex.update_parameters(**params)
    n = len(units)
    jobs = ex.map_array(_unit, [kind] * n, units, [compute] * n, [root] * n)
    labels = [f"{kind} run {runs.run_id(kind, unit[0])}" + (f" and {len(unit) - 1} more" if len(unit) > 1 else "")
              for unit in units]
    cluster.wait(jobs, labels)
