"""Figures of the book, drawn at the size the page shows them: the text column is 772 px wide, so every figure
is COLUMN_INCHES x DPI = 772 px wide, one or two panels per row, text of at least MIN_POINTS, and one legend per
figure outside the panels; datasets are named as the paper names them (repro.datasets.display), and on the
synthetic twins (`twin=True`) every dataset in a title reads "<Dataset> (twin)". Each function takes tidy
tables (one row per run or per seed) and returns a `Plot`: the figure and what its caption must say (which
datasets are drawn, over which seeds, what the marks mean). `one_column` redraws a figure for a phone.
Means and standard deviations over seeds are computed here (ddof 0, as the paper's code).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullFormatter, NullLocator

from repro import datasets as registry
from repro.balance import BALANCES, METHODS

COLUMN_PX = 772  # width of the book's text column (sphinx-book-theme) in CSS pixels
DPI = 100
COLUMN_INCHES = COLUMN_PX / DPI
MIN_POINTS = 9  # smallest font on any figure, at display size
SMALL, NORMAL = 9, 10  # tick labels and legends; axis labels and titles

# One colour per method across Figures 4-7: ERM grey; LLR, DFR and group-balanced ERM by balancing method.
ERM_COLOUR = "0.45"
BALANCE_COLOURS = {"none": "#1f77b4", "subsetting": "#ff7f0e", "upsampling": "#2ca02c", "upweighting": "#d62728"}
DFR_L1_COLOUR = "#17becf"  # Kirichenko et al.'s DFR (repro.dfr_l1), Figure 7
DATASET_COLOURS = {"waterbirds": "#9467bd", "celeba": "#8c564b", "civilcomments": "#e377c2", "multinli": "#bcbd22"}
RATIO_CMAP = "viridis"
GROUP_MARKERS = ["o", "s"]


@dataclass(frozen=True)
class Plot:
    """A drawn figure and the facts its caption states."""
    figure: Figure
    shows: str  # what the marks of the figure are, one or two sentences
    datasets: tuple = ()  # datasets drawn, in panel order
    seeds: tuple = ()  # seeds averaged (empty: the figure shows no seed statistics)
    spread: str = ""  # "bands" or "error bars" when a ± std over more than one seed is drawn, else ""


def new_figure(n_panels: int, ncols: int = 2, panel_height: float = 2.5, legend_rows: int = 0):
    """A column-wide figure with n panels in rows of `ncols` (1 or 2); room at the top for a shared legend."""
    nrows = int(np.ceil(n_panels / ncols))
    fig = Figure(figsize=(COLUMN_INCHES, panel_height * nrows + 0.22 * legend_rows + 0.1), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False).flat
    axes = list(axes)
    for ax in axes[n_panels:]:
        ax.set_visible(False)
    for ax in axes[:n_panels]:
        ax.tick_params(labelsize=SMALL)
    return fig, axes[:n_panels], axes[n_panels:]


NARROW_PX = 368  # the text column on a 400-px phone screen: book/_static shows the one-column drawing there


def one_column(fig: Figure) -> Figure:
    """`fig` redrawn for a narrow screen, in place (save its column-wide PNG first): its visible panels one per
    row, NARROW_PX wide at twice the dpi (sharp on phones), each as tall as before, the shared legend in one or
    two columns. Fonts keep their sizes in points, so they keep MIN_POINTS at NARROW_PX."""
    shown = [ax for ax in fig.axes if ax.get_visible()]
    old_rows = shown[0].get_subplotspec().get_gridspec().nrows
    panel = fig.get_figheight() / old_rows
    for ax in [ax for ax in fig.axes if not ax.get_visible()]:
        fig.delaxes(ax)
    grid = fig.add_gridspec(len(shown), 1)
    for i, ax in enumerate(shown):
        ax.set_subplotspec(grid[i])
    extra = 0
    for legend in list(fig.legends):  # a legend's box is laid out when it is made: make it anew
        labels = [t.get_text() for t in legend.get_texts()]
        ncols = 1 if max(map(len, labels)) > 20 else 2
        extra += int(np.ceil(len(labels) / ncols)) - int(np.ceil(len(labels) / legend._ncols))
        legend.remove()
        shared_legend(fig, legend.legend_handles, labels, ncols=ncols)
    fig.set_size_inches(NARROW_PX / DPI, panel * len(shown) + 0.22 * max(extra, 0))
    fig.set_dpi(2 * DPI)
    return fig


def shared_legend(fig: Figure, handles, labels=None, ncols: int = 3) -> None:
    """One legend for the whole figure, above the panels (never on the data)."""
    labels = labels if labels is not None else [h.get_label() for h in handles]
    fig.legend(handles, labels, loc="outside upper center", ncols=min(ncols, len(handles)), fontsize=SMALL,
               frameon=False)


def _label(ax, title: str, xlabel: str | None, ylabel: str | None, ylim=None) -> None:
    ax.set_title(title, fontsize=NORMAL)
    if xlabel:
        ax.set_xlabel(xlabel, fontsize=NORMAL)
    if ylabel:
        ax.set_ylabel(ylabel, fontsize=NORMAL)
    if ylim:
        ax.set_ylim(*ylim)


def ticks_at(ax, values, log: bool = False) -> None:
    """x ticks exactly at the grid values drawn (a log axis would otherwise label 2x10^-1, 3x10^-1, ...)."""
    if log:
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
    values = sorted(set(float(v) for v in values))
    ax.set_xticks(values, [f"{v:g}" for v in values])


# Mantissas of the labelled ticks of a log axis, coarsest first: the first that labels MIN_LOG_LABELS ticks wins.
LOG_SUBS = ((1.0,), (1.0, 2.0, 5.0), (1.0, 1.5, 2.0, 3.0, 5.0, 7.0), (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0),
            (1.0, 1.2, 1.4, 1.6, 1.8, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0))
MIN_LOG_LABELS = 4


def log_ticks(lo: float, hi: float) -> list[float]:
    """Labelled ticks of a log axis over [lo, hi]: 1, 10, ... when they give MIN_LOG_LABELS, else 1-2-5 steps,
    else finer mantissas (a panel spanning less than a decade still reads 0.35, 0.4, 0.45, ...)."""
    lo, hi = sorted((lo, hi))
    decades = range(int(np.floor(np.log10(lo))) - 1, int(np.ceil(np.log10(hi))) + 1)
    for subs in LOG_SUBS:
        ticks = [float(f"{m * 10.0 ** k:.6g}") for k in decades for m in subs]
        ticks = [t for t in ticks if lo <= t <= hi]
        if len(ticks) >= MIN_LOG_LABELS:
            return ticks
    return ticks


def log_y(ax) -> None:
    """A log y-axis over the data drawn so far, with at least MIN_LOG_LABELS labelled ticks in plain numbers
    (log_ticks) and unlabelled minor ticks; call it after the data and the margins are set."""
    ax.set_yscale("log")
    ax.yaxis.set_major_locator(FixedLocator(log_ticks(*ax.get_ylim())))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_locator(LogLocator(subs="all"))
    ax.yaxis.set_minor_formatter(NullFormatter())


WGA_LIM = (-0.03, 1.03)


def mean_std(df: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, std (ddof 0) and count of `value` over the rows of each `by` group (i.e. over seeds)."""
    out = df.groupby(by, dropna=False)[value].agg(mean="mean", std=lambda v: float(np.std(v)), n="count")
    return out.reset_index()


