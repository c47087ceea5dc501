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
