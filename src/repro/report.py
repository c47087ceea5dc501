"""Book-side presentation: tables sized for the text column, captions from what a figure draws, every
undefined number explained where it appears, and the paper's numbers next to this build's with every
difference flagged.

Notebooks hold no functions, so tables that compare, flag, explain or export live here.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from repro.datasets import display

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
    """A table as Markdown, numbers right-aligned; a table with several rows per dataset as one narrower table
    per dataset, named above it, without the columns that are empty for that dataset (a phone's column holds
    it)."""
    if "dataset" in table and table["dataset"].duplicated().any():
        parts = [(d, part.drop(columns="dataset")) for d, part in table.groupby("dataset", sort=False)]
        parts = [(d, part.loc[:, [not (part[c].astype(str) == "").all() for c in part]]) for d, part in parts]
        return "\n\n".join(f"**{d}**\n\n" + aligned_markdown(part, floatfmt=floatfmt) for d, part in parts)
    return aligned_markdown(table, floatfmt=floatfmt)


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
        listed = _listing(map(display, plot.datasets))
        parts.append(f"Datasets (models): {models}." if models else f"Datasets: {listed}.")
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
    classifies none of them correctly; such heads drop out of the minimum-margin correlation. Column "one-class
    heads" (only when some head is): heads that predict one class for every test example."""
    rows = []
    for _, row in corr.iterrows():
        part = points[(points["dataset"] == row["dataset"]) & (points["group"] == row["group"])]
        out = {"dataset": display(row["dataset"]), "group": part["group_name"].iloc[0] if len(part) else row["group"],
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
        out["one-class heads"] = _trivial(part)
        rows.append(out)
    return _drop_empty(pd.DataFrame(rows))


def _trivial(frame: pd.DataFrame) -> int:
    """How many rows of a tidy table predict one class (column one_class; none without it)."""
    return int(frame["one_class"].fillna(False).astype(bool).sum()) if "one_class" in frame else 0


def _drop_empty(table: pd.DataFrame) -> pd.DataFrame:
    """Without the "why n/a" column when no r is undefined and the one-class columns when no run predicts one class."""
    empty = [c for c in table.columns if (c == "why n/a" and not table[c].any())
             or (c.startswith("one-class") and not table[c].astype(bool).any())]
    return table.drop(columns=empty)


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


def table1_beside_paper_markdown(corr: pd.DataFrame) -> str:
    """`table1_beside_paper` as one narrow table per dataset (the dataset names the table, not a column)."""
    table = table1_beside_paper(corr)
    return "\n\n".join(f"**{display(dataset)}**\n\n" + part.drop(columns="dataset").to_markdown(index=False)
                         for dataset, part in table.groupby("dataset", sort=False))


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def ratio_table(corr: pd.DataFrame, erm_rows: pd.DataFrame, llr_rows: pd.DataFrame) -> pd.DataFrame:
    """The Figure 4 correlations for the page, beside the paper's words for them (repro.claims.PAPER_FIGURE4; a
    companion dataset has none), with the reason wherever r is undefined (pairs as in
    repro.sections.ratio_correlations), and the one-class ERM runs and LLR heads (only when there are some)."""
    from repro import claims
    erm_mean = erm_rows.groupby(["dataset", "ratio"])["test_acc_wg"].mean()
    llr_mean = llr_rows.groupby(["dataset", "erm_ratio", "llr_ratio"])["test_acc_wg"].mean().reset_index()
    rows = []
    for _, row in _registry_order(corr).iterrows():
        r = row["pearson_r"]
        out = {"dataset": display(row["dataset"]), "points": int(row["n_points"]),
               "Pearson r": f"{r:.3f}" if np.isfinite(r) else "n/a",
               "paper's r (real data)": claims.PAPER_FIGURE4.get(row["dataset"], ""), "why n/a": ""}
        if not np.isfinite(r):
            part = llr_mean[llr_mean["dataset"] == row["dataset"]]
            x = erm_mean.loc[row["dataset"]].loc[part["llr_ratio"]].to_numpy()
            out["why n/a"] = why_undefined(x, part["test_acc_wg"], "ERM test WGA", "LLR test WGA")
        out["one-class ERM runs"] = _trivial(erm_rows[erm_rows["dataset"] == row["dataset"]])
        out["one-class LLR heads"] = _trivial(llr_rows[llr_rows["dataset"] == row["dataset"]])
        rows.append(out)
    return _drop_empty(pd.DataFrame(rows))


def _registry_order(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a table with a dataset column in the registry's order (the order of every figure)."""
    from repro.datasets import names

    rank = {d: i for i, d in enumerate(names())}
    return frame.sort_values("dataset", key=lambda col: col.map(lambda d: rank.get(d, len(rank))), kind="stable")


def nc1_table(end: pd.DataFrame) -> pd.DataFrame:
    """The Figure 2 summary: per dataset, seed means of NC1 at the first and last epoch and held-out / train."""
    ratio = end["nc1_heldout_end"] / end["nc1_train_end"]
    means = end.assign(ratio=ratio).groupby("dataset", sort=False).mean(numeric_only=True)
    return pd.DataFrame({"dataset": [display(d) for d in means.index],
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
        frame = pd.DataFrame(rows).rename(columns={"p_y": "$p(y)$", "p_g": "$p(g)$", "p_y_given_s": "$p(y \\mid s)$"})
        if (frame["train"] == "not available in this build").all():
            out.append(f"**{display(dataset)}**: not available in this build.")
            continue
        text = f"**{display(dataset)}** (groups as class / spurious attribute)\n\n" + aligned_markdown(frame)
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

    listed = "; ".join(f"{display(name)} {fmt(v)}" for name, v in scales.items())
    return f"Data root: `{data_root}`: synthetic twins (seed {seed}) at the paper's counts times {listed}."


# Table 3's rows, in one order for every profile: key -> the label a reader sees (a key no profile sets is
# left out; a key not listed here follows, under its own name).
HPARAM_ROWS = {"model": "model", "pretrained": "pretrained weights", "train_blocks": "top blocks trained",
               "model_kw": "model options", "optimizer": "optimizer", "lr": "learning rate", "schedule": "schedule",
               "batch_size": "batch size", "weight_decay": "weight decay", "momentum": "momentum",
               "epochs": "epochs", "max_steps": "steps at most"}


def value_text(v) -> str:
    """A hyperparameter as a reader expects it: 1e-05 as $10^{-5}$, True as yes, {'pool': 'pooler'} as
    "pool: pooler", lists comma-separated, an empty dict as "-"."""
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, float) and v and abs(np.log10(abs(v))) >= 2:
        mantissa, exponent = f"{v:.0e}".split("e")
        power = f"10^{{{int(exponent)}}}"
        return f"${power}$" if mantissa in ("1", "+1") else f"${mantissa} \\times {power}$"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dict):
        return "; ".join(f"{k}: {value_text(x)}" for k, x in v.items()) or "-"
    if isinstance(v, (list, tuple)):
        return ", ".join(map(value_text, v))
    return str(v)


def hparams_markdown(rows: list[dict]) -> str:
    """Table 3 transposed for the column: one row per hyperparameter (HPARAM_ROWS' order, the same in every
    profile), one column per dataset, ERM's settings and then the epochs of LLR; "-" where a profile does not
    set a key for a dataset. rows: repro.hparams.table(profile)."""
    erm = pd.DataFrame([{k: v for k, v in r.items() if k != "llr"} for r in rows]).set_index("dataset")
    keys = [k for k in HPARAM_ROWS if k in erm] + [k for k in erm if k not in HPARAM_ROWS]
    table = pd.DataFrame({display(d): [value_text(erm.at[d, k]) if _set(erm.at[d, k]) else "-" for k in keys]
                          + [value_text(r["llr"]["epochs"])] for d, r in zip(erm.index, rows)})
    table.insert(0, "hyperparameter", [HPARAM_ROWS.get(k, k) for k in keys] + ["LLR epochs"])
    return aligned_markdown(table)


def _set(v) -> bool:
    return not (isinstance(v, float) and np.isnan(v))


def llr_line(rows: list[dict]) -> str:
    """One line under Table 3: LLR's settings (the same for every dataset), and how its epochs relate to ERM's."""
    llr = rows[0]["llr"]
    same = ", ".join(f"{HPARAM_ROWS.get(k, k)} {value_text(v)}" for k, v in llr.items() if k != "epochs")
    if all(r["llr"]["epochs"] == r["epochs"] for r in rows):
        epochs = "as many epochs as ERM (the table's last row)"
    else:
        epochs = ("epochs fixed per profile (the table's last row), not ERM's: see "
                  "[Deviations from the paper](deviations.md)")
    return f"LLR, on every dataset: {llr['optimizer'].upper()}, {same.replace('optimizer sgd, ', '')}; {epochs}."


def aligned_markdown(table: pd.DataFrame, **kw) -> str:
    """A table as Markdown with every column of numbers (an optional ⚠ or note after them) right-aligned;
    kw: more options of DataFrame.to_markdown (floatfmt)."""
    number = re.compile(r"^[-+]?(\d[\d,]*\.?\d*(e[-+]?\d+)?|n/a|-)( .*)?$")
    align = ["right" if table[c].map(lambda v: bool(number.match(str(v)))).all()
             and not table[c].astype(str).isin(["n/a", "-"]).all() else "left" for c in table.columns]
    return table.to_markdown(index=False, colalign=align, **kw)


def sizes_markdown(counts: pd.DataFrame, heldout_min: int, test_min: int) -> str:
    """`data.heldout_and_test_counts` as one narrow table per dataset (rows: groups; columns: each seed's
    held-out set, then the test set), counts below heldout_min / test_min flagged, and one sentence that names
    every shortfall (or says there is none)."""
    if not len(counts):
        return "No dataset under this data root."
    out, short = [], []
    for dataset, part in counts.groupby("dataset", sort=False):
        held = part[part["set"] == "held-out"]
        table = held.pivot_table(index=["group", "name"], columns="seed", values="count", aggfunc="sum")
        table.columns = [f"held-out, seed {int(s)}" for s in table.columns]
        table["test"] = part[part["set"] == "test"].set_index(["group", "name"])["count"]
        for col in table.columns:
            floor = test_min if col == "test" else heldout_min
            low = table[col] < floor
            short += [f"{display(dataset)} {name} ({col}: {int(n)})" for (_, name), n in table.loc[low, col].items()]
            table[col] = [f"{int(n)} {FLAG}" if n < floor else str(int(n)) for n in table[col]]
        table = table.reset_index().drop(columns="group").rename(columns={"name": "group"})
        out.append(f"**{display(dataset)}**\n\n" + table.to_markdown(index=False, colalign=["left"] + ["right"] * (table.shape[1] - 1)))
    line = (f"Every group has at least {heldout_min} examples in every seed's held-out set and at least {test_min} "
            "in the test set." if not short else
            f"Below {heldout_min} held-out or {test_min} test examples ({FLAG}): " + "; ".join(short) + ".")
    return line + "\n\n" + "\n\n".join(out)


def twin_sizes_rule(profile: str) -> str:
    """How the twins of `profile` are sized so that every group is measurable (empty for other profiles)."""
    from repro import synth

    floors = synth.MIN_COUNTS.get(profile)
    if not floors:
        return ""
    from repro import datasets

    wb = datasets.get("waterbirds")
    frac = 1 - wb.erm_train_pct / 100
    expected = frac * synth.table_counts("waterbirds")[0].min()
    return (f"The `{profile}` twins are sized for this. Every test group has at least {floors[2]} examples: groups "
            "that would have fewer at the twin's scale are over-sampled, and average test accuracy is then "
            "weighted by the real dataset's test proportions (worst-group accuracy does not depend on them). The "
            "split a held-out set is drawn from is grown at the real proportions, to the smallest scale at which "
            f"its smallest group expects at least {synth.HELDOUT_MIN} held-out examples less "
            f"{synth.HELDOUT_Z:g} standard deviations (`repro.synth.heldout_scale`). Waterbirds cannot grow "
            f"that far: its held-out set is {frac:.0%} of the training split, which its twin already holds at the "
            "real size, and a twin never outgrows its dataset; so, as in the real held-out set (first table), "
            f"{expected:.1f} waterbirds on land are held out on average, and the seed decides how many.")


def separability_note(paths: pd.DataFrame) -> str:
    """Whether each dataset's held-out set has more examples than feature dimensions. With n <= d + 1 points in
    general position any labelling is linearly separable, so a hard-margin SVM exists by dimension alone."""
    if not len(paths) or "dim" not in paths:
        return ""
    sizes = paths.groupby("dataset", sort=False).agg(n_min=("n_heldout", "min"), n_max=("n_heldout", "max"),
                                                     dim=("dim", "first"))
    parts, automatic = [], []
    for dataset, r in sizes.iterrows():
        n = f"{r['n_min']}" if r["n_min"] == r["n_max"] else f"{r['n_min']}-{r['n_max']}"
        parts.append(f"{display(dataset)} {n} examples in {r['dim']} dimensions")
        if r["n_min"] <= r["dim"] + 1:
            automatic.append(display(dataset))
    text = "Held-out sets: " + "; ".join(parts) + "."
    if automatic:
        text += (f" On {', '.join(automatic)} the held-out set has no more examples than dimensions (plus one), so "
                 "its features are linearly separable whatever they encode (any n <= d + 1 points in general "
                 "position are): there the SVM's existence says nothing about the features, only the direction "
                 "error does. The paper's CelebA held-out set (about 9,900 points, d = 512) is not in that case.")
    return text
# ------------------------------------------------------------------ trivial classifiers and DFR's tuning split

def _method_label(name: str, row, by) -> str:
    """"name (col value, ...)" of a method variant; without a name only the values; without columns the name."""
    fmt = [f"{row[c]:g}" if isinstance(row[c], float) else str(row[c]) for c in by]
    if not name:
        return ", ".join(fmt)
    return f"{name} ({', '.join(f'{c} {v}' for c, v in zip(by, fmt))})" if by else name


def one_class_counts(tables: dict) -> pd.DataFrame:
    """Runs and one-class runs per method and dataset: tables maps a method name to (tidy table with columns
    dataset and one_class, columns naming its variants), e.g. {"LLR": (llr_rows, ["erm_balance",
    "llr_balance"])}. Returns columns method, dataset, runs, one_class (count), in the tables' order."""
    rows = []
    for name, (frame, by) in tables.items():
        if not len(frame):
            continue
        trivial = frame["one_class"].fillna(False).astype(bool) if "one_class" in frame else pd.Series(False, frame.index)
        for key, part in frame.assign(_trivial=trivial).groupby([*by, "dataset"], sort=False, dropna=False):
            rows.append({"method": _method_label(name, part.iloc[0], by), "dataset": part["dataset"].iloc[0],
                         "runs": len(part), "one_class": int(part["_trivial"].sum())})
    return pd.DataFrame(rows, columns=["method", "dataset", "runs", "one_class"])


def _why(counts: pd.DataFrame, dataset: str) -> str:
    """One sentence: which methods predict one class on `dataset`, against the same methods elsewhere and the
    other methods on it, and what that points to."""
    here = counts["dataset"] == dataset
    bad = counts[here & (counts["one_class"] > 0)]
    same = counts[~here & counts["method"].isin(bad["method"])]
    other = counts[here & ~counts["method"].isin(bad["method"])]
    listed = "; ".join(f"{r.method}: {r.one_class} of {r.runs}" for r in bad.itertuples())
    k2, n2, k3, n3 = same["one_class"].sum(), same["runs"].sum(), other["one_class"].sum(), other["runs"].sum()
    if n2 and not k2 and not (n3 and k3):
        cause = "so it is these methods on this dataset's data, neither alone"
    elif n2 and not k2:
        cause = "so it follows the dataset more than the method"
    elif k2 and n3 and not k3:
        cause = "so it follows the method more than the dataset"
    elif k2:
        cause = "so both the method and the dataset play a part"
    else:
        cause = "no other dataset or method to compare with"
    return (f"On {display(dataset)}, {listed} predict one class for every test example; the same methods on the "
            f"other datasets: {k2} of {n2}; the other methods on {display(dataset)}: {k3} of {n3}; {cause}.")


def one_class_note(tables: dict, shares: pd.DataFrame | None = None) -> str:
    """What the page says about trivial classifiers: how many runs or heads predict one class for every test
    example (a black × in figures, `one_class` in the CSVs), by method and dataset, and a sentence
    per dataset comparing them with the same methods on other datasets and other methods on the same one.
    shares (optional, repro.sections.heldout_class_shares): the held-out set's majority-class share, quoted."""
    counts = one_class_counts(tables)
    total, k = int(counts["runs"].sum()), int(counts["one_class"].sum())
    if not k:
        return f"No run or head of this page predicts one class for every test example ({total} checked)."
    text = [f"**{k} of {total} runs or heads predict one class for every test example** (a trivial classifier: "
            "its worst-group accuracy is 0 and its group accuracies 0 or 1); figures mark their "
            "values with a black × (bars also hatched) and the CSVs' column `one_class` is true for them."]
    for dataset in dict.fromkeys(counts.loc[counts["one_class"] > 0, "dataset"]):
        text.append(_why(counts, dataset))
    if shares is not None and len(shares):
        major = shares.groupby(["dataset", "class"], sort=False)["share"].mean().groupby("dataset", sort=False).max()
        text.append("The majority class's share of the held-out set (mean over seeds): "
                    + ", ".join(f"{display(d)} {v:.2f}" for d, v in major.items()) + ".")
    table = counts[counts["method"].isin(counts.loc[counts["one_class"] > 0, "method"])]
    wide = table.assign(cell=[f"{r.one_class} of {r.runs}" for r in table.itertuples()]).pivot(
        index="method", columns="dataset", values="cell").reindex(index=list(dict.fromkeys(table["method"])),
                                                                  columns=list(dict.fromkeys(counts["dataset"])))
    wide = wide.rename(columns=display)
    return "\n\n".join([" ".join(text), "One-class runs per method (rows with any):",
                        wide.fillna("").reset_index().to_markdown(index=False)])


def dfr_tuning_note(bars: pd.DataFrame) -> str:
    """Appendix A: how many of Kirichenko et al.'s DFR heads lack a group in a tuning half (a group of fewer
    than 2 held-out examples cannot be in both stratified halves), per dataset, with the groups, and the
    examples per group of their final fits' resamples (a group with none is left out of them)."""
    if "dfr_tuning_groups_missing" not in bars:
        return ""
    part = bars[bars["dfr_tuning_groups_missing"].notna()]
    hit = part[[len(m) > 0 for m in part["dfr_tuning_groups_missing"]]]
    text = (f"Kirichenko et al.'s DFR tunes C on halves of the held-out set stratified by group: {len(hit)} of "
            f"{len(part)} heads have a group of fewer than 2 held-out examples, missing from a tuning half")
    if not len(hit):
        return text + "."
    return text + ": " + "; ".join(_dfr_shortfall(d, p) for d, p in hit.groupby("dataset", sort=False)) + "."


def _dfr_shortfall(dataset: str, heads: pd.DataFrame) -> str:
    """"dataset: k heads, groups [...] missing; no held-out example of group g in j; final fits n per group"."""
    groups = sorted({k for m in heads["dfr_tuning_groups_missing"] for k in m})
    text = f"{display(dataset)}, {len(heads)} head{'s' * (len(heads) != 1)} (groups {groups})"
    if "dfr_group_counts" not in heads:
        return text
    counts = [np.asarray(c) for c in heads["dfr_group_counts"]]
    empty = sorted({int(k) for c in counts for k in np.flatnonzero(c == 0)})
    sizes = sorted({int(c[c > 0].min()) for c in counts})
    text += f", their final fits balanced to {_listing(sizes)} example(s) per group"
    return text + (f", leaving out group(s) {empty} that have no held-out example in some seed" if empty else "")


def companion_counts(names, root) -> pd.DataFrame:
    """Examples per group and split of the companion datasets `names` built under `root` (their metadata), with
    the training split's share of each group and P(y | a) there: the companions' Table 2 rows."""
    from repro import data, metadata

    frames = []
    for name in names:
        frame = metadata.read(name, root)
        frames.append(data.composition_of(name, frame["y"].to_numpy(), frame["a"].to_numpy(), frame["split"].to_numpy()))
    table = pd.concat(frames, ignore_index=True)
    return table.drop(columns=[c for c in ("group", "p_y") if c in table])
