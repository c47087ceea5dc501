"""Book-side presentation: tables sized for the text column, captions from what a figure draws, every
undefined number explained where it appears, and the paper's numbers next to this build's with every
difference flagged.

Notebooks hold no functions, so tables that compare, flag, explain or export live here.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

COUNT_COLUMNS = ("train", "val", "test")
PROB_COLUMNS = ("p_y", "p_g", "p_y_given_s")
FLAG = "⚠"


def compare_table2(measured: pd.DataFrame, paper: pd.DataFrame, scale: float | dict | None = None,
                   p_tol: float = 0.0) -> pd.DataFrame:
    """Side-by-side Table 2: one row per (dataset, group), each cell "measured" or "measured ⚠ (paper X)".

    Real data (scale None): counts must be equal and probabilities equal after rounding to 3 decimals.
    Scaled twins (scale: a float, or a dict dataset -> float or [train, val, test] factors): counts are
    compared with round(paper * scale) within 1 or 2%, probabilities within p_tol.
    Rows follow the paper's order; datasets absent from `measured` are marked as not available in this build.
    """
    key = ["dataset", "group"]
    merged = paper.merge(measured.drop(columns=["y", "s"]), on=key, how="left", suffixes=("_paper", ""), indicator=True)
    rows = []
    for _, row in merged.iterrows():
        out = {"dataset": row["dataset"], "group": row["group"], "class y": row["y"], "spurious s": row["s"]}
        if row["_merge"] == "left_only":
            out.update({c: "not available in this build" if c == "train" else "" for c in (*PROB_COLUMNS, *COUNT_COLUMNS)})
            rows.append(out)
            continue
        for col in PROB_COLUMNS:
            got, want = float(row[col]), row.get(f"{col}_paper")
            bad = want is not None and not np.isnan(want) and abs(round(got, 3) - want) > max(p_tol, 1e-9)
            out[col] = f"{got:.3f}" + (f" {FLAG} (paper {want:.3f})" if bad else "")
        for i, col in enumerate(COUNT_COLUMNS):
            got, want = int(row[col]), row.get(f"{col}_paper")
            if want is None or np.isnan(want):
                out[col] = str(got)
                continue
            factor = scale.get(row["dataset"]) if isinstance(scale, dict) else scale
            factor = factor[i] if isinstance(factor, (list, tuple)) else factor
            expect = int(round(want * factor)) if factor else int(want)
            bad = abs(got - expect) > (max(1, 0.02 * expect) if factor else 0)
            ref = f"expected {expect}" if factor else f"paper {int(want)}"
            out[col] = str(got) + (f" {FLAG} ({ref})" if bad else "")
        rows.append(out)
    return pd.DataFrame(rows)


def flagged_cells(table: pd.DataFrame) -> list[str]:
    """'dataset / group / column' of every flagged cell of a `compare_table2` result."""
    return [f"{r['dataset']} / {r['group']} / {c}" for _, r in table.iterrows() for c in table.columns
            if isinstance(r[c], str) and FLAG in r[c]]


def markdown(table: pd.DataFrame, floatfmt: str = ".3f") -> str:
    return table.to_markdown(index=False, floatfmt=floatfmt)


def save_csv(table: pd.DataFrame, name: str, folder: str | Path = "_build/src/book/data") -> Path:
    """Write the data behind a figure or table as CSV into the staged book (linked with {download})."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.csv"
    table.to_csv(path, index=False)
    return path


def _listing(values) -> str:
    return ", ".join(map(str, values))


def caption(label: str, plot, profile: str, models: str = "") -> str:
    """The caption of a `repro.plots.Plot`: what it draws, the datasets (and models) drawn, the seeds its
    means are over and the spread drawn, if any, and the profile; nothing the figure does not show."""
    parts = [f"**{label}.** {plot.shows}"]
    if plot.datasets:
        parts.append(f"Datasets (models): {models}." if models else f"Datasets: {_listing(plot.datasets)}.")
    n = len(plot.seeds)
    if n > 1:
        spread = f"; {plot.spread} show ± one standard deviation (ddof 0)" if plot.spread else ""
        parts.append(f"Means over {n} seeds ({_listing(plot.seeds)}){spread}.")
    elif n == 1:
        parts.append(f"One seed ({plot.seeds[0]}), so no spread over seeds is drawn.")
    parts.append(f"Profile `{profile}`.")
    return " ".join(parts)


