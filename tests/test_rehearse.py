"""The paper profile's code path on a CPU (repro.rehearse), one section per model family: ResNet-18 at 224 px
through the file-backed DataLoader (Figure 2's section) and BERT-Tiny on CivilComments text and MultiNLI
tokens, with last-layer heads and the SVM path (Figure 3 / Table 1's section). The whole rehearsed book is
`make rehearse` (README)."""
import numpy as np
import pytest

from repro import data, erm, hparams, rehearse, runs, sections, split


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal") / "data"
    rehearse.write_twins(root)
    return str(root)


@pytest.fixture
def rehearsal(twins, tmp_path, monkeypatch):
    monkeypatch.setenv(rehearse.ENV, "1")
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REPRO_PROGRESS", "0")
    return twins


def test_rehearsal_shrinks_only_sizes(rehearsal):
    cfg = erm.default_config("celeba", "paper", data_root=rehearsal)
    paper = hparams.erm("celeba", "paper")
    assert (cfg["model"], cfg["lr"], cfg["epochs"], cfg["batch_size"], cfg["image_size"]) == \
        (paper["model"], paper["lr"], paper["epochs"], paper["batch_size"], 224)
    assert cfg["pretrained"] is False and cfg["max_steps"] == rehearse.MAX_STEPS
    assert hparams.head("celeba", "paper")["epochs"] == rehearse.HEAD_EPOCHS
    assert "Rehearsal" in rehearse.banner() and all(k in rehearse.banner() for k in rehearse.SHRINKS)


def test_rehearsal_twins_hold_every_group_where_methods_need_it(twins):
    """Group ratios and group balancing need every group of a class in the ERM training set and the held-out set;
    the tiny twins guarantee it for the rehearsal's seed (a few dozen examples per split, no more)."""
    for name in ('waterbirds', 'celeba', 'civilcomments', 'multinli'):
        d = data.load(name, twins)
        train, heldout, test = split.heldout(d, seed=1)
        for part in (train, heldout):
            assert set(np.unique(d.g[part])) == set(range(d.n_groups)), name
        assert len(train) + len(heldout) + len(test) < 250, name


@pytest.mark.slow
def test_rehearse_resnet_section_at_224_px(rehearsal):
    curve, end = sections.neural_collapse(["waterbirds"], [1], "paper", rehearsal,
                                          model_overrides={"waterbirds": "resnet18"})
    assert list(end["dataset"]) == ["waterbirds"] and end["nc1_heldout_end"].notna().all()
    run = runs.load("erm").iloc[0]
    steps_per_epoch = -(-run["n_train"] // run["batch_size"])
    assert (run["model"], run["image_size"], run["max_steps"]) == ("resnet18", 224, rehearse.MAX_STEPS)
    assert run["epochs_trained"] == -(-rehearse.MAX_STEPS // steps_per_epoch) < run["epochs"]


@pytest.mark.slow
def test_rehearse_bert_section_with_heads_and_svm(rehearsal):
    paths, points, corr = sections.margins(["civilcomments", "multinli"], [1], "paper", rehearsal, llr_seeds=[1, 2],
                                           model_overrides={"civilcomments": "bert-tiny", "multinli": "bert-tiny"})
    assert set(paths["dataset"]) == {"civilcomments"} and paths["direction_error"].notna().all()
    assert set(corr["dataset"]) == {"civilcomments", "multinli"} and len(points) == 2 * 4 + 2 * 6
    assert set(runs.load("erm")["model"]) == {"bert-tiny"} and len(runs.load("heads")) == 4
