"""The paper's sections with runs, one SECTIONS entry each: the function that lists the section's runs and the
one that computes them into tidy tables for its figures.

`<section>_configs(...)` lists every run the section needs (so a dry run can plan it), `<section>(...)`
computes the missing ones through repro.sweep and returns tidy tables for the figures. A SECTIONS key is the
section's notebook name and params file name.

Runs are shared through the run store: the "base" ERM of a dataset and seed (ERM split, no balancing) is
the same run for Figure 3, Table 1, AFR and the no-balancing bars of Figure 5.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd

from repro import data, erm, hparams, metrics, results, runs, sweep
from repro.balance import BALANCES
from repro.datasets import get as record  # (`datasets` is the sections' parameter: a list of names)
from repro.heads import head_config, sgd_steps, svm_config


def _grid(datasets, seeds):
    return [(d, s) for d in datasets for s in seeds]


def erm_config(dataset: str, profile: str, data_root: str, seed: int, **overrides) -> dict:
    return erm.default_config(dataset, profile, data_root=data_root, seed=seed, **overrides)


def _run(kind: str, configs: list[dict], workers: int = 1, executor: str = "local", slurm: dict | None = None):
    """Compute the missing runs of `configs` through repro.sweep (resumable, claimed, local or SLURM); return
    their load() rows, one per config."""
    sweep.run(kind, configs, executor=executor, workers=workers, slurm=slurm)
    return runs.results(kind, configs)


def _execute(plan: dict, workers: int, executor: str = "local", slurm: dict | None = None):
    """Compute the plan's missing ERM runs, then its heads; return the ERM table and the heads table, each
    head annotated with its ERM run's identifying config (repro.results.join_erm: erm_dataset, erm_seed, ...)."""
    ermt = _run("erm", plan["erm"], workers, executor, slurm)
    if not plan.get("heads"):
        return ermt, pd.DataFrame()
    heads = _run("heads", plan["heads"], workers, executor, slurm)
    return ermt, results.join_erm(heads, ermt)


def one_class(frame: pd.DataFrame) -> pd.Series:
    """Per row, whether the run or head predicts one class for every test example (test_pred_classes == 1,
    from repro.metrics.summarize): a trivial classifier, marked as such in tables, figures and CSVs."""
    classes = frame["test_pred_classes"] if "test_pred_classes" in frame else pd.Series(np.nan, index=frame.index)
    return classes.eq(1)


