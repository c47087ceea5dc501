"""Held-out sets: the paper's sizes, disjointness, seeding, and the source="train" ablation."""
from types import SimpleNamespace

import numpy as np
import pytest

from repro import data, metadata, split

from tests.conftest import REAL_METADATA as REAL


def _fake(name: str) -> SimpleNamespace:
    """A dataset with the real split sizes of Table 2 (test 2255 fixed for Waterbirds)."""
    t = data.PAPER_TABLE2[data.PAPER_TABLE2.dataset == name]
    sizes = np.array(t[["train", "val", "test"]].sum())
    if name == "waterbirds":
        sizes[2] = 5794
    return SimpleNamespace(name=name, split=np.repeat([0, 1, 2], sizes))


@pytest.mark.parametrize("name, n_train, n_heldout", [("waterbirds", 3836, 959), ("celeba", 162770, 9933),
                                                     ("civilcomments", 269038, 22590), ("multinli", 206175, 41231)])
def test_heldout_sizes_of_the_paper(name, n_train, n_heldout):
    # Waterbirds holds out 20% of train (Section 1, Appendix B.2); half of its val would be 599.
    train, held, test = split.heldout(_fake(name), seed=1)
    assert (len(train), len(held)) == (n_train, n_heldout)
    assert len(np.intersect1d(train, held)) == 0 and len(np.intersect1d(held, test)) == 0


def test_heldout_sizes_on_real_metadata():
    sizes = {}
    for name in ("waterbirds", "celeba", "multinli"):
        df = metadata.read(name, REAL)
        _, held, test = split.heldout(SimpleNamespace(name=name, split=df["split"].to_numpy()), seed=2)
        sizes[name] = (len(held), len(test))
    assert sizes == {"waterbirds": (959, 5794), "celeba": (9933, 19962), "multinli": (41231, 123712)}


def test_heldout_follows_the_papers_rng_procedure():
    d = _fake("celeba")
    val = np.flatnonzero(d.split == 1)
    np.random.default_rng(3).shuffle(val)
    assert np.array_equal(split.heldout(d, 3)[1], np.sort(val[:9933]))
    w = _fake("waterbirds")
    perm = np.random.default_rng(3).permutation(np.flatnonzero(w.split == 0))
    assert np.array_equal(split.heldout(w, 3)[1], np.sort(perm[3836:]))


@pytest.mark.parametrize("name", ["waterbirds", "multinli"])
def test_source_train_is_a_subset_of_the_erm_training_set(name):
    d = _fake(name)
    train_v, held_v, test_v = split.heldout(d, seed=5)
    train_t, held_t, test_t = split.heldout(d, seed=5, source="train")
    assert np.array_equal(train_t, train_v) and np.array_equal(test_t, test_v)
    assert len(held_t) == len(held_v) and np.isin(held_t, train_t).all() and len(np.unique(held_t)) == len(held_t)


def test_seeds_change_the_heldout_set_and_repeat_exactly():
    d = _fake("civilcomments")
    assert np.array_equal(split.heldout(d, 1)[1], split.heldout(d, 1)[1])
    assert not np.array_equal(split.heldout(d, 1)[1], split.heldout(d, 2)[1])


def test_unknown_source_lists_choices():
    with pytest.raises(ValueError, match="choose one of val, train"):
        split.heldout(_fake("celeba"), 0, source="test")
