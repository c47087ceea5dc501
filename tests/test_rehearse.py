"""The paper profile's code path on a CPU (repro.rehearse).

Without training: every section's plan in the rehearsal (configs, training subsets, head plans) meets the
constraints of the balancing and last-layer code, and the rehearsal reaches training only as values of the runs'
configs. In miniature (slow): one section per model family, ResNet-18 at 224 px through the file-backed
DataLoader (Figure 2's section) and BERT-Tiny on CivilComments text and MultiNLI tokens with heads and the SVM
path (Figure 3 / Table 1's section), then the group-ratio, class-balancing and Appendix A sections with BERT-Tiny.
The whole rehearsed book is `make rehearse` (book/manual_gpus.md)."""
import json
from pathlib import Path

import numpy as np
import pytest

from repro import (balance, book, claims, datasets, erm, hparams, inputs, last_layer, plots, rehearse, report, runs,
                   sections, split)
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


@pytest.fixture
def smallest_models(monkeypatch):
    """The rehearsal with the paper's smaller architectures (ResNet-18, BERT-Tiny: the model_overrides of its
    Figures 2 and 3) for the sections that run the large ones."""
    small = book.load_params(ROOT, "margins", "paper")["model_overrides"]
    table = {d: {**hp, "model": small.get(d, hp["model"])} for d, hp in hparams.BACKBONES["paper"][REHEARSAL].items()}
    monkeypatch.setitem(hparams.BACKBONES["paper"], REHEARSAL, table)


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
    (it used to be read from REPRO_REHEARSE): moving it changed none. The ids are computed with the kinds' code
    versions of that time (erm 3, heads 2), so later version bumps leave this comparison of configs intact."""
    root = "no/such/root"
    version = {"erm": 3, "heads": 2}

    def rid(kind, config):
        return runs._digest(kind, config, version[kind])

    got = {f"erm {p} {d}": rid("erm", erm.default_config(d, p, data_root=root))
           for p in hparams.PROFILES for d in ("waterbirds", "multinli")}
    got["heads cpu"] = rid("heads", head_config(got["erm cpu waterbirds"], {"method": "llr", "seed": 1},
                                                "waterbirds", "cpu"))
    got["heads paper"] = rid("heads", head_config(got["erm paper multinli"], {"method": "dfr", "seed": 2},
                                                  "multinli", "paper"))
    assert got == {"erm smoke waterbirds": "88636e673f83d7f7", "erm smoke multinli": "4b2eb284c3accb11",
                   "erm cpu waterbirds": "78395af585be74fa", "erm cpu multinli": "2924a53cd8fe783e",
                   # the paper profile's ids changed once since: its ERM evaluates per epoch only what a figure
                   # reads (the erm key eval_splits, set in the paper profile only)
                   "erm paper waterbirds": "36290f7933e1f757", "erm paper multinli": "54865d62a6ab0037",
                   "heads cpu": "2cd527e2a9689e19", "heads paper": "c99404e143f04eff"}


def test_rehearsal_twins_hold_every_group_where_methods_need_it(twins):
    """Group ratios and group balancing need every group of a class in the ERM training set and the held-out set;
    the tiny twins guarantee it for the rehearsal's seed (a few dozen examples per split, no more)."""
    for name in datasets.names():
        d = inputs.load_data({"dataset": name, "data_root": twins})
        train, heldout, test = split.heldout(d, seed=rehearse.PARAMS["seeds"][0])
        for part in (train, heldout, test):
            assert set(np.unique(d.g[part])) == set(range(d.n_groups)), name
        assert len(d.y) < 250, name


