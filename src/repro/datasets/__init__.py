"""The dataset registry: one `Dataset` record per module of this package; every list of datasets derives from it.

Adding a dataset is one module here that defines `DATASET = Dataset(...)`, one line in REGISTRY, and its
hyperparameters in repro.hparams.ERM. A test may register a record of its own with
`monkeypatch.setitem(REGISTRY, name, record)`. COMPANIONS holds the companion datasets: built from real files
that install offline (repro.companions), beside the paper's four; `get` finds them, `names` leaves them out.
"""
from __future__ import annotations

from repro.datasets import celeba, civilcomments, dominoes, multinli, rottentomatoes, waterbirds
from repro.datasets.base import Dataset

# Registry order is the order of tables and figures, and seeds each twin's generator (repro.synth).
REGISTRY: dict[str, Dataset] = {d.name: d for d in (waterbirds.DATASET, celeba.DATASET, civilcomments.DATASET,
                                                     multinli.DATASET)}
COMPANIONS: dict[str, Dataset] = {d.name: d for d in (dominoes.DATASET, rottentomatoes.DATASET)}


def get(name: str) -> Dataset:
    """The record of dataset `name` (the paper's or a companion); ValueError listing the names otherwise."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name in COMPANIONS:
        return COMPANIONS[name]
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)} "
                     f"(companions: {', '.join(COMPANIONS)})")


def names() -> tuple[str, ...]:
    """Names of the paper's datasets, in registry order."""
    return tuple(REGISTRY)


def companions() -> tuple[str, ...]:
    """Names of the companion datasets, in registry order."""
    return tuple(COMPANIONS)


def display(name: str) -> str:
    """Dataset `name` as figures, tables and verdicts show it ("CelebA"); a name not registered is returned as is."""
    record = REGISTRY.get(name) or COMPANIONS.get(name)
    return (record.display or record.name) if record else name
