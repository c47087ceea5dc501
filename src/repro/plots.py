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