def rehearsal_plans(twins) -> dict:
    """{section: {kind: configs}} of the rehearsal, from the paper's params files, the templates' defaults and
    the rehearsal's replacements, as `repro book --profile paper --rehearse` plans them."""
    names = [n for n in book.notebooks(ROOT) if n in sections.SECTIONS]
    assert sorted(names) == sorted(sections.SECTIONS)
    defaults = {n: book.template_parameters(ROOT / "book" / f"{n}.ipynb") for n in names}
    params = rehearse.notebook_params({n: book.load_params(ROOT, n, "paper") for n in names}, defaults, twins)
    plans = {}
    for n in names:
        values, section = {**defaults[n], **params[n]}, sections.SECTIONS[n]
        plans[n] = section.configs(profile="paper", **{k: values[k] for k in section.params})
    return plans


def _training_set(config) -> tuple:
    """(data, splits, dataset indices of the first epoch) of an ERM config: what training sets up before its first
    step (repro.erm), without a model. Raises where a group ratio cannot be met."""
    d = inputs.load_data(config)
    idx = erm.splits(d, config)
    order_of, _, _ = erm._sampler(d, idx["train"], config)
    return d, idx, order_of(1)


def _head_plan(spec: dict, y, g, n_classes: int, rng):
    """The rows a head trains on (with nonzero weight or probability): its method's plan on stand-in features (the
    subsets, weights and probabilities of every method but AFR's do not depend on the features). Kirichenko
    et al.'s DFR (its own solver) is fitted on them."""
    x = rng.normal(size=(len(y), 8))
    spec = dict(spec)
    if spec["method"] in last_layer.SOLVED:
        solver = runs.import_function(last_layer.SOLVED[spec.pop("method")])
        W, _, _ = solver(x, y, g, features_train=rng.normal(size=(3 * len(y), 8)), n_classes=n_classes, **spec)
        assert W.shape == (n_classes, 8)
        return np.arange(len(y))
    if spec["method"] == "afr":
        spec["erm_head"] = (rng.normal(size=(n_classes, 8)), np.zeros(n_classes))
    plan = last_layer.plan(x, y, g, spec)
    keep = np.ones(len(plan.subset), bool)
    for mass in (plan.weights, plan.probs):
        if mass is not None:
            keep &= np.asarray(mass) > 0
    return plan.subset[keep]


def test_rehearsal_plan_meets_every_section_constraint(twins):
    """Every run of every section in the rehearsal, without training: its ERM training set (balanced or at a group
    ratio: repro.balance raises where a ratio cannot be met) and every head's plan on its held-out set. Every run
    sees every class; group-balanced ERM, group-ratio subsets and group-balanced heads see every group; the
    rehearsal's shrinks are values of every config."""
    rng = np.random.default_rng(0)
    for name, plan in rehearsal_plans(twins).items():
        ermc = {runs.run_id("erm", c): c for c in plan["erm"]}
        for c in ermc.values():
            assert (c["pretrained"], c["max_steps"]) == (False, rehearse.MAX_STEPS)
            d, idx, order = _training_set(c)
            by_group = c["balance_by"] == "group" or c["group_ratio"] is not None
            keys = d.g if by_group else d.y
            assert len(np.unique(keys[order])) == (d.n_groups if by_group else d.n_classes), (name, c)
            for part in ("train", "heldout", "test"):
                assert len(np.unique(d.g[idx[part]])) == d.n_groups, (name, c["dataset"], part)
        for h in plan.get("heads", []) + plan.get("svm", []):
            assert h.get("epochs", h.get("llr_epochs")) == rehearse.HEAD_EPOCHS
        for h in plan.get("heads", []):
            d, idx, _ = _training_set(ermc[h["erm"]])
            y, g = d.y[idx["heldout"]], d.g[idx["heldout"]]
            rows = _head_plan(h["spec"], y, g, d.n_classes, rng)
            by_group = h["spec"]["method"] in ("dfr", "ratio", "dfr_l1")
            assert len(np.unique((g if by_group else y)[rows])) == (d.n_groups if by_group else d.n_classes), \
                (name, h["spec"])


