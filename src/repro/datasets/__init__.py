"""The dataset registry: one `Dataset` record per module of this package; every list of datasets derives from it.

Adding a dataset is one module here that defines `DATASET = Dataset(...)`, one line in REGISTRY, and its
hyperparameters in repro.hparams.ERM. A test may register a record of its own with
`monkeypatch.setitem(REGISTRY, name, record)`.
"""
from __future__ import annotations

from repro.datasets import celeba, civilcomments, multinli, waterbirds
from repro.datasets.base import Dataset

# Registry order is the order of tables and figures, and seeds each twin's generator (repro.synth).
REGISTRY: dict[str, Dataset] = {d.name: d for d in (waterbirds.DATASET, celeba.DATASET, civilcomments.DATASET,
                                                     multinli.DATASET)}


def get(name: str) -> Dataset:
    """The record of dataset `name`; ValueError listing the registered names otherwise."""
    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name]


def names() -> tuple[str, ...]:
    """Names of the registered datasets, in registry order."""
    return tuple(REGISTRY)


def display(name: str) -> str:
    """Dataset `name` as figures, tables and verdicts show it ("CelebA"); a name not registered is returned as is."""
    record = REGISTRY.get(name)
    return (record.display or record.name) if record else name
