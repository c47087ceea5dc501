import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from repro import runs, sweep

# at import: spawned workers import this module to unpickle `toy`
runs.KINDS.setdefault("toy", runs.Kind("tests.test_sweep:toy", 1))
runs.KINDS.setdefault("shared", runs.Kind("tests.test_sweep:reads_shared", 1,
                                          prepare=("tests.test_sweep:shared_inputs", "tests.test_sweep:make_shared")))
HERE = Path(__file__).resolve().parent


def toy(config, workdir):
    """A run that logs its start and end to $TOY_LOG and sleeps config["sleep"] seconds."""
    log = os.environ.get("TOY_LOG")
    rid = runs.run_id("toy", config)
    if log:
        with open(log, "a") as f:
            f.write(f"start {rid}\n")
    time.sleep(config.get("sleep", 0.0))
    if log:
        with open(log, "a") as f:
            f.write(f"end {rid}\n")
    return {"value": config["x"] ** 2, "pid": os.getpid()}


CONFIGS = [{"x": i, "sleep": 1.0 if i == 2 else 0.02} for i in range(5)]

SCRIPT = f"""
import sys; sys.path.insert(0, {str(HERE)!r})
import test_sweep
from repro import sweep
sweep.run("toy", test_sweep.CONFIGS + test_sweep.CONFIGS[:2], store=sys.argv[1], compute=test_sweep.toy)
"""


def _lines(log: Path) -> list[str]:
    return log.read_text().split("\n")[:-1] if log.exists() else []


def test_sigkill_mid_sweep_then_restart_completes_without_recomputation(tmp_path, monkeypatch):
    log, store = tmp_path / "log.txt", tmp_path / "store"
    monkeypatch.setenv("TOY_LOG", str(log))
    slow = runs.run_id("toy", CONFIGS[2])
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(store)], env=os.environ.copy())
    deadline = time.time() + 60
    while f"start {slow}" not in _lines(log):  # wait until the slow run is being computed
        assert time.time() < deadline and proc.poll() is None, "the sweep did not reach the slow run"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(runs.load("toy", store)) == 2 and any(p.name.startswith(".tmp-") for p in (store / "toy").iterdir())

    subprocess.run([sys.executable, "-c", SCRIPT, str(store)], check=True, env=os.environ.copy())
    starts = Counter(line.split()[1] for line in _lines(log) if line.startswith("start"))
    ends = Counter(line.split()[1] for line in _lines(log) if line.startswith("end"))
    ids = [runs.run_id("toy", c) for c in CONFIGS]
    assert ends == Counter(ids)  # every run finished exactly once
    assert starts == Counter(ids + [slow])  # only the killed run was started twice
    assert sorted(p.name for p in (store / "toy").iterdir()) == sorted(ids)  # no temp dir left

    monkeypatch.delenv("TOY_LOG")
    clean = sweep.run("toy", CONFIGS, store=tmp_path / "clean", compute=toy)
    cols = ["run_id", "x", "value"]
    got, want = runs.load("toy", store)[cols], runs.load("toy", tmp_path / "clean")[cols]
    assert got.equals(want) and [p.name for p in clean] == ids


def test_run_dedupes_and_returns_paths_in_order(tmp_path, monkeypatch):
    log = tmp_path / "log.txt"
    monkeypatch.setenv("TOY_LOG", str(log))
    configs = [{"x": 1}, {"x": 2}, {"x": 1}]
    paths = sweep.run("toy", configs, store=tmp_path, compute=toy)
    assert [p.name for p in paths] == [runs.run_id("toy", c) for c in configs] and paths[0] == paths[2]
    assert len([l for l in _lines(log) if l.startswith("end")]) == 2
    sweep.run("toy", configs, store=tmp_path, compute=toy)  # everything cached: no new work
    assert len([l for l in _lines(log) if l.startswith("end")]) == 2