def test_the_plan_check_catches_the_twins_that_stopped_the_rehearsal():
    """The twin counts that stopped `make rehearse` (CivilComments' ERM training set {0: 30, 1: 18, 2: 4, 3: 4}):
    r = 0.2 cannot be met, and the rehearsal's floor of groups is what makes it meetable."""
    minority = datasets.get("civilcomments").paper_minority
    y, g = np.repeat([0, 0, 1, 1], [30, 18, 4, 4]), np.repeat([0, 1, 2, 3], [30, 18, 4, 4])
    with pytest.raises(ValueError, match="cannot be met"):
        balance.group_ratio_counts(y, g, min(rehearse.PARAMS["ratios"]), minority)
    floor = rehearse.DEFAULT_MIN_COUNT[0]
    y, g = np.repeat([0, 0, 1, 1], [30, 18, floor, floor]), np.repeat([0, 1, 2, 3], [30, 18, floor, floor])
    assert min(balance.group_ratio_counts(y, g, min(rehearse.PARAMS["ratios"]), minority).values()) >= 1


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


@pytest.mark.slow
def test_rehearse_group_ratio_section(rehearsal, smallest_models):
    """Figure 4's section at the rehearsal's ratios: ERM on group-ratio subsets (CivilComments' budget is capped by
    its toxic majority group, the case that stopped the rehearsal) and LLR heads at each held-out ratio, then
    the page's figure, table and claims."""
    ratios = rehearse.PARAMS["ratios"]
    erm_rows, llr_rows, corr = sections.group_ratio(["civilcomments"], [1], "paper", rehearsal, ratios=ratios,
                                                    backbones=REHEARSAL)
    assert sorted(erm_rows["ratio"]) == sorted(ratios) and erm_rows["test_acc_wg"].notna().all()
    assert len(llr_rows) == len(ratios) ** 2 and llr_rows["test_acc_wg"].notna().all() and len(corr) == 1
    d = inputs.load_data({"dataset": "civilcomments", "data_root": rehearsal})
    train = split.heldout(d, seed=1)[0]
    for _, run in runs.load("erm", train_set="train").iterrows():
        counts = balance.group_ratio_counts(d.y[train], d.g[train], run["group_ratio"],
                                            datasets.get("civilcomments").paper_minority)
        assert run["n_train"] == sum(counts.values()) and run["model"] == "bert-tiny"
    plots.figure4(erm_rows, llr_rows, corr), report.ratio_table(corr, erm_rows, llr_rows)
    assert len(claims.group_ratio(erm_rows, llr_rows))


@pytest.mark.slow
def test_rehearse_class_balance_and_appendix_a_sections(rehearsal, smallest_models):
    """Figure 5's and Appendix A's sections (class- and group-balanced ERM, CB-LLR, AFR, the paper's DFR and
    Kirichenko et al.'s), sharing their class-balanced ERM runs, then the pages' figures and claims."""
    sets, gammas = (["civilcomments"], [1], "paper", rehearsal), rehearse.PARAMS["gammas"]
    erm_rows, llr_rows, afr_rows = sections.class_balance(*sets, gammas=gammas, backbones=REHEARSAL)
    assert len(erm_rows) == 4 and len(llr_rows) == 4 * 4 and len(afr_rows) == len(gammas)
    mass, minority = sections.afr_group_mass(*sets, gammas=gammas, backbones=REHEARSAL), sections.minority(sets[0])
    plots.figure5(erm_rows, llr_rows), plots.figure_afr(afr_rows, mass, minority)
    assert len(claims.class_balance(erm_rows, llr_rows, afr_rows, mass, minority))
    curves, bars = sections.appendix_a(*sets, dfr_resamples=2, backbones=REHEARSAL)
    assert set(curves["balance"]) == set(balance.METHODS) and len(bars) == 3 * 3
    assert bars["test_acc_wg"].notna().all() and len(runs.load("erm")) == 8 + 3
    plots.figure6(curves), plots.figure7(bars)
    assert len(claims.appendix_a(curves, bars))