def why_undefined(x, y, x_name: str, y_name: str, unit: str = "point", x_missing: str = "",
                  y_missing: str = "") -> str:
    """Why Pearson r of x and y is undefined (the rules of repro.metrics.pearson), or "" when it is defined.

    x_missing, y_missing: why a value can be missing, said when one is."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~(np.isnan(x) | np.isnan(y))
    if ok.sum() < 2:
        parts = [f"{name} undefined for {int(np.isnan(v).sum())} of {len(v)} {unit}s" + (f" ({why})" if why else "")
                 for name, v, why in ((x_name, x, x_missing), (y_name, y, y_missing)) if np.isnan(v).any()]
        return "; ".join(parts) if parts else f"only {int(ok.sum())} {unit}"
    if np.all(x[ok] == x[ok][0]):
        return f"{x_name} is {x[ok][0]:.3g} for every {unit}"
    if np.all(y[ok] == y[ok][0]):
        return f"{y_name} is {y[ok][0]:.3g} for every {unit}"
    return ""


MISSING = {"margin_min": "no held-out point of the group is classified correctly",
           "margin_avg": "the group has no held-out point", "test_acc": "the group has no test point"}


def margin_table(corr: pd.DataFrame, points: pd.DataFrame) -> pd.DataFrame:
    """Table 1 for the page: r per dataset and group, and "n/a" with the reason wherever r is undefined.

    A group's minimum margin (over its correctly classified held-out points) is undefined for a head that
    classifies none of them correctly; such heads drop out of the minimum-margin correlation."""
    rows = []
    for _, row in corr.iterrows():
        part = points[(points["dataset"] == row["dataset"]) & (points["group"] == row["group"])]
        out = {"dataset": row["dataset"], "group": part["group_name"].iloc[0] if len(part) else row["group"],
               "heads": int(row["n_points"])}
        notes = []
        for col, margin, label in (("r_min_margin", "margin_min", "min margin"),
                                   ("r_avg_margin", "margin_avg", "avg margin")):
            r = row[col]
            out[f"r ({label})"] = f"{r:.3f}" if np.isfinite(r) else "n/a"
            if not np.isfinite(r):
                notes.append(f"{label}: " + why_undefined(part[margin].astype(float), part["test_acc"].astype(float),
                                                          label, "test accuracy", "head", MISSING[margin],
                                                          MISSING["test_acc"]))
        out["why n/a"] = "; ".join(notes)
        rows.append(out)
    table = pd.DataFrame(rows)
    return table if table["why n/a"].any() else table.drop(columns=["why n/a"])


def table1_beside_paper(corr: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 1 (repro.claims.PAPER_TABLE1) beside this build's, one row per group of the paper's
    datasets: r of the group's test accuracy with its minimum and its average margin, and whether r(average)
    > r(minimum), the Table 1 criterion per group. corr: repro.sections.margin_correlations; "n/a" where this
    build's r is undefined (margin_table says why), "not run" where the build has no such group."""
    from repro import claims
    from repro import datasets as registry

    def cell(r) -> str:
        return f"{r:.3f}" if np.isfinite(r) else "n/a"

    built = {(d, int(g)): row for d, g, row in zip(corr["dataset"], corr["group"], corr.to_dict("records"))} \
        if len(corr) else {}
    rows = []
    for dataset, group in claims.table1_groups():
        paper = claims.PAPER_TABLE1[dataset]
        p_min, p_avg = paper["r_min_margin"][group], paper["r_avg_margin"][group]
        out = {"dataset": dataset, "group": registry.get(dataset).group_names[group],
               "r min (paper)": cell(p_min), "r avg (paper)": cell(p_avg), "avg > min (paper)": _yes(p_avg > p_min)}
        row = built.get((dataset, group))
        if row is None:
            out.update({"r min (this build)": "not run", "r avg (this build)": "not run", "avg > min (this build)": ""})
        else:
            b_min, b_avg = float(row["r_min_margin"]), float(row["r_avg_margin"])
            out.update({"r min (this build)": cell(b_min), "r avg (this build)": cell(b_avg),
                        "avg > min (this build)": _yes(b_avg > b_min) if np.isfinite(b_min + b_avg) else "n/a"})
        rows.append(out)
    return pd.DataFrame(rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def ratio_table(corr: pd.DataFrame, erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> pd.DataFrame:
    """The Figure 4 correlations for the page, with the reason wherever r is undefined (pairs as in
    repro.sections.ratio_correlations)."""
    erm_mean = erm_rows.groupby(["dataset", "ratio"])["test_acc_wg"].mean()
    llr_mean = llr_rows.groupby(["dataset", "erm_ratio", "llr_ratio"])["test_acc_wg"].mean().reset_index()
    rows = []
    for _, row in corr.iterrows():
        r = row["pearson_r"]
        out = {"dataset": row["dataset"], "points": int(row["n_points"]),
               "Pearson r": f"{r:.3f}" if np.isfinite(r) else "n/a", "why n/a": ""}
        if not np.isfinite(r):
            part = llr_mean[llr_mean["dataset"] == row["dataset"]]
            x = erm_mean.loc[row["dataset"]].loc[part["llr_ratio"]].to_numpy()
            out["why n/a"] = why_undefined(x, part["test_acc_wg"], "ERM test WGA", "LLR test WGA")
        rows.append(out)
    table = pd.DataFrame(rows)
    return table if table["why n/a"].any() else table.drop(columns=["why n/a"])


def nc1_table(end: pd.DataFrame) -> pd.DataFrame:
    """The Figure 2 summary: per dataset, seed means of NC1 at the first and last epoch and held-out / train."""
    ratio = end["nc1_heldout_end"] / end["nc1_train_end"]
    means = end.assign(ratio=ratio).groupby("dataset", sort=False).mean(numeric_only=True)
    return pd.DataFrame({"dataset": means.index,
                         "epochs (standard)": [f"{e:.0f} ({s:.0f})" for e, s in zip(means["epochs"], means["standard_epochs"])],
                         "train NC1, epoch 1": means["nc1_train_first"].map("{:.3g}".format),
                         "train NC1, end": means["nc1_train_end"].map("{:.3g}".format),
                         "held-out NC1, end": means["nc1_heldout_end"].map("{:.3g}".format),
                         "held-out / train": means["ratio"].map("{:.3g}".format)})


def table2_markdown(table: pd.DataFrame) -> str:
    """A `compare_table2` result as one narrow table per dataset; each flagged cell keeps its ⚠ and the value
    it was compared with is listed under the table."""
    out = []
    for dataset, part in table.groupby("dataset", sort=False):
        rows, notes = [], []
        for _, r in part.iterrows():
            row = {"group": f"{r['class y']} / {r['spurious s']}"}
            for col in (*PROB_COLUMNS, *COUNT_COLUMNS):
                cell = str(r[col])
                if FLAG in cell:
                    value, _, ref = cell.partition(f" {FLAG} ")
                    notes.append(f"{row['group']}, {col}: {value}, {ref.strip('()')}")
                    cell = f"{value} {FLAG}"
                row[col] = cell
            rows.append(row)
        frame = pd.DataFrame(rows).rename(columns={"p_y": "p(y)", "p_g": "p(g)", "p_y_given_s": "p(y given s)"})
        if (frame["train"] == "not available in this build").all():
            out.append(f"**{dataset}**: not available in this build.")
            continue
        text = f"**{dataset}** (groups as class / spurious attribute)\n\n" + frame.to_markdown(index=False)
        if notes:
            text += f"\n\n{FLAG} " + "; ".join(notes) + "."
        out.append(text)
    return "\n\n".join(out)


def data_root_note(data_root: str, scales: dict | None, seed: int) -> str:
    """One line naming the data root and, for synthetic twins, each dataset's scale (train/val/test factors)."""
    if not scales:
        return f"Data root: `{data_root}`."

    def fmt(v):
        v = v if isinstance(v, (list, tuple)) else [v]
        return "/".join(f"{x:g}" for x in v) if len(set(v)) > 1 else f"{v[0]:g}"

    listed = "; ".join(f"{name} {fmt(v)}" for name, v in scales.items())
    return f"Data root: `{data_root}`: synthetic twins (seed {seed}) at the paper's counts times {listed}."


def hparams_markdown(rows: list[dict]) -> str:
    """Table 3 transposed for the column: one row per hyperparameter, one column per dataset."""
    frame = pd.DataFrame(rows).set_index("dataset").drop(columns=["llr"], errors="ignore")
    frame = frame.map(lambda v: f"{v:g}" if isinstance(v, float) else str(v))
    return frame.T.rename_axis("hyperparameter").reset_index().to_markdown(index=False)