def test_plan_and_dry_run(tmp_path, capsys):
    sweep.run("toy", [{"x": 1}], store=tmp_path, compute=toy)
    table = sweep.plan("toy", [{"x": 1}, {"x": 2}, {"x": 2}], store=tmp_path)
    assert list(table["cached"]) == [True, False] and table["est_seconds"].iloc[0] == 0
    assert table["est_seconds"].iloc[1] == pytest.approx(runs.load("toy", tmp_path)["wall_s"].iloc[0])
    assert sweep.run("toy", [{"x": 2}, {"x": 3}], store=tmp_path, compute=toy, dry_run=True) == []
    assert "2 runs, 0 cached, 2 missing" in capsys.readouterr().out
    assert len(runs.load("toy", tmp_path)) == 1  # dry run computed nothing
    sweep.run("toy", [{"x": 1}, {"x": 5}], store=tmp_path, compute=toy, dry_run=True)
    assert "2 runs, 1 cached, 1 missing" in capsys.readouterr().out
    assert sweep.plan("erm", [{"x": 1}], store=tmp_path)["est_seconds"].iloc[0] == runs.KINDS["erm"].rough_seconds


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="local, slurm"):
        sweep.run("toy", [{"x": 1}], executor="ray", store=tmp_path, compute=toy)
    with pytest.raises(ValueError, match="registered kinds"):
        sweep.run("nope", [{"x": 1}], store=tmp_path)
    with pytest.raises(ValueError, match="unknown slurm option"):
        sweep.run("toy", [{"x": 1}], executor="slurm", slurm={"gpu": 1}, store=tmp_path, compute=toy)


def square_and_threads(config, workdir):
    import torch
    return {"value": config["x"] ** 2, "pid": os.getpid(), "threads": torch.get_num_threads()}


def test_process_pool_with_one_torch_thread_per_worker(tmp_path):
    paths = sweep.run("toy", [{"x": i} for i in range(4)], workers=2, store=tmp_path, compute=square_and_threads)
    df = runs.load("toy", tmp_path)
    assert sorted(df["value"]) == [0, 1, 4, 9] and os.getpid() not in set(df["pid"])
    assert set(df["threads"]) == {1} and all(runs.is_done(p) for p in paths)


def test_submitit_local_executor(tmp_path, monkeypatch):
    # the job unpickles `toy` from this module (tests.test_sweep or test_sweep, as pytest imported it), whatever
    # the working directory is when it starts
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE.parent), str(HERE), os.environ.get("PYTHONPATH", "")]))
    configs = [{"x": 3}, {"x": 4}]
    paths = sweep.run("toy", configs, executor="slurm", store=tmp_path, compute=toy,
                      slurm={"cluster": "local", "timeout_min": 2, "array_parallelism": 2,
                             "folder": str(tmp_path / "logs")})
    assert [runs.read_metrics("toy", p.name, tmp_path)["value"] for p in paths] == [9, 16]