def _seeds(*frames) -> tuple:
    return tuple(sorted({int(s) for f in frames if "seed" in f for s in f["seed"].dropna()}))


def _spread(kind: str, *frames) -> str:
    return kind if len(_seeds(*frames)) > 1 else ""


ONE_CLASS = "one class"  # gid of the marks drawn on values of runs or heads that predict one class
ONE_CLASS_MARK = {"marker": "x", "ms": 7, "mew": 1.8, "color": "black", "ls": ""}


def _trivial(df: pd.DataFrame) -> pd.Series:
    """Per row, whether it is a run or head predicting one class for every test example (column one_class)."""
    return df["one_class"].fillna(False).astype(bool) if "one_class" in df else pd.Series(False, index=df.index)


def one_class_handle(*frames) -> list:
    """The legend entry of the one-class marks, if any frame has a one-class row (else none)."""
    if not any(_trivial(f).any() for f in frames):
        return []
    return [Line2D([], [], **ONE_CLASS_MARK, label="×, hatched: predicts one class")]


def one_class_said(*frames) -> str:
    """The caption's sentence on the one-class marks, when the figure draws some."""
    return (" A black × (and hatching, on bars) marks a value where at least one seed's run or head predicts one "
            "class for every test example.") if one_class_handle(*frames) else ""


