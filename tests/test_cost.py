"""The cost model (repro.cost) and the device calibration it reads (repro.calibration, `repro bench`)."""
import json
from types import SimpleNamespace

import numpy as np
import pytest

from repro import calibration, cli, cost, erm, metadata, plan, runs, split
from tests.test_book import REPO


def _smoke(dataset="waterbirds", **kw):
    return erm.default_config(dataset, "smoke", data_root="nowhere", **{"epochs": 3, **kw})


def test_examples_follow_the_schedule_and_the_evaluated_splits():
    """Smoke Waterbirds twin: 241 training images (Table 2 x 0.05), 80% of them for ERM (192), 290 test."""
    counts = cost.split_counts("waterbirds", "smoke")
    n_train, n_held, n_test = (int(counts[s].sum()) for s in ("train", "heldout", "test"))
    assert (n_train, n_held, n_test) == (192, 49, 290)
    every = n_train + n_held + n_test
    assert cost.examples(_smoke(eval_every=0)) == (3 * 192, every)
    assert cost.examples(_smoke(eval_every=1)) == (3 * 192, 3 * every)
    assert cost.examples(_smoke(eval_every=1, eval_splits=["test"])) == (3 * 192, 2 * n_test + every)
    assert cost.examples(_smoke(nc1_every=1)) == (3 * 192, 2 * n_train + every)
    assert cost.examples(_smoke(save_epochs=[1, 3])) == (3 * 192, 2 * every)
    # 6 steps an epoch: min_steps 20 trains 4 epochs; max_steps 2 stops in the first
    assert cost.examples(_smoke(min_steps=20)) == (4 * 192, every)
    assert cost.examples(_smoke(max_steps=2)) == (2 * 32, every)
    # train+heldout: the held-out set is inside the training set, evaluated once
    assert cost.examples(_smoke(train_set="train+heldout")) == (3 * 241, 241 + n_test)


def test_seconds_are_examples_over_the_rates(monkeypatch):
    monkeypatch.setitem(cost.DEFAULT_RATES, "cnn-small", ("a test device", 100.0, 400.0, 32))
    config = _smoke(eval_every=1)
    train, evaluated = cost.examples(config)
    assert cost.cost("erm", config) == pytest.approx(train / 100 + evaluated / 400)
    assert cost.rates(config).device == "a test device" and cost.rates(config).source == "default"
    # another input size scales the rates by the pixels (images) or tokens (texts)
    assert cost.rates(_smoke(image_size=64)).train == pytest.approx(25.0)
    text = _smoke("multinli", max_length=128)
    assert cost.rates(text).train == pytest.approx(cost.DEFAULT_RATES["bert-micro"][1] / 2)
    assert cost.cost("heads", {}) == cost.SECONDS_PER_RUN["heads"]


def test_apportion_keeps_the_total_and_the_proportions():
    out = cost._apportion(np.array([3498, 184, 56, 1057]), 3836)
    assert out.sum() == 3836 and np.abs(out - np.array([3498, 184, 56, 1057]) * 0.8).max() < 1


@pytest.mark.parametrize("dataset", ["celeba", "multinli", "waterbirds"])
def test_split_sizes_and_subsets_are_the_training_code_s(dataset, real_root):
    """On the real metadata: the ERM split sizes of repro.split.heldout, and the epoch sizes of repro.erm's
    sampler (group-ratio subsets and balanced subsets by repro.balance) for the splits it draws exactly."""
    frame = metadata.read(dataset, real_root)
    y, a = frame["y"].to_numpy(), frame["a"].to_numpy()
    data = SimpleNamespace(name=dataset, y=y, g=y * 2 + a, split=frame["split"].to_numpy())
    train, held, test = split.heldout(data, seed=1)
    counts = cost.split_counts(dataset, "paper")
    assert [int(counts[s].sum()) for s in ("train", "heldout", "test")] == [len(train), len(held), len(test)]
    overrides = [dict(balance="subsetting"), dict(balance="subsetting", balance_by="group")]
    overrides += [dict(group_ratio=r, group_ratio_method="subsetting") for r in (0.05, 0.2, 1.0)]
    for kw in overrides:
        config = erm.default_config(dataset, "paper", data_root=str(real_root), data_fingerprint="-", **kw)
        # Waterbirds: its ERM set is a random 80% of train, whose expected group counts the cost model uses (the
        # smallest group, 56 x 0.8, draws 44 to 45 examples)
        exact = pytest.approx(erm._sampler(data, train, config)[1], rel=0.05 if dataset == "waterbirds" else 0)
        assert cost.epoch_size(config) == exact, kw


def test_a_stored_calibration_changes_the_estimate_and_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path))
    config = _smoke()
    before = cost.cost("erm", config)
    train, evaluated = cost.examples(config)
    path = calibration.save({calibration.workload(config): {"train": 10.0, "eval": 20.0, "peak_bytes": 123e6}})
    assert path.parent == tmp_path / ".calibration" and json.loads(path.read_text())["device"] == "cpu"
    assert cost.cost("erm", config) == pytest.approx(train / 10 + evaluated / 20) != before
    assert cost.rates(config).source == "measured" and cost.peak_bytes(config) == 123e6
    text = plan.book_plan("smoke", only=["margins"], root=REPO)
    assert f"this device's calibration {path}" in text and "measured: cpu" in text
    assert "default:" in text  # the celeba twin's cnn-small (other widths) is another workload: not measured