def _tidy(frame: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """The columns `cols` of a run table, plus `one_class`, indexed from 0."""
    return frame[cols].assign(one_class=one_class(frame)).reset_index(drop=True)


def _model(models, dataset) -> dict:
    """ERM overrides choosing the section's model (e.g. ResNet-18 / BERT-Tiny in Figures 2 and 3)."""
    return {"model": models[dataset]} if models and dataset in models else {}


def base_configs(datasets, seeds, profile, data_root, model_overrides=None, backbones=""):
    return [erm_config(d, profile, data_root, s, backbones=backbones, **_model(model_overrides, d)) for d, s in _grid(datasets, seeds)]


# ------------------------------------------------------------------ Section 2.1 (Figure 2): neural collapse

def neural_collapse_configs(datasets, seeds, profile, data_root, epoch_factor=2.5, model_overrides=None, backbones=""):
    out = []
    for d, s in _grid(datasets, seeds):
        epochs = int(round(epoch_factor * hparams.erm(d, profile, backbones)["epochs"]))
        out.append(erm_config(d, profile, data_root, s, backbones=backbones, epochs=epochs, nc1_every=1, save_epochs=[epochs],
                              **_model(model_overrides, d)))
    return {"erm": out}


def neural_collapse(datasets, seeds, profile, data_root, epoch_factor=2.5, model_overrides=None, workers=1,
                    executor="local", slurm=None, backbones=""):
    """NC1 of the training features per epoch, and train/held-out NC1 at the end of training."""
    plan = neural_collapse_configs(datasets, seeds, profile, data_root, epoch_factor, model_overrides, backbones=backbones)
    table, _ = _execute(plan, workers, executor, slurm)
    curve, end = [], []
    for _, row in table.iterrows():
        hist = [h for h in row["history"] if "nc1_train" in h]
        curve += [{"dataset": row["dataset"], "seed": row["seed"], "epoch": h["epoch"], "nc1_train": h["nc1_train"]}
                  for h in hist]
        end.append({"dataset": row["dataset"], "seed": row["seed"], "epochs": row["epochs"],
                    "standard_epochs": hparams.erm(row["dataset"], profile, backbones)["epochs"],
                    "nc1_train_first": hist[0]["nc1_train"], "nc1_train_end": hist[-1]["nc1_train"],
                    "nc1_heldout_end": row["nc1_heldout"]})
    return pd.DataFrame(curve), pd.DataFrame(end)


# -------------------------------------------------------------- Section 2.2 (Figure 3, Table 1): margins

def margins_configs(datasets, seeds, profile, data_root, llr_seeds=(1, 2, 3), svm_factor=10.0, svm_points=12,
                    model_overrides=None, backbones=""):
    base = base_configs(datasets, seeds, profile, data_root, model_overrides, backbones=backbones)
    ids = [runs.run_id("erm", c) for c in base]
    heads = [head_config(i, {"method": "llr", "seed": k}, c["dataset"], profile, backbones) for i, c in zip(ids, base)
             for k in llr_seeds]
    svm = [svm_config(i, c["dataset"], profile, svm_factor, svm_points, c["seed"], backbones) for i, c in zip(ids, base)
           if record(c["dataset"]).n_classes == 2]  # the SVM direction of a binary head
    return {"erm": base, "heads": heads, "svm": svm}


def margins(datasets, seeds, profile, data_root, llr_seeds=(1, 2, 3), svm_factor=10.0, svm_points=12, model_overrides=None,
            workers=1, executor="local", slurm=None, backbones=""):
    """Figure 3 (direction error to the hard-margin SVM over steps; column `separable`: whether the seed's
    held-out features are linearly separable, the error NaN where they are not) and Table 1 (margins vs group
    test accuracy)."""
    plan = margins_configs(datasets, seeds, profile, data_root, llr_seeds, svm_factor, svm_points, model_overrides,
                           backbones=backbones)
    ermt, heads = _execute(plan, workers, executor, slurm)
    base = ermt.drop_duplicates("run_id").set_index("run_id")
    paths = []
    for _, row in _run("svm", plan["svm"], workers, executor, slurm).iterrows():
        dataset = base.loc[row["erm"], "dataset"]
        errors = row["direction_error"] if row["separable"] else [np.nan] * len(row["steps"])  # no SVM: no error
        classes = row.get("test_pred_classes")
        classes = classes if isinstance(classes, list) else [np.nan] * len(row["steps"])
        paths += [{"dataset": dataset, "seed": row["seed"], "step": s, "direction_error": e,
                   "standard_steps": row["standard_steps"], "separable": bool(row["separable"]),
                   "n_heldout": row["n_heldout"], "dim": row["dim"], "one_class": c == 1}
                  for s, e, c in zip(row["steps"], errors, classes)]
    points = []
    for (_, row), trivial in zip(heads.iterrows(), one_class(heads)):
        dataset = row["erm_dataset"]
        for k, name in enumerate(data.group_names(dataset)):
            points.append({"dataset": dataset, "erm_seed": row["erm_seed"], "llr_seed": row["spec.seed"], "group": k,
                           "group_name": name, "margin_min": row["margin_min"][k], "margin_avg": row["margin_avg"][k],
                           "test_acc": row.get(f"test_acc_g{k}"), "one_class": bool(trivial)})
    points = pd.DataFrame(points)
    return pd.DataFrame(paths), points, margin_correlations(points)


def margin_correlations(points: pd.DataFrame) -> pd.DataFrame:
    """Table 1: per dataset and group, Pearson r over all (ERM seed, LLR seed) heads between the group's test
    accuracy and its minimum / average margin on the held-out (LLR training) set."""
    rows = []
    for (dataset, group), part in points.groupby(["dataset", "group"], sort=False):
        rows.append({"dataset": dataset, "group": group, "n_points": len(part),
                     "r_min_margin": metrics.pearson(part["margin_min"].astype(float), part["test_acc"]),
                     "r_avg_margin": metrics.pearson(part["margin_avg"].astype(float), part["test_acc"])})
    return pd.DataFrame(rows)


# -------------------------------------------------------------- Section 3.1 (Figure 4): group ratios

def standard_steps(dataset, profile, data_root, train_set="train", backbones="") -> int:
    """SGD steps of a standard ERM run (no subsetting) on the dataset's ERM split (+ the held-out set)."""
    from repro import metadata

    split = metadata.read(dataset, data_root)["split"].to_numpy()
    n_train, n_val = int((split == data.TRAIN).sum()), int((split == data.VAL).sum())
    pct = record(dataset).erm_train_pct  # held out of train (Waterbirds: 20%), else half of val
    n = int(pct / 100 * n_train) if pct is not None else n_train
    if train_set == "train+heldout":
        n = n_train if pct is not None else n_train + n_val // 2
    hp = hparams.erm(dataset, profile, backbones)
    return sgd_steps(n, hp["epochs"], hp["batch_size"])


def group_ratio_configs(datasets, seeds, profile, data_root, ratios=(0.05, 0.1, 0.2, 0.5, 1.0), match_steps=False, backbones=""):
    def steps(d, train_set):
        return {"min_steps": standard_steps(d, profile, data_root, train_set, backbones=backbones)} if match_steps else {}

    split = [erm_config(d, profile, data_root, s, backbones=backbones, group_ratio=r, **steps(d, "train"))
             for d, s in _grid(datasets, seeds) for r in ratios]
    full = [erm_config(d, profile, data_root, s, backbones=backbones, group_ratio=r, train_set="train+heldout", **steps(d, "train+heldout"))
            for d, s in _grid(datasets, seeds) for r in ratios]
    heads = [head_config(runs.run_id("erm", c), {"method": "ratio", "seed": c["seed"], "r": r, "balance": "upsampling",
                                                 "minority": list(record(c["dataset"]).paper_minority)},
                         c["dataset"], profile, backbones) for c in split for r in ratios]
    return {"erm": split + full, "heads": heads}


def group_ratio(datasets, seeds, profile, data_root, ratios=(0.05, 0.1, 0.2, 0.5, 1.0), match_steps=False, workers=1,
                executor="local", slurm=None, backbones=""):
    """Figure 4: test WGA of LLR (ERM ratio x held-out ratio) and of ERM trained on 100% at each ratio.

    match_steps: ERM on a group-ratio subset trains at least as many SGD steps as a standard ERM run (the
    CPU profiles, whose small subsets would otherwise take a few SGD steps in their few epochs; the paper keeps
    the epochs)."""
    plan = group_ratio_configs(datasets, seeds, profile, data_root, ratios, match_steps, backbones=backbones)
    ermt, heads = _execute(plan, workers, executor, slurm)
    erm_rows = _tidy(ermt[ermt["train_set"] == "train+heldout"].rename(columns={"group_ratio": "ratio"}),
                     ["dataset", "seed", "ratio", "test_acc_wg", "test_acc_avg"])
    llr_rows = _tidy(heads.rename(columns={"erm_dataset": "dataset", "erm_seed": "seed", "erm_group_ratio": "erm_ratio",
                                           "spec.r": "llr_ratio"}),
                     ["dataset", "seed", "erm_ratio", "llr_ratio", "test_acc_wg", "test_acc_avg"])
    return erm_rows, llr_rows, ratio_correlations(erm_rows, llr_rows)


def ratio_correlations(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> pd.DataFrame:
    """Per dataset, Pearson r between seed-mean WGA of ERM trained at ratio r and of LLR retrained at
    held-out ratio r, pooled over every ERM-ratio line (5 x 5 points for the paper's grid)."""
    erm_mean = erm_rows.groupby(["dataset", "ratio"])["test_acc_wg"].mean()
    llr_mean = llr_rows.groupby(["dataset", "erm_ratio", "llr_ratio"])["test_acc_wg"].mean().reset_index()
    rows = []
    for dataset, part in llr_mean.groupby("dataset", sort=False):
        x = erm_mean.loc[dataset].loc[part["llr_ratio"]].to_numpy()
        rows.append({"dataset": dataset, "n_points": len(part), "pearson_r": metrics.pearson(x, part["test_acc_wg"])})
    return pd.DataFrame(rows)


# -------------------------------------------------------- Section 3.2 (Figure 5): class balancing and AFR

def class_balance_configs(datasets, seeds, profile, data_root, gammas=(0.0, 1.0, 2.0, 4.0, 8.0), backbones=""):
    full = [erm_config(d, profile, data_root, s, backbones=backbones, balance=b, train_set="train+heldout")
            for d, s in _grid(datasets, seeds) for b in BALANCES]
    split = [erm_config(d, profile, data_root, s, backbones=backbones, balance=b) for d, s in _grid(datasets, seeds) for b in BALANCES]
    heads = []
    for c in split:
        rid = runs.run_id("erm", c)
        heads.append(head_config(rid, {"method": "llr", "seed": c["seed"]}, c["dataset"], profile, backbones))
        heads += [head_config(rid, {"method": "cbllr", "seed": c["seed"], "balance": b}, c["dataset"], profile,
                              backbones) for b in BALANCES[1:]]
        if c["balance"] == "none":
            heads += [head_config(rid, {"method": "afr", "seed": c["seed"], "gamma": float(g), "l2": 0.0},
                                  c["dataset"], profile, backbones) for g in gammas]
    return {"erm": full + split, "heads": heads}


def class_balance(datasets, seeds, profile, data_root, gammas=(0.0, 1.0, 2.0, 4.0, 8.0), workers=1, executor="local",
                  slurm=None, backbones=""):
    """Figure 5: ERM (100%) and LLR (split) under each class-balancing method; AFR over gamma."""
    plan = class_balance_configs(datasets, seeds, profile, data_root, gammas, backbones=backbones)
    ermt, heads = _execute(plan, workers, executor, slurm)
    erm_rows = _tidy(ermt[ermt["train_set"] == "train+heldout"], ["dataset", "seed", "balance", "test_acc_wg",
                                                                 "test_acc_avg"])
    heads = heads.rename(columns={"erm_dataset": "dataset", "erm_seed": "seed"})
    heads["llr_balance"] = np.where(heads["spec.method"] == "cbllr", heads.get("spec.balance"), "none")
    cols = ["dataset", "seed", "erm_balance", "llr_balance", "test_acc_wg", "test_acc_avg"]
    llr_rows = _tidy(heads[heads["spec.method"].isin(["llr", "cbllr"])], cols)
    afr_rows = _tidy(heads[heads["spec.method"] == "afr"].rename(columns={"spec.gamma": "gamma"}),
                     ["dataset", "seed", "gamma", "test_acc_wg", "test_acc_avg"])
    return erm_rows, llr_rows, afr_rows


def afr_group_mass(datasets, seeds, profile, data_root, gammas, backbones="") -> pd.DataFrame:
    """Share of AFR's total weight that each group of the held-out set receives, per gamma (from the cached
    ERM features of the base runs), next to the group's share of examples (gamma = None)."""
    from repro import features, last_layer

    rows = []
    for c in base_configs(datasets, seeds, profile, data_root, backbones=backbones):
        f = features.load(runs.run_dir("erm", runs.run_id("erm", c)))
        y, g = f["y_heldout"].numpy(), f["g_heldout"].numpy()
        p = last_layer.p_true(f["features_heldout"], y, f["head_weight"], f["head_bias"])
        names = data.group_names(c["dataset"])
        for gamma in [None, *gammas]:
            w = np.ones(len(y)) / len(y) if gamma is None else last_layer.afr_weights(p, y, gamma)
            mass = np.bincount(g, weights=w, minlength=len(names))
            rows += [{"dataset": c["dataset"], "seed": c["seed"], "gamma": gamma, "group": k, "group_name": n,
                      "weight_share": mass[k]} for k, n in enumerate(names)]
    return pd.DataFrame(rows)


def heldout_class_shares(datasets, seeds, data_root) -> pd.DataFrame:
    """Each class's share of the held-out set (repro.split.heldout) per dataset and seed, from the metadata:
    columns dataset, seed, class, share (for the page's sentence on one-class heads)."""
    from types import SimpleNamespace

    from repro import metadata, split

    rows = []
    for d in datasets:
        frame = metadata.read(d, data_root)
        y = frame["y"].to_numpy()
        for s in seeds:
            _, held, _ = split.heldout(SimpleNamespace(name=d, split=frame["split"].to_numpy()), s)
            counts = np.bincount(y[held], minlength=record(d).n_classes)
            rows += [{"dataset": d, "seed": s, "class": k, "share": c / counts.sum()} for k, c in enumerate(counts)]
    return pd.DataFrame(rows)


# ---------------------------------------------------- Appendix A (Figures 6 and 7): explicit group balancing

DFR_L1 = "DFR (Kirichenko et al.: L1 logistic regression)"  # Figure 7's name for repro.dfr_l1


def appendix_a_configs(datasets, seeds, profile, data_root, dfr_resamples=20, backbones=""):
    # Figure 6 reads the test split's WGA per epoch: the paper profile evaluates only that split before the last
    # epoch (the twin profiles evaluate every split, as their runs did before erm's eval_splits existed)
    per_epoch = {"eval_splits": ["test"]} if profile == "paper" else {}
    dynamics = [erm_config(d, profile, data_root, s, backbones=backbones, balance=b, balance_by="group",
                           train_set="train+heldout", eval_every=1, **per_epoch)
                for d, s in _grid(datasets, seeds) for b in BALANCES[1:]]
    class_full = [erm_config(d, profile, data_root, s, backbones=backbones, balance=b, train_set="train+heldout")
                  for d, s in _grid(datasets, seeds) for b in BALANCES[1:]]
    class_split = [erm_config(d, profile, data_root, s, backbones=backbones, balance=b) for d, s in _grid(datasets, seeds) for b in BALANCES[1:]]
    heads = [head_config(runs.run_id("erm", c), {"method": "dfr", "seed": c["seed"], "balance": c["balance"]},
                         c["dataset"], profile, backbones) for c in class_split]
    # Kirichenko et al.'s own DFR (repro.dfr_l1) on the same ERM features, beside the paper's SGD DFR
    heads += [head_config(runs.run_id("erm", c), {"method": "dfr_l1", "seed": c["seed"], "n_resamples": dfr_resamples},
                          c["dataset"], profile, backbones) for c in class_split]
    return {"erm": dynamics + class_full + class_split, "heads": heads}


def appendix_a(datasets, seeds, profile, data_root, dfr_resamples=20, workers=1, executor="local", slurm=None,
               backbones=""):
    """Figure 6 (test WGA over epochs of group-balanced ERM) and Figure 7 (class-balanced ERM vs DFR: the paper's
    SGD DFR group-balanced by each method, and Kirichenko et al.'s DFR, both after ERM class-balanced by the
    method of the x-axis). Kirichenko et al.'s rows also carry the groups missing from a tuning half and the
    examples per group of the final fit's resamples (repro.dfr_l1); the other rows leave them empty."""
    ermt, heads = _execute(appendix_a_configs(datasets, seeds, profile, data_root, dfr_resamples, backbones=backbones),
                           workers, executor, slurm)
    dfr, dfr_l1 = heads[heads["spec.method"] == "dfr"], heads[heads["spec.method"] == "dfr_l1"]
    dyn = ermt[ermt["balance_by"] == "group"]
    curves = pd.DataFrame([{"dataset": r["dataset"], "seed": r["seed"], "balance": r["balance"], "epoch": h["epoch"],
                            "test_acc_wg": h["test_acc_wg"], "one_class": h.get("test_pred_classes") == 1}
                           for _, r in dyn.iterrows() for h in r["history"] if "test_acc_wg" in h])
    cb = ermt[(ermt["balance_by"] == "class") & (ermt["train_set"] == "train+heldout")]
    cols = ["dataset", "seed", "balance", "method", "test_acc_wg"]
    dfr_cols = [c for c in ("dfr_tuning_groups_missing", "dfr_group_counts") if c in dfr_l1]
    bars = pd.concat([
        _tidy(cb.assign(method="class-balanced ERM"), cols),
        _tidy(dfr.rename(columns={"erm_dataset": "dataset", "erm_seed": "seed", "spec.balance": "balance"})
              .assign(method="group-balanced DFR"), cols),
        _tidy(dfr_l1.rename(columns={"erm_dataset": "dataset", "erm_seed": "seed", "erm_balance": "balance"})
              .assign(method=DFR_L1), cols + dfr_cols)], ignore_index=True)
    return curves, bars


# ---------------------------------------------- the real companions (repro.datasets.COMPANIONS), one page

def companions_configs(datasets, seeds, profile, data_root, epoch_factor=2.5, ratios=(0.05, 0.1, 0.2, 0.5, 1.0),
                       match_steps=False, gammas=(0.0, 1.0, 2.0, 4.0, 8.0), dfr_resamples=20, backbones=""):
    """Every run of the companions page: the runs of neural collapse, group ratio, class balance and Appendix A
    on the companion datasets (the page calls those four sections' functions)."""
    plans = [neural_collapse_configs(datasets, seeds, profile, data_root, epoch_factor, backbones=backbones),
             group_ratio_configs(datasets, seeds, profile, data_root, ratios, match_steps, backbones=backbones),
             class_balance_configs(datasets, seeds, profile, data_root, gammas, backbones=backbones),
             appendix_a_configs(datasets, seeds, profile, data_root, dfr_resamples, backbones=backbones)]
    out: dict[str, list[dict]] = {}
    for plan in plans:
        for kind, configs in plan.items():
            out.setdefault(kind, []).extend(configs)
    return out


@dataclass(frozen=True)
class Section:
    """A paper section: the notebook that shows it, the template parameters its plan is made of, the function
    that lists its runs (called with `profile` and those parameters as keywords) and the one that computes them."""
    notebook: str
    params: tuple[str, ...]
    configs: Callable[..., dict]
    compute: Callable | None


COMMON = ("datasets", "seeds", "data_root", "backbones")
SECTIONS = {s.notebook: s for s in [
    Section("neural_collapse", COMMON + ("epoch_factor", "model_overrides"), neural_collapse_configs, neural_collapse),
    Section("margins", COMMON + ("llr_seeds", "svm_factor", "svm_points", "model_overrides"), margins_configs, margins),
    Section("group_ratio", COMMON + ("ratios", "match_steps"), group_ratio_configs, group_ratio),
    Section("class_balance", COMMON + ("gammas",), class_balance_configs, class_balance),
    Section("appendix_a", COMMON + ("dfr_resamples",), appendix_a_configs, appendix_a),
    Section("companions", COMMON + ("epoch_factor", "ratios", "match_steps", "gammas", "dfr_resamples"),
            companions_configs, None),  # the page computes through the four sections above
]}


def minority(datasets) -> dict:
    """Minority groups of each dataset as the paper's group-ratio code names them (for CelebA: blond/male)."""
    return {d: list(record(d).paper_minority) for d in datasets}


def model_names(datasets, profile, model_overrides=None, backbones="") -> str:
    """'Dataset (model), ...' for the caption of a figure."""
    from repro.datasets import display

    return ", ".join(f"{display(d)} ({(model_overrides or {}).get(d, hparams.erm(d, profile, backbones)['model'])})" for d in datasets)