def line(ax, df: pd.DataFrame, x: str, value: str, colour, label: str, marker="o", **kw) -> Line2D:
    """Seed-mean line of `value` over `x`, with a ± std band when there is more than one seed, and a black ×
    on every mean that some one-class run or head enters."""
    stats = mean_std(df, [x], value).sort_values(x)
    (handle,) = ax.plot(stats[x], stats["mean"], marker=marker, ms=4, color=colour, label=label, **kw)
    if stats["n"].max() > 1:
        ax.fill_between(stats[x], stats["mean"] - stats["std"], stats["mean"] + stats["std"], color=colour, alpha=0.2,
                        lw=0)
    mark_one_class(ax, df, x, value)
    return handle


def mark_one_class(ax, df: pd.DataFrame, x: str, value: str) -> None:
    """A black × on the seed mean of `value` at every x that a one-class run or head enters."""
    trivial = set(df.loc[_trivial(df), x])
    if trivial:
        marked = mean_std(df[df[x].isin(trivial)], [x], value)
        ax.plot(marked[x], marked["mean"], **ONE_CLASS_MARK, clip_on=False, zorder=5, gid=ONE_CLASS)


def bars(ax, df: pd.DataFrame, group: str, hue: str, order, hue_order, colours, value: str = "test_acc_wg"):
    """Grouped bars of the seed mean, with ± std error bars when there is more than one seed; a bar that some
    one-class run or head enters is hatched and carries a black × (visible even at height 0).

    colours: function (hue value, group value) -> colour."""
    stats = mean_std(df, [group, hue], value)
    trivial = df.assign(_t=_trivial(df)).groupby([group, hue])["_t"].any()
    width = 0.8 / len(hue_order)
    for j, h in enumerate(hue_order):
        part = stats[stats[hue] == h].set_index(group).reindex(order)
        xs = np.arange(len(order)) + (j - (len(hue_order) - 1) / 2) * width
        err = part["std"] if part["n"].max() > 1 else None
        fill = [colours(h, g) for g in order]  # edges in the fill colour: a bar at 0 still shows as a line
        drawn = ax.bar(xs, part["mean"], width, yerr=err, color=fill, edgecolor=fill, linewidth=1.5, capsize=2)
        for patch, x, g, mean in zip(drawn.patches, xs, order, part["mean"]):
            if trivial.get((g, h), False):
                patch.set_hatch("///"), patch.set_edgecolor("black"), patch.set_gid(ONE_CLASS)
                ax.plot([x], [mean], **ONE_CLASS_MARK, clip_on=False, zorder=5, gid=ONE_CLASS)
    ax.set_xticks(np.arange(len(order)), order)


def _datasets(df: pd.DataFrame) -> tuple:
    return tuple(dict.fromkeys(df["dataset"]))


def _name(dataset: str, twin: bool) -> str:
    """A panel's dataset as its title names it: "Waterbirds (twin)" when the data are a synthetic twin."""
    name = registry.display(dataset)
    return f"{name} (twin)" if twin else name


# ------------------------------------------------------------------------------------------------ Figure 1

def _boundary(ax, w, b, colour, lim=2.5) -> Line2D:
    xs = np.linspace(-lim, lim, 50)
    if abs(w[1]) > 1e-12:
        return ax.plot(xs, -(w[0] * xs + b) / w[1], color=colour, lw=2)[0]
    return ax.axvline(-b / w[0], color=colour, lw=2)


