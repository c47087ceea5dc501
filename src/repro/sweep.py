"""Sweeps: compute the missing runs of any registered kind (repro.runs.KINDS), locally or on Slurm, resuming.

Runs are deduplicated by run id and looked up in the run store first, so re-running a sweep only computes
what is missing (a killed sweep resumes where it stopped; a half-written run is redone). The unit of work is
one run, or for a kind with a `batch` function the missing runs that share its `group_by` values (e.g. the
heads read from one ERM run's features, trained in one vectorized call); every run is still claimed and
written on its own through runs.get.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Callable

import pandas as pd

from repro import runs

EXECUTORS = ("local", "slurm")
SLURM_KEYS = ("partition", "gpus_per_node", "timeout_min", "array_parallelism", "folder", "cluster",
              "cpus_per_task", "mem_gb")


def unique(kind: str, configs: list[dict]) -> dict[str, dict]:
    """{run_id: config} in first-seen order, duplicates dropped."""
    out = {}
    for config in configs:
        out.setdefault(runs.run_id(kind, config), config)
    return out


def plan(kind: str, configs: list[dict], store=None) -> pd.DataFrame:
    """One row per distinct run: run_id, cached (bool), est_seconds (0 if cached).

    The estimate is the median wall time of finished runs of the same kind (and dataset, if any), else
    the kind's rough_seconds (repro.runs.KINDS).
    """
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
        slurm: dict | None = None, store=None, compute: Callable | None = None) -> list[Path]:
    """Run directories of `configs` (in order, duplicates included), computing only the missing runs.

    executor="local": in this process (workers=1) or a spawn process pool of `workers` processes (with G CUDA
    GPUs: at most G, each pinned to one GPU), each run with repro.device.run_threads_count() threads.
    executor="slurm": submitit job array; slurm = dict of partition, gpus_per_node,
    timeout_min, array_parallelism, folder (and cluster="local" to test without Slurm).
    dry_run prints the plan and returns [] without computing. compute overrides the kind's registered compute
    (and its batching).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    runs.registered(kind)  # an unknown kind fails here, naming the registered ones
    store = runs.Store(store) if not isinstance(store, runs.Store) else store
    table = plan(kind, configs, store)
    missing = table[~table["cached"]]
    if dry_run:
        print(f"{kind}: {len(table)} runs, {int(table['cached'].sum())} cached, {len(missing)} missing, "
              f"estimated {missing['est_seconds'].sum() / 60:.1f} min of compute (one worker)")
        return []
    print(f"{kind}: {len(table)} runs, {int(table['cached'].sum())} cached, {len(missing)} to compute", flush=True)
    todo = {rid: c for rid, c in unique(kind, configs).items() if not table.set_index("run_id").at[rid, "cached"]}
    units, root = _units(kind, list(todo.values()), compute), str(store.root)
    if units and executor == "slurm":
        _slurm(kind, units, compute, root, slurm or {})
    elif len(units) > 1 and workers > 1:
        _pool(kind, units, compute, root, workers)
    else:
        for unit in units:
            _unit(kind, unit, compute, root)
    return [runs.run_dir(kind, c, store) for c in configs]


def _pool(kind: str, units: list[list[dict]], compute: Callable | None, root: str, workers: int) -> None:
    """Compute units in a spawn process pool of `workers` processes; on a machine with G CUDA GPUs, at most G
    workers, each pinned to its own GPU (one unit per GPU at a time)."""
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
        for f in [pool.submit(_unit, kind, unit, compute, root) for unit in units]:
            f.result()


def _slurm(kind: str, units: list[list[dict]], compute: Callable | None, root: str, options: dict) -> None:
    """Submit one submitit job per unit of work as a job array and wait for all of them."""
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
    n = len(units)
    jobs = ex.map_array(_unit, [kind] * n, units, [compute] * n, [root] * n)
    for job in jobs:
        job.result()
