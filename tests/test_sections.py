"""Section grids end to end on a tiny twin, including the SLURM path (submitit's local executor)."""
import pytest

from repro import runs, sections, synth


@pytest.mark.slow
def test_section_runs_through_submitit_and_is_cached_afterwards(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REPRO_PROGRESS", "0")
    root = tmp_path / "data"
    synth.ensure(root, ["waterbirds"], scale="smoke")
    slurm = {"cluster": "local", "folder": str(tmp_path / "submitit" / "%j"), "timeout_min": 10}
    curve, end = sections.neural_collapse(["waterbirds"], [1, 2], "smoke", str(root), epoch_factor=1.0,
                                          executor="slurm", slurm=slurm)
    assert sorted(end["seed"]) == [1, 2] and set(curve["epoch"]) == {1, 2}
    assert (end["nc1_heldout_end"] > 0).all() and (end["nc1_train_end"] > 0).all()
    assert len(runs.load("erm")) == 2 and any((tmp_path / "submitit").iterdir())
    capsys.readouterr()
    sections.neural_collapse(["waterbirds"], [1, 2], "smoke", str(root), epoch_factor=1.0)  # now all cached
    assert "2 cached, 0 to compute" in capsys.readouterr().out


def test_group_ratio_grid_shape():
    plan = sections.group_ratio_configs(["waterbirds"], [1, 2], "paper", "no/such/root", ratios=(0.1, 1.0))
    assert len(plan["erm"]) == 2 * 2 * 2 and len(plan["heads"]) == 2 * 2 * 2
    assert {c["train_set"] for c in plan["erm"]} == {"train", "train+heldout"}
    assert all(h["spec"]["minority"] == [1, 2] for h in plan["heads"])


def test_appendix_a_plans_kirichenko_dfr_beside_sgd_dfr_on_the_same_erm_runs():
    plan = sections.appendix_a_configs(["waterbirds"], [1], "paper", "no/such/root", dfr_resamples=7)
    sgd = [h for h in plan["heads"] if h["spec"]["method"] == "dfr"]
    l1 = [h for h in plan["heads"] if h["spec"]["method"] == "dfr_l1"]
    assert len(sgd) == len(l1) == 3 and {h["erm"] for h in sgd} == {h["erm"] for h in l1}
    assert all(h["spec"] == {"method": "dfr_l1", "seed": 1, "n_resamples": 7} for h in l1)  # in the run's identity
    assert "dfr_resamples" in sections.SECTIONS["appendix_a"].params


def test_margins_carry_separable_into_the_paths_table(monkeypatch):
    """A non-separable seed keeps its steps with a NaN error and separable False (for the claims); a separable one
    keeps its errors."""
    import numpy as np
    import pandas as pd

    ermt = pd.DataFrame([{"run_id": "a", "dataset": "waterbirds"}, {"run_id": "b", "dataset": "celeba"}])
    heads = pd.DataFrame([{"erm_dataset": "waterbirds", "erm_seed": 1, "spec.seed": s, "margin_min": [0.1] * 4,
                           "margin_avg": [0.2] * 4, "test_pred_classes": c, **{f"test_acc_g{k}": 0.5 for k in range(4)}}
                          for s, c in ((1, 2), (2, 1))])
    svm = pd.DataFrame([{"erm": "a", "seed": 1, "steps": [1, 10], "direction_error": [0.9, 0.5], "standard_steps": 5,
                         "separable": True, "test_pred_classes": [1, 2], "n_heldout": 40, "dim": 8},
                        {"erm": "b", "seed": 1, "steps": [1, 10], "direction_error": None, "standard_steps": 5,
                         "separable": False, "test_pred_classes": None, "n_heldout": 40, "dim": 8}])
    monkeypatch.setattr(sections, "_execute", lambda *a, **k: (ermt, heads))
    monkeypatch.setattr(sections, "_run", lambda *a, **k: svm)
    monkeypatch.setattr(sections, "margins_configs", lambda *a, **k: {"erm": [], "heads": [], "svm": []})
    paths, points, _ = sections.margins(["waterbirds", "celeba"], [1], "smoke", "unused")
    wb, ca = paths[paths["dataset"] == "waterbirds"], paths[paths["dataset"] == "celeba"]
    assert wb["separable"].all() and wb["direction_error"].tolist() == [0.9, 0.5]
    assert not ca["separable"].any() and np.isnan(ca["direction_error"]).all() and ca["step"].tolist() == [1, 10]
    assert wb["one_class"].tolist() == [True, False] and not ca["one_class"].any()  # one class at step 1 only
    assert points.groupby("llr_seed")["one_class"].all().to_dict() == {1: False, 2: True}  # per head, every group


def test_tidy_tables_mark_one_class_runs_and_carry_the_dfr_tuning_record(monkeypatch):
    import pandas as pd

    base = {"dataset": "civilcomments", "seed": 1, "test_acc_wg": 0.0, "test_acc_avg": 0.9, "train_set": "train+heldout",
            "balance_by": "class", "history": []}
    ermt = pd.DataFrame([{**base, "balance": b, "test_pred_classes": c} for b, c in (("none", 1), ("subsetting", 2))])
    heads = pd.DataFrame([{"erm_dataset": "civilcomments", "erm_seed": 1, "erm_balance": "none", "spec.method": m,
                           "spec.balance": b, "spec.gamma": 1.0, "test_acc_wg": 0.0, "test_acc_avg": 0.9,
                           "test_pred_classes": c, "dfr_tuning_groups_missing": miss}
                          for m, b, c, miss in (("llr", None, 1, None), ("cbllr", "subsetting", 2, None),
                                                ("afr", None, 1, None), ("dfr", "subsetting", 2, None),
                                                ("dfr_l1", None, 2, [2]))])
    monkeypatch.setattr(sections, "_execute", lambda *a, **k: (ermt, heads))
    erm_rows, llr_rows, afr_rows = sections.class_balance(["civilcomments"], [1], "smoke", "unused")
    assert erm_rows["one_class"].tolist() == [True, False] and llr_rows["one_class"].tolist() == [True, False]
    assert afr_rows["one_class"].tolist() == [True]
    _, bars = sections.appendix_a(["civilcomments"], [1], "smoke", "unused")
    assert bars["one_class"].tolist() == [True, False, False, False]
    assert bars["dfr_tuning_groups_missing"].iloc[-1] == [2] and bars["dfr_tuning_groups_missing"].iloc[:3].isna().all()


def test_heldout_class_shares_sum_to_one_per_seed(tmp_path):
    synth.ensure(tmp_path, ["civilcomments"], scale="smoke")
    shares = sections.heldout_class_shares(["civilcomments"], [1, 2], str(tmp_path))
    assert sorted(shares["seed"].unique()) == [1, 2] and set(shares["class"]) == {0, 1}
    assert shares.groupby("seed")["share"].sum().round(12).tolist() == [1.0, 1.0]
