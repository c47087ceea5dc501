"""Book-side presentation: the paper's numbers next to this build's, with every difference flagged.

Notebooks hold no functions, so tables that compare, flag or export live here.
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


def caption(figure: str, profile: str, datasets, models, seeds, extra: str = "") -> str:
    """The caption line every figure carries: profile, datasets, models and seeds (mean ± std over seeds)."""
    as_text = lambda v: ", ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return (f"*{figure}* — profile `{profile}`; datasets: {as_text(datasets)}; models: {as_text(models)}; "
            f"seeds: {as_text(seeds)}{'; ' + extra if extra else ''}. Lines and bars are means over seeds, "
            f"bands and error bars ± one standard deviation.")
