"""Speed without changing a bit: one thread per pool worker, a pool kept across sweeps, runs started longest
first, the book's runs computed in one pool (same ids, same bytes as section by section), the ETA's calibration,
and the multi-tensor optimizers."""
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from repro import runs, sweep


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


def pid(config, workdir):
    return {"pid": os.getpid()}


runs.KINDS.setdefault("speedtoy", runs.Kind("tests.test_speed:pid", 1))


def test_the_pool_outlives_a_sweep_and_is_replaced_when_the_environment_changes(tmp_path, monkeypatch):
    first = sweep.run("speedtoy", [{"x": i} for i in range(4)], workers=2, store=tmp_path, compute=pid)
    second = sweep.run("speedtoy", [{"x": i} for i in range(4, 8)], workers=2, store=tmp_path, compute=pid)
    pids = [{json.loads((p / "metrics.json").read_text())["pid"] for p in paths} for paths in (first, second)]
    assert pids[1] <= pids[0] and os.getpid() not in pids[0]  # the same worker processes
    monkeypatch.setenv("REPRO_THREADS", "1")  # the workers' environment changed: new workers
    third = sweep.run("speedtoy", [{"x": i} for i in range(8, 12)], workers=2, store=tmp_path, compute=pid)
    assert not {json.loads((p / "metrics.json").read_text())["pid"] for p in third} & pids[0]
    sweep.shutdown()
    assert not sweep._POOL


def test_units_start_longest_first():
    from repro import erm, plan

    configs = [erm.default_config("waterbirds", "smoke", data_root="nowhere", epochs=e) for e in (1, 3, 2)]
    configs.append(erm.default_config("celeba", "smoke", data_root="nowhere", epochs=3))
    units = sweep.longest_first("erm", [[c] for c in configs])
    costs = [plan.cost("erm", u[0]) for u in units]
    assert costs == sorted(costs, reverse=True) and len(set(costs)) == 4
    assert plan.cost("erm", configs[1]) == 3 * plan.cost("erm", configs[0])  # examples x epochs
    # steps-matched subsets (Figure 4 on the CPU profiles) cost at least their min_steps
    small = erm.default_config("waterbirds", "smoke", data_root="nowhere", group_ratio=0.2, min_steps=1000)
    assert plan.cost("erm", small) == pytest.approx(plan.SECONDS_PER_EXAMPLE["cnn-small"] * 1000 * 32)


def test_twin_profiles_cost_the_twin_sizes():
    from repro import plan, synth

    assert plan.train_size("waterbirds", "smoke") == int(synth.counts("waterbirds", "smoke")[0].sum())
    assert plan.train_size("waterbirds", "cpu") > plan.train_size("waterbirds", "smoke")
    assert plan.train_size("waterbirds", "paper") == 4795


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_eta_is_calibrated_by_the_finished_runs():
    import io

    clock, out = FakeClock(), io.StringIO()
    progress = sweep.Progress(workers=2, stream=out, every=5.0, clock=clock)
    configs = [{"x": i} for i in range(4)]
    progress.costs = {("speedtoy", runs.run_id("speedtoy", c)): cost for c, cost in zip(configs, (4.0, 2.0, 1.0, 1.0))}
    assert progress.eta() == pytest.approx(8.0 / 2)  # nothing finished: the model's seconds over the workers
    assert "runs 0/4" in progress.line() and "uncalibrated" in progress.line()
    clock.now += 10.0  # the first run (4 model-seconds) took 10 s: the machine is 2.5x slower than the model
    progress.finished("speedtoy", configs[:1])
    assert progress.eta() == pytest.approx(4.0 * 10.0 / 4.0)
    clock.now += 5.0  # two more (3 model-seconds) in 5 s: from now on the rate since the first finish
    progress.finished("speedtoy", configs[1:3])
    assert progress.eta() == pytest.approx(1.0 * 5.0 / 3.0)
    assert re.search(r"runs 3/4, 0:15 elapsed, ETA 0:02$", progress.line())
    progress.finished("speedtoy", configs[3:])
    assert progress.line().endswith("done")
    lines = out.getvalue().splitlines()  # not a terminal: a new line at most every 5 s
    assert lines == ["runs 1/4, 0:10 elapsed, ETA 0:10", "runs 3/4, 0:15 elapsed, ETA 0:02"]
    progress.close()
    assert out.getvalue().splitlines()[-1] == "runs 4/4, 0:15 elapsed, done"


def test_multi_tensor_optimizers_give_the_same_bits_as_the_per_tensor_loop():
    import torch

    from repro import erm, models

    for name, kw, optimizer in (("cnn-small", {}, "adamw"), ("bert-micro", {"hidden": 32, "intermediate": 64}, "adamw"),
                                ("cnn-small", {}, "sgd")):
        finals = []
        for foreach in (False, True):
            torch.manual_seed(0)
            model = models.build(name, 2, False, **kw)
            opt = erm._optimizer(model, {"model": name, "weight_decay": 1e-4, "lr": 1e-3, "optimizer": optimizer})
            assert opt.defaults["foreach"] is True
            if not foreach:  # the per-tensor loop torch would choose for CPU tensors
                for group in opt.param_groups:
                    group["foreach"] = False
            gen = torch.Generator().manual_seed(1)
            for _ in range(3):
                for p in model.parameters():
                    p.grad = torch.randn(p.shape, generator=gen)
                opt.step()
            finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert torch.equal(*finals), (name, optimizer)


@pytest.mark.slow
def test_the_books_shared_pool_gives_the_runs_of_a_section_by_section_build(tmp_path, monkeypatch):
    """Two sections (sharing the base ERM run) computed up front by book.precompute in one 2-worker pool, and
    section by section in this process as their notebooks would: the same run ids, the same metrics.json bytes."""
    from repro import book, sections
    from tests.conftest import copy_book_sources

    monkeypatch.setenv("REPRO_PROGRESS", "0")
    (tmp_path / "src").mkdir()
    root = copy_book_sources(tmp_path / "src")
    names = ["margins", "class_balance"]
    for name in names:
        path = root / "params" / "smoke" / f"{name}.yml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "datasets": ["waterbirds"], "workers": 2}))
    params = {name: book.load_params(root, name, "smoke") for name in names}

    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "shared"))
    counts = book.precompute(root, names, "smoke", params, log=lambda *a: None)
    assert counts["erm"] == 8 and counts["heads"] > 0 and counts["svm"] == 1
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "alone"))
    monkeypatch.chdir(root)
    for name in names:
        values = {**book.template_parameters(root / "book" / f"{name}.ipynb"), **params[name], "workers": 1}
        section = sections.SECTIONS[name]
        section.compute(profile="smoke", **{k: values[k] for k in section.params})

    def store(folder: Path) -> dict:
        return {p.relative_to(folder).as_posix(): (p / "metrics.json").read_bytes()
                for p in folder.glob("*/*") if (p / "done").exists()}

    shared, alone = store(tmp_path / "shared"), store(tmp_path / "alone")
    assert len(shared) == 8 + counts["heads"] + 1 and shared.keys() == alone.keys()
    assert [k for k in shared if shared[k] != alone[k]] == []