def figure1(train, collapsed, heldout, mean_rule, svm_rule) -> Plot:
    """Three panels: training features; collapsed features with the class-mean rule; held-out with the SVM.

    train, collapsed, heldout: (features (n,2), y, a); mean_rule, svm_rule: (w, b)."""
    fig, axes, spare = new_figure(3, panel_height=2.9)
    titles = ["(a) training features", "(b) collapsed to class means", "(c) held-out features"]
    colours = {0: "#1f77b4", 1: "#ff7f0e"}
    for ax, (features, y, a), title in zip(axes, (train, collapsed, heldout), titles):
        for k in (0, 1):
            for s in (0, 1):
                m = (y == k) & (a == s)
                ax.scatter(features[m, 0], features[m, 1], s=10, alpha=0.9 if features is collapsed[0] else 0.4,
                           color=colours[k], marker=GROUP_MARKERS[s])
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_xlim(-2.5, 2.5)
        ax.set_ylim(-2.5, 2.5)
        _label(ax, title, "core feature", "spurious feature")
    mean_line = _boundary(axes[1], *mean_rule, "black")
    svm_line = _boundary(axes[2], *svm_rule, "#d62728")
    handles = [Line2D([], [], ls="", marker=GROUP_MARKERS[s], color=colours[k], label=f"class {k}, spurious {s}")
               for k in (0, 1) for s in (0, 1)]
    handles += [Line2D([], [], color=mean_line.get_color(), lw=2, label="class-mean classifier (b)"),
                Line2D([], [], color=svm_line.get_color(), lw=2, label="max-margin (SVM) classifier (c)")]
    spare[0].set_axis_off()
    spare[0].set_visible(True)
    spare[0].legend(handles=handles, loc="center", fontsize=SMALL, frameon=False)
    counts = ", ".join(f"{name} {len(part[1])} points" for name, part in (("training", train), ("held-out", heldout)))
    shows = ("Points of the two-feature toy problem, coloured by class and marked by the spurious attribute "
             f"({counts}). Panel (b) moves every training point onto its class mean and draws the classifier "
             "those means give (black); panel (c) draws the max-margin classifier of the uncollapsed held-out "
             "points (red).")
    return Plot(fig, shows)


# ------------------------------------------------------------------------------------------------ Figure 2

def figure2(curve: pd.DataFrame, end: pd.DataFrame, twin: bool = False) -> Plot:
    """NC1 of training features over epochs, the standard number of epochs dashed, and the mean held-out NC1
    at the end of training as a star; each panel's x-axis spans its own dataset's epochs."""
    datasets = _datasets(curve)
    fig, axes, _ = new_figure(len(datasets), legend_rows=1)
    for dataset, ax in zip(datasets, axes):
        part = curve[curve["dataset"] == dataset]
        h_train = line(ax, part, "epoch", "nc1_train", "#1f77b4", "training NC1", marker=".")
        e = end[end["dataset"] == dataset]
        h_std = ax.axvline(e["standard_epochs"].iloc[0], color="grey", ls="--")
        (h_held,) = ax.plot(e["epochs"].iloc[0], e["nc1_heldout_end"].mean(), "*", ms=12, color="#d62728",
                            clip_on=False)
        ax.margins(x=0.06, y=0.12)
        log_y(ax)
        if part["epoch"].nunique() <= 12:
            ticks_at(ax, part["epoch"])
        _label(ax, _name(dataset, twin), "epoch", "NC1")
    shared_legend(fig, [h_train, h_std, h_held], ["training NC1", "standard number of epochs",
                                                  "held-out NC1 at the end"])
    return Plot(fig, "NC1 of the training features after every epoch of ERM (log scale); the dashed line marks "
                "the standard number of epochs and the star the held-out NC1 at the end of training.",
                datasets, _seeds(curve), _spread("bands", curve))


# ------------------------------------------------------------------------------------------------ Figure 3

