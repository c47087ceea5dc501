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
