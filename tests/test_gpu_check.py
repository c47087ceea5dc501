"""benchmarks/gpu_check.py's speed parts (benchmarks/gpu_speed.py) in their reduced form, on a machine without
CUDA: the code that a GPU check runs, with the smoke twins and small models."""
import json
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))


@pytest.mark.slow
def test_the_speed_parts_run_reduced_without_cuda_and_end_with_one_json_summary(tmp_path, monkeypatch, capsys):
    import torch

    import gpu_check

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs the full parts: benchmarks/gpu_check.py --parts pack ...")
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))  # gpu_check points it at its temporary folder
    monkeypatch.setenv("REPRO_PROGRESS", "0")
    summary = gpu_check.main(["--parts", "pack", "syncdebug", "fastpath", "input", "calibrate", "--budget-s", "600",
                              "--out", str(tmp_path / "out")])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == json.loads(json.dumps(summary, default=str))
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text()).keys() == summary.keys()
    rows = summary["pack"]["rows"]
    assert [r["workers"] for r in rows] == [1, 2] and all(r["identical_to_solo"] for r in rows)
    sync = {k: v for k, v in summary["syncdebug"].items() if isinstance(v, dict)}
    assert len(sync) == 3 and all(v["ok"] and v["steps"] == 8 and v["syncs"] == [] for v in sync.values())
    assert set(summary["fastpath"]["model_ratio_to_fp32"]) == {"fp32", "fp32 tf32", "bf16"}
    assert summary["input"]["both_ratio_cache_to_files"] > 0 and summary["input"]["cache"]["eval"] > 0
    calibrated = summary["calibrate"]
    assert calibrated["workloads"] and set(calibrated["auto_runs_per_gpu"].values()) == {1}  # no GPU memory


@pytest.mark.slow
def test_erm_throughput_measures_the_fast_path_and_concurrent_runs(capsys):
    import erm_throughput

    out = erm_throughput.main(["--models", "bert-tiny", "--batch-size", "4", "--steps", "1", "--workers", "0",
                               "--tf32", "--concurrent", "2", "--device", "cpu"])["bert-tiny"]
    fast, together = out["fast"]["tf32"], out["concurrent"]
    assert fast["model"] > 0 and fast["model_ratio"] == pytest.approx(fast["model"] / out["model"])
    assert together["runs"] == 2 and len(together["per_run"]) == 2 and all(r > 0 for r in together["per_run"])
    assert together["ratio"] == pytest.approx(sum(together["per_run"]) / together["alone"])
    text = capsys.readouterr().out
    assert "  tf32 " in text and "2 at once: both per run" in text
    with pytest.raises(SystemExit) as stop:  # compile is CUDA's, as the ERM key
        erm_throughput.main(["--models", "bert-tiny", "--compile", "--device", "cpu"])
    assert stop.value.code == 2 and "--compile is used on CUDA GPUs only" in capsys.readouterr().err
