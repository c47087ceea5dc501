"""The paper profile's code path on a CPU (repro.rehearse): the rehearsal reaches training only as values of the
runs' configs; one section per model family, ResNet-18 at 224 px through the file-backed DataLoader (Figure 2's
section) and BERT-Tiny on CivilComments text and MultiNLI tokens, with last-layer heads and the SVM path
(Figure 3 / Table 1's section). The whole rehearsed book is `make rehearse` (README)."""
import json
from pathlib import Path

import numpy as np
import pytest

from repro import erm, hparams, inputs, rehearse, runs, sections, split
from repro.heads import head_config
from tests.test_imports import graph

ROOT = Path(__file__).resolve().parents[1]
REHEARSAL = rehearse.PARAMS["backbones"]


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    root = tmp_path_factory.mktemp("rehearsal") / "data"
    rehearse.write_twins(root)
    return str(root)


@pytest.fixture
def rehearsal(twins, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("REPRO_PROGRESS", "0")
    return twins


def test_rehearsal_shrinks_only_sizes(twins):
    cfg = erm.default_config("celeba", "paper", REHEARSAL, data_root=twins)
    paper = hparams.erm("celeba", "paper")
    assert (cfg["model"], cfg["lr"], cfg["epochs"], cfg["batch_size"], cfg["image_size"]) == \
        (paper["model"], paper["lr"], paper["epochs"], paper["batch_size"], 224)
    assert cfg["pretrained"] is False and cfg["max_steps"] == rehearse.MAX_STEPS
    assert hparams.head("celeba", "paper", REHEARSAL)["epochs"] == rehearse.HEAD_EPOCHS
    assert "Rehearsal" in rehearse.banner() and all(k in rehearse.banner() for k in rehearse.SHRINKS)


def test_training_reads_no_rehearsal_global(monkeypatch):
    """A rehearsal reaches training only as values of a run's config: no training module imports repro.rehearse,
    and REPRO_REHEARSE changes no config of any profile."""
    g = graph()
    for module in ("erm", "hparams", "models", "inputs", "trunk", "features", "heads", "last_layer", "sweep", "runs"):
        assert "repro.rehearse" not in g[f"repro.{module}"], module

    def ids():
        out = []
        for profile in hparams.PROFILES:
            c = erm.default_config("civilcomments", profile, data_root="no/such/root")
            out += [runs.run_id("erm", c), json.dumps(head_config("x", {"method": "llr", "seed": 1}, "celeba", profile))]
        return out

    plain = ids()
    monkeypatch.setenv(rehearse.ENV, "1")
    assert ids() == plain


def test_cpu_and_smoke_run_ids_are_those_of_before_the_rehearsal_became_a_config_value():
    """Run ids of a few cpu, smoke and paper configs, as computed before the rehearsal was moved out of training
    (it used to be read from REPRO_REHEARSE): moving it changed none."""
    root = "no/such/root"
    got = {f"erm {p} {d}": runs.run_id("erm", erm.default_config(d, p, data_root=root))
           for p in hparams.PROFILES for d in ("waterbirds", "multinli")}
    got["heads cpu"] = runs.run_id("heads", head_config(got["erm cpu waterbirds"], {"method": "llr", "seed": 1},
                                                        "waterbirds", "cpu"))
    got["heads paper"] = runs.run_id("heads", head_config(got["erm paper multinli"], {"method": "dfr", "seed": 2},
                                                          "multinli", "paper"))
    assert got == {"erm smoke waterbirds": "88636e673f83d7f7", "erm smoke multinli": "4b2eb284c3accb11",
                   "erm cpu waterbirds": "78395af585be74fa", "erm cpu multinli": "2924a53cd8fe783e",
                   "erm paper waterbirds": "86c552eb403dcd32", "erm paper multinli": "94ed891aacc01c3c",
                   "heads cpu": "2cd527e2a9689e19", "heads paper": "94449011084fbcb7"}


def test_rehearsal_twins_hold_every_group_where_methods_need_it(twins):
    """Group ratios and group balancing need every group of a class in the ERM training set and the held-out set;
    the tiny twins guarantee it for the rehearsal's seed (a few dozen examples per split, no more)."""
    for name in ('waterbirds', 'celeba', 'civilcomments', 'multinli'):
        d = inputs.load_data({"dataset": name, "data_root": twins})
        train, heldout, test = split.heldout(d, seed=rehearse.PARAMS["seeds"][0])
        for part in (train, heldout, test):
            assert set(np.unique(d.g[part])) == set(range(d.n_groups)), name
        assert len(d.y) < 250, name


@pytest.mark.slow
def test_rehearse_resnet_section_at_224_px(rehearsal):
    curve, end = sections.neural_collapse(["waterbirds"], [1], "paper", rehearsal,
                                          model_overrides={"waterbirds": "resnet18"}, backbones=REHEARSAL)
    assert list(end["dataset"]) == ["waterbirds"] and end["nc1_heldout_end"].notna().all()
    run = runs.load("erm").iloc[0]
    steps_per_epoch = -(-run["n_train"] // run["batch_size"])
    assert (run["model"], run["image_size"], run["max_steps"]) == ("resnet18", 224, rehearse.MAX_STEPS)
    assert run["epochs_trained"] == -(-rehearse.MAX_STEPS // steps_per_epoch) < run["epochs"]


@pytest.mark.slow
def test_rehearse_bert_section_with_heads_and_svm(rehearsal):
    paths, points, corr = sections.margins(["civilcomments", "multinli"], [1], "paper", rehearsal, llr_seeds=[1, 2],
                                           model_overrides={"civilcomments": "bert-tiny", "multinli": "bert-tiny"},
                                           backbones=REHEARSAL)
    assert set(paths["dataset"]) == {"civilcomments"} and paths["direction_error"].notna().all()
    assert set(corr["dataset"]) == {"civilcomments", "multinli"} and len(points) == 2 * 4 + 2 * 6
    assert set(runs.load("erm")["model"]) == {"bert-tiny"} and len(runs.load("heads")) == 4