def figure3(paths: pd.DataFrame, twin: bool = False) -> Plot:
    """Directional error between the LLR head and the hard-margin SVM over SGD steps (log axis). A dataset
    whose held-out features are not linearly separable (column `separable`) has no SVM: its panel says so."""
    datasets = _datasets(paths)
    fig, axes, _ = new_figure(len(datasets), legend_rows=1)
    separable = paths["separable"] if "separable" in paths else pd.Series(True, index=paths.index)
    h = h_std = None
    for dataset, ax in zip(datasets, axes):
        part = paths[(paths["dataset"] == dataset) & separable]
        n_seeds, n_not = paths.loc[paths["dataset"] == dataset, "seed"].nunique(), \
            paths.loc[(paths["dataset"] == dataset) & ~separable, "seed"].nunique()
        _label(ax, _name(dataset, twin), "SGD steps", "directional error")
        if not len(part):
            ax.text(0.5, 0.5, "held-out features not\nlinearly separable:\nno hard-margin SVM", ha="center",
                    va="center", transform=ax.transAxes, fontsize=NORMAL)
            ax.set_xticks([]), ax.set_yticks([])
            continue
        h = line(ax, part, "step", "direction_error", "#1f77b4", "LLR vs SVM", marker=".")
        ax.set_xscale("log")
        h_std = ax.axvline(part["standard_steps"].iloc[0], color="grey", ls="--")
        if n_not:
            ax.set_title(f"{_name(dataset, twin)} ({n_not} of {n_seeds} seeds not separable)", fontsize=NORMAL)
    if h is not None:
        extra = one_class_handle(paths)
        shared_legend(fig, [h, h_std, *extra], ["distance of the LLR direction to the SVM direction",
                                                "standard number of LLR steps", *[e.get_label() for e in extra]],
                      ncols=2)
    return Plot(fig, "Distance between the unit-norm direction of a logistic-loss LLR head and that of the "
                "hard-margin SVM with a bias, over SGD steps (log scale); the dashed line marks the standard "
                "number of LLR steps. Where a seed's held-out features are not linearly separable the SVM does "
                "not exist and that seed is left out (a panel says so when no seed is separable)."
                + one_class_said(paths[separable]), datasets, _seeds(paths), _spread("bands", paths[separable]))


# ------------------------------------------------------------------------------------------------ Figure 4

def figure4(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame, corr: pd.DataFrame, twin: bool = False) -> Plot:
    """Test WGA over the group ratio: one LLR line per ERM training ratio, ERM (100% data) as grey triangles."""
    import matplotlib

    datasets = _datasets(llr_rows)
    ratios = sorted(set(llr_rows["erm_ratio"]))
    cmap = matplotlib.colormaps[RATIO_CMAP]
    colours = {r: cmap(i / max(1, len(ratios) - 1) * 0.9) for i, r in enumerate(ratios)}
    fig, axes, _ = new_figure(len(datasets), legend_rows=int(np.ceil((len(ratios) + 1) / 3)))
    r = corr.set_index("dataset")["pearson_r"]
    handles = {}
    for dataset, ax in zip(datasets, axes):
        part = llr_rows[llr_rows["dataset"] == dataset]
        for ratio in ratios:
            handles[ratio] = line(ax, part[part["erm_ratio"] == ratio], "llr_ratio", "test_acc_wg", colours[ratio],
                                  f"LLR after ERM at ratio {ratio:g}")
        stats = mean_std(erm_rows[erm_rows["dataset"] == dataset], ["ratio"], "test_acc_wg")
        err = stats["std"] if stats["n"].max() > 1 else None
        handles["erm"] = ax.errorbar(stats["ratio"], stats["mean"], err, fmt="^", color=ERM_COLOUR, ms=7,
                                     label="ERM on 100% of the data")
        mark_one_class(ax, erm_rows[erm_rows["dataset"] == dataset], "ratio", "test_acc_wg")
        ticks_at(ax, part["llr_ratio"], log=True)
        rv = r.get(dataset, float("nan"))
        _label(ax, f"{_name(dataset, twin)} (r = {rv:.3f})" if np.isfinite(rv) else f"{_name(dataset, twin)} (r = n/a)",
               "group ratio",
               "test WGA", ylim=WGA_LIM)
    handles = [*handles.values(), *one_class_handle(erm_rows, llr_rows)]
    shared_legend(fig, handles, [h.get_label() for h in handles])
    return Plot(fig, "Test worst-group accuracy over the group ratio (log scale): each coloured line is LLR "
                "retrained on the held-out set at the ratio on the x-axis after ERM trained on its split at one "
                "ratio; grey triangles are ERM trained on all the data at that ratio. The panel title gives "
                "Pearson r between the two (table below)." + one_class_said(erm_rows, llr_rows),
                datasets, _seeds(erm_rows, llr_rows), _spread("bands and error bars", erm_rows, llr_rows))


