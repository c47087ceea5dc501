"""Held-out sets for last-layer retraining (paper Section 1 "Datasets and models" and Appendix B.2).

"Following standard practice, we use 20% of the training set for the held-out set on Waterbirds and half the
validation set as the held-out set in all other datasets." As in the paper's code (`retrain.py:_split_dataset`),
the split seed is the training seed, so the held-out set changes with the seed.
"""
from __future__ import annotations

import numpy as np

from repro import datasets

TRAIN, VAL, TEST = 0, 1, 2
SOURCES = ("val", "train")


def heldout(data, seed: int, source: str = "val") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_idx, heldout_idx, test_idx): sorted int64 indices into `data` (anything with .name and (n,) .split).

    source="val" (the paper's LLR held-out set):
      Waterbirds: the train indices are permuted by numpy default_rng(seed); ERM trains on the first 80%
        (3836 of 4795 real images), the remaining 20% (959) is held out; val is unused.
      Others: the val indices are shuffled by default_rng(seed); the first int(0.5 |val|) are held out
        (9933 CelebA, 22590 CivilComments, 41231 MultiNLI); ERM trains on all of train; the rest of val is unused.
        (Half of the Waterbirds val would be 599, but the paper uses 20% of train for Waterbirds.)
    source="train" (LLR on "an imbalanced subset of the training set"): the ERM training set is the same as
      above; the held-out set is a random subset of it, of the same size as the source="val" held-out set,
      drawn with the same rng after the split above.
    """
    if source not in SOURCES:
        raise ValueError(f"unknown held-out source {source!r}; choose one of {', '.join(SOURCES)}")
    split = np.asarray(data.split)
    rng = np.random.default_rng(seed)
    test_idx = np.flatnonzero(split == TEST)
    pct = datasets.get(data.name).erm_train_pct  # held out of train (Waterbirds), else half of val
    if pct is not None:
        perm = rng.permutation(np.flatnonzero(split == TRAIN))
        n_erm = len(perm) * pct // 100
        train_idx, held = perm[:n_erm], perm[n_erm:]
    else:
        val = np.flatnonzero(split == VAL)
        rng.shuffle(val)
        train_idx, held = np.flatnonzero(split == TRAIN), val[: int(0.5 * len(val))]
    if source == "train":
        held = rng.choice(train_idx, size=len(held), replace=False)
    return np.sort(train_idx).astype(np.int64), np.sort(held).astype(np.int64), test_idx.astype(np.int64)
