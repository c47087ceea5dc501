"""Figures of the book. Each function takes tidy tables (one row per run or per seed) and returns a
matplotlib Figure; means and standard deviations over seeds are computed here (ddof 0, as the paper's code).
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

GROUP_MARKERS = ["o", "s", "^", "D", "v", "P"]
PALETTE = plt.get_cmap("tab10")


def _boundary(ax, w, b, label, colour, lim=2.5):
    xs = np.linspace(-lim, lim, 50)
    if abs(w[1]) > 1e-12:
        ax.plot(xs, -(w[0] * xs + b) / w[1], color=colour, lw=2, label=label)
    else:
        ax.axvline(-b / w[0], color=colour, lw=2, label=label)


def _scatter_groups(ax, features, y, a, alpha=0.5):
    for k in (0, 1):
        for s in (0, 1):
            m = (y == k) & (a == s)
            if m.any():
                ax.scatter(features[m, 0], features[m, 1], s=12, alpha=alpha, color=PALETTE(k),
                           marker=GROUP_MARKERS[s], label=f"class {k}, spurious {s} (n={m.sum()})")


def figure1(train, collapsed, heldout, mean_rule, svm_rule) -> plt.Figure:
    """Three panels: training features; collapsed features with the class-mean rule; held-out with the SVM.

    train, collapsed, heldout: (features (n,2), y, a); mean_rule, svm_rule: (w, b)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 4.3), sharex=True, sharey=True)
    titles = ["(a) training features", "(b) collapsed to class means", "(c) held-out features, max-margin"]
    for ax, (features, y, a), title in zip(axes, (train, collapsed, heldout), titles):
        _scatter_groups(ax, features, y, a, alpha=0.9 if features is collapsed[0] else 0.4)
        ax.set_title(title)
        ax.set_xlabel("core feature")
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
    axes[0].set_ylabel("spurious feature")
    _boundary(axes[1], *mean_rule, "class-mean classifier", "black")
    _boundary(axes[2], *svm_rule, "SVM", "black")
    for ax in axes:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def mean_std(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, std (ddof 0) and count of `value` over the rows of each `by` group (i.e. over seeds)."""
    out = df.groupby(by, dropna=False)[value].agg(mean="mean", std=lambda v: float(np.std(v)), n="count")
    return out.reset_index()


def lines(ax, df: pd.DataFrame, x: str, value: str, hue: str | None = None, label_fmt: str = "{}",
          marker="o", logx=False, **kw):
    """Mean line with a ±std band over seeds, one line per `hue` value."""
    groups = [(None, df)] if hue is None else list(df.groupby(hue, sort=True))
    for i, (key, part) in enumerate(groups):
        stats = mean_std(part, [x], value).sort_values(x)
        colour = kw.pop("color", None) or PALETTE(i)
        ax.plot(stats[x], stats["mean"], marker=marker, color=colour, label=label_fmt.format(key), **kw)
        ax.fill_between(stats[x], stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour, alpha=0.2)
    if logx:
        ax.set_xscale("log")
    return ax


def grid(n: int, ncols: int = 2, size=(5.2, 3.6)):
    """A figure with n panels in rows of `ncols`; unused panels are hidden."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size[0] * ncols, size[1] * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n])


def _panels(df: pd.DataFrame, ncols: int = 2):
    datasets = list(dict.fromkeys(df["dataset"]))
    fig, axes = grid(len(datasets), ncols)
    return fig, list(zip(datasets, axes))


def _label(ax, title: str, xlabel: str | None, ylabel: str, fontsize: int = 8, ylim=None) -> None:
    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    ax.legend(fontsize=fontsize)


def figure2(curve: pd.DataFrame, end: pd.DataFrame) -> plt.Figure:
    """NC1 of training features over epochs (mean ± std over seeds), the standard number of epochs dashed,
    and the mean held-out NC1 at the end of training as a star."""
    fig, panels = _panels(curve)
    for dataset, ax in panels:
        lines(ax, curve[curve["dataset"] == dataset], "epoch", "nc1_train", label_fmt="train NC1", marker=".")
        e = end[end["dataset"] == dataset]
        ax.axvline(e["standard_epochs"].iloc[0], color="grey", ls="--", label="standard epochs")
        ax.plot(e["epochs"].iloc[0], e["nc1_heldout_end"].mean(), "*", ms=14, color="C3", label="held-out NC1 (end)")
        ax.set_yscale("log")
        _label(ax, dataset, "epoch", "NC1")
    fig.tight_layout()
    return fig


def figure3(paths: pd.DataFrame) -> plt.Figure:
    """Directional error between the LLR head and the SVM over SGD steps (log axis), mean ± std over seeds."""
    fig, panels = _panels(paths, ncols=3)
    for dataset, ax in panels:
        part = paths[paths["dataset"] == dataset]
        lines(ax, part, "step", "direction_error", label_fmt="LLR vs SVM", logx=True, marker=".")
        ax.axvline(part["standard_steps"].iloc[0], color="grey", ls="--", label="standard steps")
        _label(ax, dataset, "SGD steps", "directional error")
    fig.tight_layout()
    return fig


def figure4(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame, corr: pd.DataFrame) -> plt.Figure:
    """Test WGA over held-out group ratio: one LLR line per ERM training ratio, ERM (100% data) as triangles."""
    fig, panels = _panels(llr_rows)
    r = corr.set_index("dataset")["pearson_r"]
    for dataset, ax in panels:
        lines(ax, llr_rows[llr_rows["dataset"] == dataset], "llr_ratio", "test_acc_wg", hue="erm_ratio",
              label_fmt="LLR after ERM at ratio {}", logx=True)
        stats = mean_std(erm_rows[erm_rows["dataset"] == dataset], ["ratio"], "test_acc_wg")
        ax.errorbar(stats["ratio"], stats["mean"], stats["std"], fmt="^", color="grey", ms=8, label="ERM (100% data)")
        _label(ax, f"{dataset} (Pearson r = {r.get(dataset, float('nan')):.3f})",
               "group ratio (held-out set for LLR, training set for ERM)", "test WGA", fontsize=7)
    fig.tight_layout()
    return fig


def bars(ax, df: pd.DataFrame, group: str, hue: str, value: str = "test_acc_wg", order=None, hue_order=None):
    """Grouped bars of the seed mean with ± std error bars."""
    stats = mean_std(df, [group, hue], value)
    order = order or list(dict.fromkeys(stats[group]))
    hue_order = hue_order or list(dict.fromkeys(stats[hue]))
    width = 0.8 / len(hue_order)
    for j, h in enumerate(hue_order):
        part = stats[stats[hue] == h].set_index(group).reindex(order)
        xs = np.arange(len(order)) + (j - (len(hue_order) - 1) / 2) * width
        colour = "grey" if str(h).startswith("ERM") else PALETTE(j)
        ax.bar(xs, part["mean"], width, yerr=part["std"], color=colour, label=str(h), capsize=2)
    ax.set_xticks(np.arange(len(order)), order)
    return ax


def figure5(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> plt.Figure:
    """Per dataset and ERM class-balancing method: ERM on 100% (grey) and LLR under each balancing method."""
    both = pd.concat([llr_rows.assign(kind="LLR: " + llr_rows["llr_balance"]),
                      erm_rows.rename(columns={"balance": "erm_balance"}).assign(kind="ERM (100% data)")])
    fig, panels = _panels(both)
    kinds = ["ERM (100% data)"] + [f"LLR: {b}" for b in ("none", "subsetting", "upsampling", "upweighting")]
    for dataset, ax in panels:
        bars(ax, both[both["dataset"] == dataset], "erm_balance", "kind",
             order=["none", "subsetting", "upsampling", "upweighting"], hue_order=kinds)
        _label(ax, dataset, "class balancing of ERM", "test WGA", fontsize=7, ylim=(0, 1))
    fig.tight_layout()
    return fig


def figure_afr(afr_rows: pd.DataFrame, mass: pd.DataFrame, minority: dict) -> plt.Figure:
    """AFR: test WGA over gamma (left); minority groups' share of the held-out weight over gamma (right)."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    lines(left, afr_rows, "gamma", "test_acc_wg", hue="dataset")
    left.set_xlabel("AFR gamma")
    left.set_ylabel("test WGA")
    left.legend(fontsize=8)
    share = mass.assign(minority=[g in minority[d] for d, g in zip(mass["dataset"], mass["group"])])
    share = share[share["minority"]].groupby(["dataset", "seed", "gamma"], dropna=False)["weight_share"].sum().reset_index()
    base = share[share["gamma"].isna()].groupby("dataset")["weight_share"].mean()
    lines(right, share.dropna(subset=["gamma"]), "gamma", "weight_share", hue="dataset")
    for i, (dataset, value) in enumerate(base.items()):
        right.axhline(value, color=PALETTE(i), ls=":", lw=1)
    right.set_xlabel("AFR gamma (dotted: share of examples)")
    right.set_ylabel("minority groups' weight share")
    fig.tight_layout()
    return fig


def figure6(curves: pd.DataFrame) -> plt.Figure:
    """Test WGA over ERM epochs for group balancing by subsetting, upsampling and upweighting."""
    fig, panels = _panels(curves)
    for dataset, ax in panels:
        lines(ax, curves[curves["dataset"] == dataset], "epoch", "test_acc_wg", hue="balance")
        _label(ax, dataset, "epoch", "test WGA")
    fig.tight_layout()
    return fig


def figure7(bars_df: pd.DataFrame) -> plt.Figure:
    """Class-balanced ERM against group-balanced DFR, per balancing method."""
    fig, panels = _panels(bars_df)
    for dataset, ax in panels:
        bars(ax, bars_df[bars_df["dataset"] == dataset], "balance", "method",
             order=["subsetting", "upsampling", "upweighting"], hue_order=["class-balanced ERM", "group-balanced DFR"])
        _label(ax, dataset, None, "test WGA", ylim=(0, 1))
    fig.tight_layout()
    return fig
