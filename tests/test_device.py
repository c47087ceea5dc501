import os
import json

import numpy as np
import pytest
import torch

from tests.conftest import image_data
from repro import device as devices
from repro import erm, runs


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """64 random 32x32 PNGs named like Waterbirds (tests/conftest.py image_data)."""
    return image_data(tmp_path_factory.mktemp("imgs"), (32, 12, 20), seed=1)


@pytest.fixture
def use(monkeypatch, tiny_images):
    monkeypatch.setattr(erm, "load_data", lambda config: tiny_images)


def _cfg(**kw):
    return erm.default_config("waterbirds", "smoke", data_root="memory", **{"epochs": 2, **kw})


def test_select_resolve_and_describe(monkeypatch):
    monkeypatch.delenv(devices.ENV, raising=False)
    assert devices.requested() == "auto" and devices.resolve().type in ("cpu", "cuda", "mps")
    assert devices.select("CPU") == "cpu" and devices.resolve() == torch.device("cpu")
    assert devices.select("") == "cpu"  # an empty parameter keeps what is set
    for bad in ("gpu", "cuda:x", "cpu:0", "tpu"):
        with pytest.raises(ValueError, match="unknown device .*choose one of auto, cpu, cuda, mps"):
            devices.select(bad)
    info = devices.describe("cpu")
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and info["threads"] == 1
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no CUDA GPU"):
            devices.resolve("cuda")
        assert devices.gpu_ids() == []


def test_device_is_not_part_of_a_run_and_cpu_equals_auto(use, tmp_path, monkeypatch):
    cfg = _cfg()
    assert "device" not in cfg and "precision" not in cfg and "max_steps" not in cfg  # fp32 keeps old run ids
    results = []
    for name in ("cpu", "auto"):
        monkeypatch.setenv(devices.ENV, name)
        (tmp_path / name).mkdir()
        results.append(json.dumps(erm.train(cfg, tmp_path / name)))
    if devices.resolve("auto").type == "cpu":
        assert results[0] == results[1]


def test_bf16_trains_and_is_hashed_apart(use, tmp_path):
    fp32, bf16 = _cfg(), _cfg(precision="bf16")
    assert bf16["precision"] == "bf16" and runs.run_id("erm", fp32) != runs.run_id("erm", bf16)
    assert runs.run_id("erm", _cfg(precision="fp32")) == runs.run_id("erm", fp32)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m32, m16 = erm.train(fp32, tmp_path / "a"), erm.train(bf16, tmp_path / "b")
    assert all(np.isfinite(h["loss"]) for h in m16["history"]) and 0 <= m16["test_acc_wg"] <= 1
    assert m16["history"][0]["loss"] != m32["history"][0]["loss"]  # autocast changes the numbers
    with pytest.raises(ValueError, match="precision"):
        _cfg(precision="fp8")


def test_max_steps_stops_early_and_saves_that_epoch(use, tmp_path):
    # 32 train examples - 20% held out = 26 at batch 8: 4 steps per epoch; 5 steps end in epoch 2 of 6
    m = erm.train(_cfg(epochs=6, batch_size=8, max_steps=5), tmp_path)
    assert m["epochs_trained"] == 2 and m["saved_epochs"] == [2] and "test_acc_wg" in m["history"][-1]
    assert (tmp_path / "features_epoch2.safetensors").is_file()


def test_run_threads_sets_and_restores(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv(devices.THREADS_ENV, "1")
    with devices.run_threads():
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    monkeypatch.setenv(devices.THREADS_ENV, "0")
    with pytest.raises(ValueError, match="REPRO_THREADS"):
        devices.run_threads_count()


def test_runs_per_gpu_setting_and_its_variable(monkeypatch):
    from repro import cli

    monkeypatch.delenv(devices.RUNS_PER_GPU_ENV, raising=False)
    assert devices.runs_per_gpu() == 1 and devices.runs_per_gpu(3) == 3 and devices.runs_per_gpu("auto") == "auto"
    monkeypatch.setenv(devices.RUNS_PER_GPU_ENV, "auto")
    assert devices.runs_per_gpu() == "auto" and devices.runs_per_gpu("2") == 2
    cli.check_environment()  # a known variable with a good value
    for bad in ("0", "17", "-1", "x", "1.5"):
        monkeypatch.setenv(devices.RUNS_PER_GPU_ENV, bad)
        with pytest.raises(ValueError, match=r"REPRO_RUNS_PER_GPU=.* expected a whole number in 1\.\.16 or 'auto'"):
            cli.check_environment()
    with pytest.raises(ValueError, match=r"runs_per_gpu=True: expected"):
        devices.runs_per_gpu(True)
    monkeypatch.delenv(devices.RUNS_PER_GPU_ENV)
    seen = {}
    monkeypatch.setattr("repro.plan.book_plan", lambda *a, **kw: seen.setdefault("env", os.environ.get(
        devices.RUNS_PER_GPU_ENV)) or "")
    assert cli.main(["book", "--profile", "smoke", "--dry-run", "--runs-per-gpu", "2"]) == 0 and seen["env"] == "2"
    assert cli.main(["book", "--dry-run", "--runs-per-gpu", "many"]) == 2


def test_host_reads_records_what_waits_for_a_gpu():
    x = torch.arange(6.0)
    with devices.host_reads([]) as log:
        y = (x * 2).sum()  # stays a tensor: no read
        value = float(y)
        mask = x[x > 2]  # a shape that depends on the data
    assert value == 30.0 and len(mask) == 3
    assert [op for op, _ in log] == ["_local_scalar_dense", "index by a boolean mask"]
    assert all(where.startswith("test_device.py:") for _, where in log)
