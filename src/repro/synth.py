"""Synthetic twins of the registered datasets, written by their records in exactly the official on-disk formats.

A twin has the group proportions of paper Table 2 (counts x scale, at least `min_count` per group and split),
a core feature that decides the class and a spurious feature that decides the attribute, the spurious one
being the easier cue. The real loaders (repro.metadata, repro.data) read twins unchanged. Deterministic: the
same (name, scale, seed) writes byte-identical files. See /book deviations for what a twin can and cannot show.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from repro import datasets, files, runs


def table_counts(name: str) -> np.ndarray:
    """(3, n_classes, n_attrs) real counts per split, class and attribute (Table 2 with its record's fixes)."""
    return datasets.get(name).paper_counts()


# The fewest examples of a group in each split [train, val, test], per twin profile (default 4 in every split).
# cpu: every test group has at least 100 examples, so worst-group accuracy moves in steps of at most 0.01. Only
# groups below 100 are over-sampled, and only in the test split: worst-group accuracy does not depend on the test
# set's group proportions, and average accuracy on a twin's test set is reweighted to the real dataset's test
# proportions (GroupData.test_weights). Held-out sets are grown at the real proportions instead (the records'
# twin_scales), because last-layer retraining learns from their proportions.
TEST_MIN = 100
MIN_COUNTS = {"cpu": [4, 4, TEST_MIN]}
DEFAULT_MIN_COUNT = 4


def min_count_of(scale, min_count=None):
    """The per-group floor of a twin: min_count if given, else the profile's (MIN_COUNTS) when scale names one."""
    if min_count is not None:
        return min_count
    return MIN_COUNTS.get(scale, DEFAULT_MIN_COUNT) if isinstance(scale, str) else DEFAULT_MIN_COUNT


def counts(name: str, scale, min_count: int | list | None = None) -> np.ndarray:
    """(3, n_classes, n_attrs) example counts of the twin per split, class and attribute: Table 2 x scale, and at
    least min_count per group (one number, or [train, val, test]; default: the profile's MIN_COUNTS)."""
    min_count = min_count_of(scale, min_count)
    factors = np.asarray(resolve_scale(name, scale), dtype=float).reshape(3, 1, 1)
    floor = np.asarray(min_count, dtype=np.int64).reshape(-1, 1, 1)
    if floor.shape[0] not in (1, 3) or (floor < 1).any():
        raise ValueError(f"min_count must be a positive number or three [train, val, test] numbers, got {min_count}")
    return np.maximum(np.floor(table_counts(name) * factors + 0.5).astype(np.int64), floor)


HELDOUT_MIN, HELDOUT_Z, SCALE_STEP = 30, 3.0, 0.001  # held-out groups the cpu twins are sized for


def heldout_scale(name: str, n_min: int = HELDOUT_MIN, z: float = HELDOUT_Z) -> float:
    """The smallest scale (a multiple of SCALE_STEP, at most 1: never beyond the real dataset) of the split a
    held-out set is drawn from (val, or train for Waterbirds) at which its smallest group's expected held-out
    count minus z standard deviations (binomial, as a random held-out draw has) is at least n_min. The cpu
    twins' scale of that split is this value (tests/test_synth.py checks the records and every seed's counts)."""
    record = datasets.get(name)
    source = table_counts(name)[0 if record.erm_train_pct is not None else 1].min()
    frac = 1 - record.erm_train_pct / 100 if record.erm_train_pct is not None else 0.5
    for k in range(1, int(round(1 / SCALE_STEP)) + 1):
        expected = frac * k * SCALE_STEP * source
        if expected - z * np.sqrt(expected * (1 - frac)) >= n_min:
            return round(k * SCALE_STEP, 6)
    return 1.0


def _rows(name: str, scale, rng, min_count: int):
    """(n,) y, a, split: Table 2 counts x scale, ordered by split, shuffled within each split."""
    counts_ = counts(name, scale, min_count)
    ys, as_, splits = [], [], []
    for s in range(3):
        y, a = np.divmod(np.repeat(np.arange(counts_[s].size), counts_[s].ravel()), counts_.shape[2])
        perm = rng.permutation(len(y))
        ys.append(y[perm]), as_.append(a[perm]), splits.append(np.full(len(y), s))
    return np.concatenate(ys), np.concatenate(as_), np.concatenate(splits)


def resolve_scale(name: str, scale) -> list[float]:
    """[train, val, test] factors from a float, a list of three, or a profile name looked up in the dataset
    record's twin_scales (smoke, cpu, rehearse)."""
    if isinstance(scale, str):
        scales = datasets.get(name).twin_scales
        if scale not in scales:
            raise ValueError(f"unknown scale {scale!r}; choose a number or one of {', '.join(scales)}")
        scale = scales[scale]
    factors = [float(scale)] * 3 if np.isscalar(scale) else [float(f) for f in scale]
    if len(factors) != 3 or not all(f > 0 for f in factors):
        raise ValueError(f"scale must be a positive number or three positive [train, val, test] factors, got {scale}")
    return factors


def write(name: str, root, scale="cpu", seed: int = 0, image_size: int = 32, min_count=None) -> Path:
    """Write the twin of `name` to root/<name>/ unless that very twin is already there; returns its folder.

    Under the lock root/.<name>.lock, so concurrent writers write it once and readers never see it half
    written: it is built in a temporary folder and renamed into place; a twin with other settings is renamed
    aside first, never rewritten in place. Temporary folders left by a killed writer are removed."""
    record = datasets.get(name)
    if record.companion:
        record.write_twin()  # a companion has no twin: one line saying how to build it
    min_count = min_count_of(scale, min_count)
    scale = resolve_scale(name, scale)
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass a folder as --root")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"data root {root} cannot be created ({err.strerror}); pass a writable folder") from None
    info = _identity(name, scale, seed, image_size, min_count)

    def write_twin(folder: Path) -> None:
        rng = np.random.default_rng([seed, datasets.names().index(name)])
        y, a, split = _rows(name, scale, rng, min_count)
        record.write_twin(folder, y, a, split, rng, image_size)
        (folder / "SYNTHETIC.json").write_text(json.dumps(info, indent=1) + "\n")

    return write_folder(root, name, f"the {name} twin", lambda: _current(root / name, name, info), write_twin)


def write_folder(root: Path, name: str, what: str, is_current, write) -> Path:
    """root/<name>/, written by write(folder) unless is_current(), under the lock root/.<name>.lock: in a
    temporary folder renamed into place (one with other settings is renamed aside first, never rewritten in
    place), after removing the temporary folders a killed writer left."""
    target = root / name
    with runs.file_lock(root / f".{name}.lock", f"{what} in {root}"):
        for stale in _leftovers(root, name):  # only the lock holder writes these: a killed writer's
            shutil.rmtree(stale, ignore_errors=True)
        if is_current():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=root))
        try:
            folder = tmp / name
            folder.mkdir()
            write(folder)
            if target.exists():
                os.replace(target, tmp / "replaced")  # aside, not rewritten in place
            os.replace(folder, target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _leftovers(root: Path, name: str) -> list[Path]:
    return [p for p in Path(root).glob(f".{name}.*") if p.is_dir()]


def _current(folder: Path, name: str, info: dict) -> bool:
    """Whether `folder` holds a complete twin written with the settings `info`."""
    meta = folder / "SYNTHETIC.json"
    try:
        return files.locate(folder, datasets.get(name).marker) is not None and json.loads(meta.read_text()) == info
    except (OSError, ValueError):
        return False


def _identity(name: str, scale, seed: int, image_size: int = 32, min_count=None) -> dict:
    return dict(synthetic=True, name=name, scale=resolve_scale(name, scale), seed=seed, image_size=image_size,
                min_count=min_count_of(scale, min_count))


def ensure(root, names=None, scale="cpu", seed: int = 0, **opts) -> list[str]:
    """Write the twins of `names` (default: every registered dataset) that are missing under `root` or were
    written with other settings."""
    names = datasets.names() if names is None else names
    missing = [name for name in names if not _current(Path(root) / name, name, _identity(name, scale, seed, **opts))]
    for name in names:
        if name in missing or _leftovers(root, name):
            write(name, root, scale, seed, **opts)  # under its lock: writes it unless another process just did
    return missing
