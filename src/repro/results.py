"""Tidy tables of results for use from Python: `load(kind, **filters)` reads finished runs from the run store and
gives every run that was computed from an ERM run (a head, an SVM path) that ERM run's identifying config.

The store is found the same way from any folder (repro.runs.default_root: $REPRO_RUNS, else the runs/ folder
of the repository); reading an empty or missing store, or one without a run of the kind asked for, says so
with a warning instead of returning an empty table silently. The book's page "Using the results from Python" shows it with examples.
"""
from __future__ import annotations

import warnings

import pandas as pd

from repro import runs

# The ERM config keys that tell a head's ERM run apart in the paper's grids (the joined columns are erm_<key>).
ERM_KEYS = ("dataset", "profile", "model", "seed", "balance", "balance_by", "group_ratio", "train_set")


def join_erm(table: pd.DataFrame, erm: pd.DataFrame, keys=ERM_KEYS) -> pd.DataFrame:
    """`table` (rows with an `erm` column: the ERM run id they were computed from) with the columns erm_<key>
    of that ERM run from `erm` (a runs.load("erm") table), NaN where the ERM run or the key is missing."""
    source = erm.drop_duplicates("run_id").set_index("run_id").reindex(columns=list(keys))
    ids = table["erm"] if "erm" in table.columns else pd.Series([None] * len(table), dtype=object)
    joined = source.reindex(ids).add_prefix("erm_")
    return table.assign(**{column: joined[column].to_numpy() for column in joined.columns})


def load(kind: str, store=None, **filters) -> pd.DataFrame:
    """One row per finished run of `kind` (the columns of repro.runs.load), plus, for a kind computed from an
    ERM run (heads, svm), that run's columns erm_<key> for each key of ERM_KEYS.

    A filter key=value keeps rows whose column equals value (a tuple/set: one of; a callable: a predicate).
    The key names a column; for a key that is not one, erm_<key> is used, so load("heads", dataset="waterbirds")
    keeps the heads of Waterbirds ERM runs. An unknown key is a ValueError naming the columns.
    """
    root = (store if isinstance(store, runs.Store) else runs.Store(store)).root
    table = runs.load(kind, store)  # (an unknown kind: ValueError naming the registered ones)
    kinds = sorted({done.parent.parent.name for done in root.glob("*/*/done")})
    if not kinds:
        warnings.warn(f"the run store {root} holds no finished run; build the book (`make book`) or a section "
                      f"to fill it, or set REPRO_RUNS to another store", stacklevel=2)
    elif kind not in kinds:
        warnings.warn(f"the run store {root} holds no finished {kind} run (only {', '.join(kinds)}); build the "
                      f"sections that compute them, or set REPRO_RUNS to another store", stacklevel=2)
    if "erm" in table.columns:
        ids = tuple(dict.fromkeys(table["erm"]))
        table = join_erm(table, runs.load("erm", store, run_id=ids))
    for key, wanted in filters.items():
        column = key if key in table.columns or f"erm_{key}" not in table.columns else f"erm_{key}"
        if table.empty:
            break
        if column not in table.columns:
            raise ValueError(f"unknown filter {key!r} for kind {kind!r}; columns: {', '.join(table.columns)}")
        table = table[[runs.matches(v, wanted) for v in table[column]]]
    return table.reset_index(drop=True)