# ------------------------------------------------------------------------------------------------ Figure 5

def figure5(erm_rows: pd.DataFrame, llr_rows: pd.DataFrame, twin: bool = False) -> Plot:
    """Per dataset and ERM class-balancing method: ERM on 100% (grey) and LLR under each balancing method."""
    both = pd.concat([llr_rows.assign(kind=llr_rows["llr_balance"]),
                      erm_rows.rename(columns={"balance": "erm_balance"}).assign(kind="ERM")])
    datasets = _datasets(both)
    fig, axes, _ = new_figure(len(datasets), legend_rows=2)
    kinds = ["ERM", *BALANCES]
    for dataset, ax in zip(datasets, axes):
        bars(ax, both[both["dataset"] == dataset], "erm_balance", "kind", BALANCES, kinds,
             lambda k, _: ERM_COLOUR if k == "ERM" else BALANCE_COLOURS[k])
        ax.set_xticks(range(len(BALANCES)), ["none", "subset", "upsample", "upweight"])
        _label(ax, _name(dataset, twin), "class balancing of ERM", "test WGA", ylim=(0, 1))
    handles = [Patch(color=ERM_COLOUR, label="ERM on 100% of the data")]
    handles += [Patch(color=BALANCE_COLOURS[b], label=f"LLR, {b}" if b != "none" else "LLR, no balancing")
                for b in BALANCES]
    shared_legend(fig, handles + one_class_handle(both))
    return Plot(fig, "Test worst-group accuracy for each class-balancing method of ERM (x-axis): grey bars are "
                "ERM trained on all the data with that balancing; coloured bars are LLR retrained on the held-out "
                "set, class-balanced by the method of its colour, after ERM trained on its split."
                + one_class_said(both), datasets, _seeds(erm_rows, llr_rows), _spread("error bars", erm_rows, llr_rows))


def figure_afr(afr_rows: pd.DataFrame, mass: pd.DataFrame, minority: dict, twin: bool = False) -> Plot:
    """AFR: test WGA over γ (left); minority groups' share of the held-out weight over γ (right)."""
    datasets = _datasets(afr_rows)
    fig, (left, right), _ = new_figure(2, panel_height=2.8, legend_rows=1)
    share = mass.assign(minority=[g in minority[d] for d, g in zip(mass["dataset"], mass["group"])])
    share = share[share["minority"]].groupby(["dataset", "seed", "gamma"], dropna=False)["weight_share"].sum().reset_index()
    base = share[share["gamma"].isna()].groupby("dataset")["weight_share"].mean()
    handles = []
    for dataset in datasets:
        c = DATASET_COLOURS.get(dataset, "black")
        handles.append(line(left, afr_rows[afr_rows["dataset"] == dataset], "gamma", "test_acc_wg", c,
                            registry.display(dataset)))
        line(right, share[(share["dataset"] == dataset) & share["gamma"].notna()], "gamma", "weight_share", c, dataset)
        right.axhline(base.get(dataset, np.nan), color=c, ls=":", lw=1)
    for ax in (left, right):
        ticks_at(ax, afr_rows["gamma"])
    on = " (twins)" if twin else ""
    _label(left, f"AFR: test WGA{on}", "γ", "test WGA", ylim=WGA_LIM)
    _label(right, f"minority groups' weight share{on}", "γ", "share of total weight", ylim=(0, 1))
    shared_legend(fig, handles + one_class_handle(afr_rows), ncols=4)
    return Plot(fig, "AFR over its parameter γ: test worst-group accuracy (left), and the share of the total "
                "AFR weight that falls on the minority groups of the held-out set (right; dotted: their share of "
                "the examples)." + one_class_said(afr_rows), datasets, _seeds(afr_rows), _spread("bands", afr_rows))


