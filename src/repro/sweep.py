"""Sweeps: compute the missing runs of a list of configs, locally or on Slurm, resuming after a crash.

Runs are deduplicated by run id and looked up in the run store first, so re-running a sweep only computes
what is missing (a killed sweep resumes where it stopped; a half-written run is redone). Kinds map to
their compute function in KINDS; add a kind with one line (and a version in repro.runs.CODE_VERSIONS).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from repro import runs

# kind -> compute(config, workdir) -> metrics, as a function or a "module:function" string (imported on use,
# so that a sweep process imports torch only when a kind needs it).
KINDS: dict[str, Callable[[dict, Path], dict] | str] = {"erm": "repro.erm:train"}

# Rough seconds per run when no finished run of the kind is in the store (cpu profile, one thread).
ROUGH_SECONDS = {"erm": 8.0}
EXECUTORS = ("local", "slurm")
SLURM_KEYS = ("partition", "gpus_per_node", "timeout_min", "array_parallelism", "folder", "cluster",
              "cpus_per_task", "mem_gb")


def _compute(kind: str, compute: Callable | None) -> Callable:
    if compute is not None:
        return compute
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; registered kinds: {', '.join(KINDS)} (add one to repro.sweep.KINDS)")
    fn = KINDS[kind]
    if isinstance(fn, str):
        import importlib
        module, _, name = fn.partition(":")
        fn = getattr(importlib.import_module(module), name)
    return fn


def unique(kind: str, configs: list[dict]) -> dict[str, dict]:
    """{run_id: config} in first-seen order, duplicates dropped."""
    out = {}
    for config in configs:
        out.setdefault(runs.run_id(kind, config), config)
    return out


def plan(kind: str, configs: list[dict], store=None) -> pd.DataFrame:
    """One row per distinct run: run_id, cached (bool), est_seconds (0 if cached).

    The estimate is the median wall time of finished runs of the same kind (and dataset, if any), else
    ROUGH_SECONDS[kind].
    """
    done = runs.load(kind, store)
    rows = []
    for rid, config in unique(kind, configs).items():
        cached = runs.is_done(runs.run_dir(kind, rid, store))
        past = done
        if "dataset" in config and "dataset" in done.columns:
            past = done[done["dataset"] == config["dataset"]]
        est = float(past["wall_s"].median()) if len(past) and past["wall_s"].notna().any() else \
            ROUGH_SECONDS.get(kind, 10.0)
        rows.append({"run_id": rid, "cached": cached, "est_seconds": 0.0 if cached else est})
    return pd.DataFrame(rows, columns=["run_id", "cached", "est_seconds"])


def _init_worker(gpus=None) -> None:
    """Pin a pool worker: one GPU of the queue `gpus` (CUDA_VISIBLE_DEVICES, before torch starts CUDA), and the
    run's thread count (repro.device.run_threads_count) through the environment, so that torch is imported
    only if a kind needs it."""
    from repro import device as devices

    if gpus is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpus.get()
    threads = str(devices.run_threads_count())
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = threads
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(threads))


def _one(kind: str, config: dict, compute: Callable, root: str) -> str:
    return str(runs.get(kind, config, compute, runs.Store(root)))


def run(kind: str, configs: list[dict], executor: str = "local", workers: int = 1, dry_run: bool = False,
        slurm: dict | None = None, store=None, compute: Callable | None = None) -> list[Path]:
    """Run directories of `configs` (in order, duplicates included), computing only the missing runs.

    executor="local": in this process (workers=1) or a spawn process pool of `workers` processes (with G CUDA
    GPUs: at most G, each pinned to one GPU), each run with repro.device.run_threads_count() threads.
    executor="slurm": submitit job array; slurm = dict of partition, gpus_per_node,
    timeout_min, array_parallelism, folder (and cluster="local" to test without Slurm).
    dry_run prints the plan and returns [] without computing. compute overrides KINDS[kind].
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    fn = _compute(kind, compute)
    store = runs.Store(store) if not isinstance(store, runs.Store) else store
    table = plan(kind, configs, store)
    if dry_run:
        missing = table[~table["cached"]]
        print(f"{kind}: {len(table)} runs, {int(table['cached'].sum())} cached, {len(missing)} missing, "
              f"estimated {missing['est_seconds'].sum() / 60:.1f} min of compute (one worker)")
        return []
    todo = {rid: c for rid, c in unique(kind, configs).items() if not table.set_index("run_id").at[rid, "cached"]}
    root = str(store.root)
    if todo and executor == "slurm":
        _slurm(kind, list(todo.values()), fn, root, slurm or {})
    elif todo and workers > 1:
        _pool(kind, list(todo.values()), fn, root, workers)
    else:
        for config in todo.values():
            runs.get(kind, config, fn, store)
    return [runs.run_dir(kind, c, store) for c in configs]


def _pool(kind: str, configs: list[dict], fn: Callable, root: str, workers: int) -> None:
    """Compute configs in a spawn process pool of `workers` processes; on a machine with G CUDA GPUs, at most G
    workers, each pinned to its own GPU (one run per GPU at a time)."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from repro import device as devices

    ctx, gpus = mp.get_context("spawn"), devices.gpu_ids()
    queue = None
    if gpus:
        workers = min(workers, len(gpus))
        queue = ctx.Queue()
        for gpu in gpus[:workers]:
            queue.put(gpu)
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(queue,)) as pool:
        for f in [pool.submit(_one, kind, c, fn, root) for c in configs]:
            f.result()


def _slurm(kind: str, configs: list[dict], fn: Callable, root: str, options: dict) -> None:
    """Submit one submitit job per config as a job array and wait for all of them."""
    import submitit
    unknown = sorted(set(options) - set(SLURM_KEYS))
    if unknown:
        raise ValueError(f"unknown slurm option(s) {unknown}; valid: {', '.join(SLURM_KEYS)}")
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
    n = len(configs)
    jobs = ex.map_array(_one, [kind] * n, configs, [fn] * n, [root] * n)
    for job in jobs:
        job.result()
