"""Finding and reading a registered dataset's metadata under a data root (plain or gzip-compressed files).

Every reader (a `Dataset` record's `read`) returns one DataFrame with the same columns, one row per example in
the official order:
  input: image filename relative to the dataset folder (vision), comment text (CivilComments),
         or row index into the cached features (MultiNLI)
  y, a, split: int64 class, spurious attribute and split (0 train, 1 val, 2 test)
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from repro import datasets, files


def find_root(name: str, root) -> Path:
    """The folder of dataset `name` under the data root `root` (any of its record's layouts)."""
    record = datasets.get(name)
    for sub in record.layouts:
        if files.locate(Path(root) / sub, record.marker) is not None:
            return Path(root) / sub
    expected = Path(root) / record.layouts[0] / record.marker
    raise FileNotFoundError(f"{name}: expected {expected} (or {expected.name}.gz); {files.fix(name, root)}")


def available(root) -> list[str]:
    """Names of the datasets whose metadata is present under `root`, in registry order (then the companions)."""
    return [d.name for d in (*datasets.REGISTRY.values(), *datasets.COMPANIONS.values())
            if any(files.locate(Path(root) / s, d.marker) for s in d.layouts)]


def read(name: str, root) -> pd.DataFrame:
    """The metadata of dataset `name` found under data root `root`: columns input, y, a, split."""
    return datasets.get(name).read(find_root(name, root))


def fingerprint(name: str, root) -> str:
    """sha256 (16 hex) of the dataset's metadata file and, for a twin, its SYNTHETIC.json (for a companion, its
    COMPANION.json).

    ERM configs carry it, so a run is recomputed when the data under the same root change (e.g. a twin
    rewritten at another scale)."""
    import hashlib

    folder = find_root(name, root)
    digest = hashlib.sha256()
    for path in (files.locate(folder, datasets.get(name).marker), folder / "SYNTHETIC.json", folder / "COMPANION.json"):
        if path is not None and path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