ERM_SCRIPT = """
import sys
from repro import erm, sweep, synth
root = sys.argv[2]
configs = [erm.default_config("waterbirds", "smoke", data_root=root, seed=s) for s in (1, 2, 3)]
sweep.run("erm", configs, store=sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_mid_erm_sweep_on_the_smoke_profile(tmp_path):
    from repro import synth

    root, store = tmp_path / "data", tmp_path / "store"
    synth.ensure(root, ["waterbirds"], scale="smoke")
    env = {**os.environ, "REPRO_PROGRESS": "0"}
    proc = subprocess.Popen([sys.executable, "-c", ERM_SCRIPT, str(store), str(root)], env=env)
    deadline = time.time() + 300
    while not (store / "erm").is_dir() or not any((p / "done").exists() for p in (store / "erm").iterdir()):
        assert time.time() < deadline and proc.poll() is None, "the sweep finished no run"
        time.sleep(0.05)
    while not any(p.name.startswith(".tmp-") for p in (store / "erm").iterdir()):  # the next run has started
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: (p / "done").stat().st_mtime_ns for p in (store / "erm").iterdir() if (p / "done").exists()}
    assert 1 <= len(first) < 3

    subprocess.run([sys.executable, "-c", ERM_SCRIPT, str(store), str(root)], check=True, env=env)
    after = {p.name for p in (store / "erm").iterdir()}
    assert len(after) == 3 and not any(name.startswith(".tmp-") for name in after)
    assert all((store / "erm" / name / "done").stat().st_mtime_ns == t for name, t in first.items())  # not redone

    subprocess.run([sys.executable, "-c", ERM_SCRIPT, str(tmp_path / "clean"), str(root)], check=True, env=env)
    cols = ["run_id", "seed", "test_acc_wg", "test_acc_avg", "train_acc_avg"]
    got = runs.load("erm", store)[cols].sort_values("run_id").reset_index(drop=True)
    want = runs.load("erm", tmp_path / "clean")[cols].sort_values("run_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want)


def visible_gpus(config, workdir):
    import torch
    time.sleep(config.get("sleep", 0.0))
    return {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(), "threads": torch.get_num_threads(),
            "deterministic": os.environ.get("REPRO_DETERMINISTIC", "")}


def test_pool_pins_one_mocked_gpu_per_worker(tmp_path, monkeypatch):
    from repro import device as devices

    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0", "1"])  # a machine with two GPUs, as the parent sees it
    sweep.run("toy", [{"x": i, "sleep": 0.3} for i in range(6)], workers=4, store=tmp_path, compute=visible_gpus)
    df = runs.load("toy", tmp_path)
    assert len(df) == 6 and df["pid"].nunique() == 2  # workers: 4 asked, at most one per GPU
    assert df.groupby("pid")["gpu"].nunique().eq(1).all()  # each worker always sees the same single GPU
    assert set(df["gpu"]) == {"0", "1"} and set(df["threads"]) == {1}


def test_pool_packs_k_mocked_runs_per_gpu_with_deterministic_kernels(tmp_path, monkeypatch):
    """REPRO_RUNS_PER_GPU=2 on two GPUs: four workers, two pinned to each GPU, each with deterministic kernels
    (the bits of a solo run with REPRO_DETERMINISTIC=1); the results are those of the same configs run serially."""
    from repro import device as devices

    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0", "1"])
    monkeypatch.setenv("REPRO_RUNS_PER_GPU", "2")
    configs = [{"x": i, "sleep": 0.6} for i in range(12)]
    sweep.run("toy", configs, workers=8, store=tmp_path / "packed", compute=visible_gpus)
    df = runs.load("toy", tmp_path / "packed")
    assert len(df) == 12 and df["pid"].nunique() <= 4 and df["pid"].nunique() >= 3
    assert df.groupby("pid")["gpu"].nunique().eq(1).all()
    assert df.groupby("gpu")["pid"].nunique().max() == 2 and set(df["deterministic"]) == {"1"}
    assert sweep.gpu_slots(["0", "1"], 4) == ["0", "1", "0", "1"] and sweep.gpu_slots(["3"], 2) == ["3", "3"]
    monkeypatch.setenv("REPRO_RUNS_PER_GPU", "0")
    with pytest.raises(ValueError, match="REPRO_RUNS_PER_GPU"):
        devices.runs_per_gpu()


def test_slurm_resources_reach_the_executor(tmp_path, monkeypatch):
    import submitit
    seen = {}

    class FakeJob:
        def __init__(self, value):
            self.value = value

        def done(self):
            return True

        def result(self):
            return self.value

    class FakeExecutor:
        def __init__(self, folder, cluster=None):
            seen["folder"], seen["cluster"] = folder, cluster

        def update_parameters(self, **params):
            seen.update(params)

        def map_array(self, fn, *args):
            return [FakeJob(fn(*a)) for a in zip(*args)]

    monkeypatch.setattr(submitit, "AutoExecutor", FakeExecutor)
    slurm = {"partition": "gpu", "gpus_per_node": 1, "timeout_min": 720, "array_parallelism": 8, "cpus_per_task": 6,
             "mem_gb": 40}
    sweep.run("toy", [{"x": 2}], executor="slurm", slurm=slurm, store=tmp_path, compute=toy)
    assert {k: seen[k] for k in ("gpus_per_node", "timeout_min", "cpus_per_task", "mem_gb", "slurm_partition",
                                 "slurm_array_parallelism")} == \
        {"gpus_per_node": 1, "timeout_min": 720, "cpus_per_task": 6, "mem_gb": 40, "slurm_partition": "gpu",
         "slurm_array_parallelism": 8}
    assert runs.read_metrics("toy", runs.run_id("toy", {"x": 2}), tmp_path)["value"] == 4


@pytest.mark.slow
def test_serial_and_pool_runs_of_one_config_are_bitwise_equal(tmp_path, monkeypatch):
    """A run computes with repro.device.run_threads_count() threads wherever it runs (here: serially in this
    process, whose torch default may be more threads, and in a 2-worker pool)."""
    import json

    from repro import erm, synth

    monkeypatch.setenv("REPRO_PROGRESS", "0")
    root = tmp_path / "data"
    synth.ensure(root, ["celeba"], scale="smoke")
    configs = [erm.default_config("celeba", "smoke", data_root=str(root), seed=s, epochs=1) for s in (1, 2)]
    serial = sweep.run("erm", configs, store=tmp_path / "serial")
    pooled = sweep.run("erm", configs, workers=2, store=tmp_path / "pool")
    for a, b in zip(serial, pooled):
        assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
        assert json.loads((b / "meta.json").read_text())["device"]["threads"] == 1


def test_heads_sharing_erm_features_are_one_unit_of_work():
    head = {"erm": "a", "spec": {"method": "llr", "seed": 1}, "epochs": 20, "lr": 1e-2, "batch_size": 32}
    configs = [head, {**head, "spec": {"method": "llr", "seed": 2}}, {**head, "erm": "b"}, {**head, "lr": 0.1}]
    units = sweep._units("heads", configs, compute=None)
    assert units == [configs[:2], [configs[2]], [configs[3]]]
    assert sweep._units("heads", configs, compute=toy) == [[c] for c in configs]  # an override computes one by one
    assert sweep._units("erm", configs[:2], compute=None) == [[c] for c in configs[:2]]


def erm_probing_threads(config, workdir):
    """repro.erm.train, recording the thread settings seen inside each training epoch of this worker: torch's
    intra-op threads, the OpenMP/MKL variables and the thread pools that threadpoolctl finds loaded."""
    import threadpoolctl
    import torch

    from repro import erm

    seen = []
    inner = erm.train_one_epoch

    def probed(*args, **kwargs):
        pools = {f"{p['user_api']}:{p['internal_api']}": p["num_threads"] for p in threadpoolctl.threadpool_info()}
        seen.append({"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
                     "MKL_NUM_THREADS": os.environ.get("MKL_NUM_THREADS"), "pools": pools})
        return inner(*args, **kwargs)

    erm.train_one_epoch = probed
    try:
        metrics = erm.train(config, workdir)
    finally:
        erm.train_one_epoch = inner
    return {**metrics, "pid": os.getpid(), "threads_seen": seen}


@pytest.mark.slow
def test_a_sections_runs_on_a_two_worker_pool_use_one_thread_each(tmp_path, monkeypatch):
    import json

    from repro import sections, synth

    monkeypatch.setenv("REPRO_PROGRESS", "0")
    monkeypatch.delenv("REPRO_THREADS", raising=False)  # the default: one thread per run
    root = tmp_path / "data"
    synth.ensure(root, ["waterbirds", "civilcomments"], scale="smoke")
    configs = sections.margins_configs(["waterbirds", "civilcomments"], [1], "smoke", str(root))["erm"]
    paths = sweep.run("erm", configs, workers=2, store=tmp_path / "store", compute=erm_probing_threads)
    probes = [json.loads((p / "metrics.json").read_text()) for p in paths]
    seen = [s for m in probes for s in m["threads_seen"]]
    assert len(seen) == sum(m["epochs_trained"] for m in probes) >= 2
    assert len({m["pid"] for m in probes}) == 2  # both workers ran one
    for s in seen:
        assert s["torch"] == 1 and s["OMP_NUM_THREADS"] == "1" and s["MKL_NUM_THREADS"] == "1", s
        assert all(n == 1 for api, n in s["pools"].items() if api.startswith("openmp")), s
    for p in paths:
        assert json.loads((p / "meta.json").read_text())["device"]["threads"] == 1


def test_the_pool_outlives_a_sweep_and_is_replaced_when_the_environment_changes(tmp_path, monkeypatch):
    import json

    first = sweep.run("toy", [{"x": i} for i in range(4)], workers=2, store=tmp_path, compute=toy)
    second = sweep.run("toy", [{"x": i} for i in range(4, 8)], workers=2, store=tmp_path, compute=toy)
    pids = [{json.loads((p / "metrics.json").read_text())["pid"] for p in paths} for paths in (first, second)]
    assert pids[1] <= pids[0] and os.getpid() not in pids[0]  # the same worker processes
    monkeypatch.setenv("REPRO_POOL_TEST", "changed")  # a variable the workers could read changed: new workers
    third = sweep.run("toy", [{"x": i} for i in range(8, 12)], workers=2, store=tmp_path, compute=toy)
    pids.append({json.loads((p / "metrics.json").read_text())["pid"] for p in third})
    assert not pids[2] & pids[0]
    monkeypatch.chdir(tmp_path)  # configs may name relative data roots: a new working directory, new workers
    fourth = sweep.run("toy", [{"x": i} for i in range(12, 16)], workers=2, store=tmp_path, compute=toy)
    assert not {json.loads((p / "metrics.json").read_text())["pid"] for p in fourth} & pids[2]
    sweep.shutdown()
    assert not sweep._POOL


def test_units_start_longest_first():
    from repro import cost, erm

    configs = [erm.default_config("waterbirds", "smoke", data_root="nowhere", epochs=e) for e in (1, 3, 2)]
    configs.append(erm.default_config("celeba", "smoke", data_root="nowhere", epochs=3))
    units = sweep.longest_first("erm", [[c] for c in configs])
    costs = [cost.cost("erm", u[0]) for u in units]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == 4
    # steps-matched subsets (Figure 4 on the CPU profiles) train at least their min_steps
    small = erm.default_config("waterbirds", "smoke", data_root="nowhere", group_ratio=0.2, min_steps=1000)
    assert cost.examples(small)[0] >= 1000 * 32 > cost.examples(configs[0])[0]


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_eta_is_calibrated_by_the_finished_runs():
    import io
    import re

    clock, out = FakeClock(), io.StringIO()
    progress = sweep.Progress(workers=2, stream=out, every=5.0, clock=clock)
    configs = [{"x": i} for i in range(4)]
    progress.costs = {("toy", runs.run_id("toy", c)): cost for c, cost in zip(configs, (4.0, 2.0, 1.0, 1.0))}
    assert progress.eta() == pytest.approx(8.0 / 2)  # nothing finished: the model's seconds over the workers
    assert "runs 0/4" in progress.line() and "uncalibrated" in progress.line()
    clock.now += 10.0  # the first run (4 model-seconds) took 10 s: the machine is 2.5x slower than the model
    progress.finished("toy", configs[:1])
    assert progress.eta() == pytest.approx(4.0 * 10.0 / 4.0)
    clock.now += 5.0  # two more (3 model-seconds) in 5 s: from now on the rate since the first finish
    progress.finished("toy", configs[1:3])
    assert progress.eta() == pytest.approx(1.0 * 5.0 / 3.0)
    assert re.search(r"runs 3/4, 0:15 elapsed, ETA 0:02$", progress.line())
    progress.finished("toy", configs[3:])
    assert progress.line().endswith("done")
    lines = out.getvalue().splitlines()  # not a terminal: a new line at most every 5 s
    assert lines == ["runs 1/4, 0:10 elapsed, ETA 0:10", "runs 3/4, 0:15 elapsed, ETA 0:02"]
    progress.close()
    assert out.getvalue().splitlines()[-1] == "runs 4/4, 0:15 elapsed, done"


def shared_inputs(configs):
    """One config per shared input ("key") that `configs` read."""
    return list({c["key"]: c for c in configs}.values())


def make_shared(config):
    """Writes the shared input of config["key"] (slowly), noting the process and the time."""
    start = time.time()
    time.sleep(1.0)
    path = Path(config["folder"]) / f"{config['key']}.json"
    path.write_text(json.dumps({"pid": os.getpid(), "start": start, "end": time.time()}))


def reads_shared(config, workdir):
    return {"found": (Path(config["folder"]) / f"{config['key']}.json").is_file(), "start": time.time()}


def test_shared_inputs_are_made_first_by_different_workers(tmp_path):
    """A kind's prepare (runs.Kind.prepare: the trunk caches of ERM) runs before its runs, one input per
    worker at once, so runs do not queue behind one worker computing an input the others wait for."""
    configs = [{"key": k, "x": i, "folder": str(tmp_path)} for k in ("a", "b") for i in range(3)]
    paths = sweep.run("shared", configs, workers=2, store=tmp_path / "store")
    made = {k: json.loads((tmp_path / f"{k}.json").read_text()) for k in ("a", "b")}
    assert made["a"]["pid"] != made["b"]["pid"]  # in parallel, on both workers
    assert max(m["start"] for m in made.values()) < min(m["end"] for m in made.values())
    metrics = [json.loads((p / "metrics.json").read_text()) for p in paths]
    assert all(m["found"] for m in metrics)
    assert min(m["start"] for m in metrics) >= min(m["end"] for m in made.values())


def test_erm_trunk_warmups_one_per_cache():
    from repro import erm
    base = erm.default_config("waterbirds", "cpu", data_root="d", data_fingerprint="f", model="efficientnet-lite0",
                              pretrained=True, train_blocks=1, model_kw={})
    seeds = [dict(base, seed=s) for s in (1, 2, 3)]
    assert len(erm.trunk_warmups(seeds)) == 1  # pretrained: one trunk for every seed
    assert erm.trunk_warmups(seeds + [dict(base, dataset="celeba")])[1]["dataset"] == "celeba"
    assert len(erm.trunk_warmups([dict(c, pretrained=False) for c in seeds])) == 3  # each seed's random init
    assert erm.trunk_warmups([dict(base, train_blocks=0)]) == []


def test_progress_shows_the_preparation_and_does_not_charge_it_to_the_runs():
    import io

    clock, out = FakeClock(), io.StringIO()
    progress = sweep.Progress(workers=1, stream=out, every=5.0, clock=clock)
    configs = [{"x": i} for i in range(2)]
    progress.costs = {("toy", runs.run_id("toy", c)): 1.0 for c in configs}
    progress.preparing(0, 2)
    clock.now += 60.0
    progress.preparing(1, 2)
    assert "runs 0/2 (preparing shared inputs 1/2), 1:00 elapsed" in out.getvalue().splitlines()[-1]
    clock.now += 20.0
    progress.preparing(2, 2)  # ready after 80 s; the first run then takes 10 s
    clock.now += 10.0
    progress.finished("toy", configs[:1])
    assert progress.eta() == pytest.approx(10.0)  # not (80 + 10) s per run
    assert "preparing" not in progress.line()


def rendezvous(config, workdir):
    """A run that waits until config["n"] runs are running at once (one per worker), then reports its worker's
    GPU and the environment a packed worker runs with."""
    folder = Path(config["folder"])
    (folder / str(os.getpid())).write_text("")
    deadline = time.time() + 60
    while len(list(folder.iterdir())) < config["n"] and time.time() < deadline:
        time.sleep(0.05)
    return {"gpu": os.environ.get("CUDA_VISIBLE_DEVICES"), "pid": os.getpid(), "together": len(list(folder.iterdir())),
            "deterministic": os.environ.get("REPRO_DETERMINISTIC"), "loader": os.environ.get("REPRO_LOADER_WORKERS")}


@pytest.mark.parametrize("per_gpu", [2, 3])
def test_a_packed_pool_pins_k_workers_to_each_mocked_gpu(tmp_path, monkeypatch, per_gpu):
    from repro import device as devices

    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0", "1"])  # a machine with two GPUs, as the parent sees it
    monkeypatch.delenv("REPRO_LOADER_WORKERS", raising=False)
    n = 2 * per_gpu
    configs = [{"x": i, "n": n, "folder": str(tmp_path / "here")} for i in range(n)]
    (tmp_path / "here").mkdir()
    sweep.run("toy", configs, workers=8, store=tmp_path / "runs", compute=rendezvous, runs_per_gpu=per_gpu)
    df = runs.load("toy", tmp_path / "runs")
    assert len(df) == n and df["pid"].nunique() == n and set(df["together"]) == {n}  # G * k workers at once
    assert sorted(Counter(df["gpu"]).items()) == [("0", per_gpu), ("1", per_gpu)]  # k pinned to each GPU
    assert set(df["deterministic"]) == {"1"}  # packed: deterministic kernels (no cudnn.benchmark timing race)
    assert set(df["loader"]) == {str(max(1, min(8, ((os.cpu_count() or 1) - 1) // n)))}  # loader workers shared
    sweep.shutdown()


def test_runs_per_gpu_comes_from_the_argument_or_the_environment(monkeypatch):
    from repro import device as devices

    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0", "1", "2"])
    monkeypatch.delenv("REPRO_RUNS_PER_GPU", raising=False)
    assert sweep.packing("toy", []) == 1 and sweep.pool_size(8) == 3 and sweep.pool_size(2, 3) == 6
    monkeypatch.setenv("REPRO_RUNS_PER_GPU", "2")
    assert sweep.packing("toy", []) == 2 and sweep.packing("toy", [], runs_per_gpu=3) == 3
    monkeypatch.setenv("REPRO_RUNS_PER_GPU", "auto")
    assert sweep.packing("heads", []) == 1  # auto: only ERM runs have a measured memory
    for bad in ("0", "two", "2.5", "99"):
        monkeypatch.setenv("REPRO_RUNS_PER_GPU", bad)
        with pytest.raises(ValueError, match="REPRO_RUNS_PER_GPU=.*expected a whole number in 1..16 or 'auto'"):
            sweep.packing("toy", [])
    monkeypatch.setattr(devices, "gpu_ids", lambda: [])
    assert sweep.pool_size(4, 3) == 4  # no GPU: the workers asked for


@pytest.mark.slow
def test_a_packed_sweep_writes_the_bytes_of_a_serial_sweep(tmp_path, monkeypatch):
    """Three smoke ERM runs packed onto one mocked GPU (three workers; on this CPU they train on the CPU, with
    the environment of packed workers) write the same files, byte for byte, as the same runs one after another
    in this process: config, metrics, checkpoint and feature cache of each."""
    from repro import device as devices
    from repro import erm, synth
    from tests.test_concurrency import _files

    monkeypatch.setenv("REPRO_PROGRESS", "0")
    root = tmp_path / "data"
    synth.ensure(root, ["celeba"], scale="smoke")
    configs = [erm.default_config("celeba", "smoke", data_root=str(root), seed=s, epochs=1) for s in (1, 2, 3)]
    sweep.run("erm", configs, store=tmp_path / "serial")
    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0"])
    paths = sweep.run("erm", configs, workers=1, store=tmp_path / "packed", runs_per_gpu=3)
    metrics = [json.loads((p / "metrics.json").read_text()) for p in paths]
    assert all(m["epochs_trained"] == 1 for m in metrics)
    serial, packed = _files(tmp_path / "serial"), _files(tmp_path / "packed")
    names = sorted(Path(k).name for k in serial)
    assert names == sorted(3 * ["config.json", "metrics.json", "checkpoint_epoch1.safetensors",
                                "features_epoch1.safetensors"]) and serial == packed
    sweep.shutdown()