def test_without_a_calibration_the_plan_names_the_defaults_device(tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path))
    text = plan.book_plan("smoke", only=["margins"], root=REPO)
    assert "at repro.cost.DEFAULT_RATES of one CPU thread" in text and "`repro bench` measures one" in text
    assert "| waterbirds · cnn-small" in text and "| margins" in text


def test_repro_bench_measures_and_stores_the_profile_s_workloads(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path))
    assert cli.main(["bench", "--profile", "smoke", "--only", "margins", "--seconds", "3"]) == 0
    stored = calibration.load()
    keys = calibration.workloads(plan.erm_configs("smoke", ["margins"], REPO))
    assert set(stored["rates"]) == set(keys) and all(r["train"] > 0 and r["eval"] > 0 for r in stored["rates"].values())
    assert str(calibration.path()) in capsys.readouterr().out
    assert cli.main(["bench", "--seconds", "0"]) == 2


def test_disk_estimate_matches_a_smoke_run_s_files(tmp_path, monkeypatch):
    """Checkpoints, feature caches and JSON files of one smoke ERM run, within 2% of repro.cost.disk_bytes."""
    from repro import synth

    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    synth.ensure(str(tmp_path / "data"), ["multinli"], scale="smoke")
    config = erm.default_config("multinli", "smoke", data_root=str(tmp_path / "data"), save_epochs=[1, 2])
    folder = runs.get("erm", config, erm.train)
    actual = sum(f.stat().st_size for f in folder.iterdir())
    assert cost.disk_bytes(config) == pytest.approx(actual, rel=0.02)
    assert json.loads((folder / "metrics.json").read_text())["n_train"] == cost.epoch_size(config)


def test_peak_memory_estimate_grows_with_the_batch():
    """Past the evaluation's share (a batch of 256 and the features kept), each training example adds the
    outputs of every module; weights, gradients and AdamW's moments come on top."""
    a = cost.anatomy(_smoke())
    assert a.trained_params == sum(p.numel() for p in erm._rebuild(_smoke(), pretrained=False).parameters())
    peak = {b: cost.peak_bytes(_smoke(batch_size=b)) for b in (8, 64, 1024, 2048)}
    assert peak[8] == peak[64] > a.state_bytes + 12 * a.trained_params  # evaluation is the peak
    assert peak[2048] - peak[1024] == 1024 * a.activation_bytes


def test_evaluation_epochs_are_counted_without_a_loop_and_agree_with_one():
    """cost.examples counts the evaluated epochs per class (last/saved, eval_every, nc1_every): the same total
    as evaluating erm.evaluated_splits epoch by epoch, and a config of 2^31 - 1 epochs costs at once."""
    import itertools
    import time

    from repro import erm

    for every, nc1, epochs, saves in itertools.product((0, 1, 2, 3), (0, 1, 2), (1, 5, 7), ([1], [3], [2, 5])):
        config = erm.default_config("waterbirds", "smoke", data_root="no/such/root", epochs=epochs, eval_every=every,
                                    nc1_every=nc1, save_epochs=[e for e in saves if e <= epochs] or [epochs])
        n = cost.epoch_size(config)
        _, last, save = erm.schedule(config, n)
        counts = cost.split_counts("waterbirds", "smoke", config["train_set"], config["heldout_source"])
        size = {s: int(counts[s].sum()) for s in erm.SPLITS}
        brute = 0
        for e in range(1, last + 1):
            splits = erm.evaluated_splits(config, e, last, save)
            nested = counts["nested"] and "train" in splits
            brute += sum(size[s] for s in splits if not (s == "heldout" and nested))
        assert cost.examples(config)[1] == brute, (every, nc1, epochs, saves)
    start = time.perf_counter()
    huge = erm.default_config("waterbirds", "smoke", data_root="no/such/root", epochs=2**31 - 1, eval_every=1)
    assert cost.examples(huge)[1] > 2**31 and time.perf_counter() - start < 5


def test_auto_runs_per_gpu_fill_the_measured_memory(tmp_path, monkeypatch):
    """sweep.packing(..., "auto") packs ERM runs by the GPU memory and peaks a calibration holds: 80% of the
    memory over (largest peak + 0.75 GiB of CUDA context), 1 to 3; 1 without a measurement."""
    from repro import device as devices
    from repro import sweep

    monkeypatch.setenv("REPRO_RUNS", str(tmp_path))
    monkeypatch.setattr(devices, "gpu_ids", lambda: ["0"])
    configs = [_smoke(), _smoke(seed=2)]
    assert sweep.packing("erm", configs, "auto") == 1  # no calibration
    gib = 2**30
    for peak, memory, want in ((2 * gib, 16 * gib, 3), (5 * gib, 16 * gib, 2), (12 * gib, 16 * gib, 1),
                               (5 * gib, None, 1)):
        path = calibration.save({calibration.workload(configs[0]): {"train": 1.0, "eval": 1.0, "peak_bytes": peak}})
        stored = json.loads(path.read_text())
        path.write_text(json.dumps({**stored, "memory_bytes": memory}))
        assert cost.runs_per_gpu(configs) == want == sweep.packing("erm", configs, "auto"), (peak, memory)
    other = _smoke(dataset="celeba")  # a workload without a measured peak
    assert cost.runs_per_gpu(configs + [other]) == 1
    assert sweep.packing("heads", configs, "auto") == 1 and sweep.packing("erm", configs, 2) == 2