# ---------------------------------------------------------------------------------------------- Figures 6-7

def figure6(curves: pd.DataFrame, twin: bool = False) -> Plot:
    """Test WGA over ERM epochs for group balancing by subsetting, upsampling and upweighting."""
    datasets = _datasets(curves)
    fig, axes, _ = new_figure(len(datasets), legend_rows=1)
    methods = [b for b in BALANCES if b in set(curves["balance"])]
    handles = {}
    for dataset, ax in zip(datasets, axes):
        part = curves[curves["dataset"] == dataset]
        for b in methods:
            handles[b] = line(ax, part[part["balance"] == b], "epoch", "test_acc_wg", BALANCE_COLOURS[b],
                              b, marker=".")
        if part["epoch"].nunique() <= 12:
            ticks_at(ax, part["epoch"])
        _label(ax, _name(dataset, twin), "epoch", "test WGA", ylim=WGA_LIM)
    shared_legend(fig, [*handles.values(), *one_class_handle(curves)])
    return Plot(fig, "Test worst-group accuracy after every epoch of ERM trained on all the data, group-balanced "
                "by the method of each colour." + one_class_said(curves), datasets, _seeds(curves), _spread("bands", curves))


def figure7(bars_df: pd.DataFrame, twin: bool = False) -> Plot:
    """Class-balanced ERM (grey) against the paper's group-balanced SGD DFR (coloured by balancing method) and,
    where the table has it, Kirichenko et al.'s DFR (one colour) after the same ERM."""
    from repro.sections import DFR_L1

    datasets = _datasets(bars_df)
    fig, axes, _ = new_figure(len(datasets), legend_rows=3)
    order = list(METHODS)
    methods = ["class-balanced ERM", "group-balanced DFR"] + ([DFR_L1] if DFR_L1 in set(bars_df["method"]) else [])
    colour = {methods[0]: lambda b: ERM_COLOUR, methods[1]: lambda b: BALANCE_COLOURS[b],
              DFR_L1: lambda b: DFR_L1_COLOUR}
    for dataset, ax in zip(datasets, axes):
        bars(ax, bars_df[bars_df["dataset"] == dataset], "balance", "method", order, methods,
             lambda m, b: colour[m](b))
        _label(ax, _name(dataset, twin), None, "test WGA", ylim=(0, 1))
    handles = [Patch(color=ERM_COLOUR, label="class-balanced ERM (left bar)")]
    handles += [Patch(color=BALANCE_COLOURS[b], label=f"group-balanced DFR, {b}") for b in order]
    if DFR_L1 in methods:
        handles.append(Patch(color=DFR_L1_COLOUR, label="Kirichenko et al.'s DFR (right bar)"))
    shared_legend(fig, handles + one_class_handle(bars_df), ncols=2)
    also = (" The right bar (one colour) is Kirichenko et al.'s DFR on the same features: L1 logistic regression on "
            "standardized features, C tuned on half of the held-out set, averaged over group-balanced resamples."
            if DFR_L1 in methods else "")
    return Plot(fig, "Test worst-group accuracy per balancing method (x-axis): ERM trained on all the data, "
                "class-balanced by the method (grey, left bar), against DFR, i.e. LLR on the held-out set "
                "group-balanced by the method after ERM class-balanced by it on its split (coloured)." + also
                + one_class_said(bars_df),
                datasets, _seeds(bars_df), _spread("error bars", bars_df))
