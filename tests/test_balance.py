import numpy as np
import pytest

from repro import balance, datasets

from tests.conftest import REAL_METADATA as ROOT

RATIOS = (0.05, 0.1, 0.2, 0.5, 1.0)


def test_subsample_keeps_min_count_of_every_key():
    keys = np.array([0] * 5 + [1] * 2 + [2] * 3)
    idx = balance.subsample(keys, seed=0)
    assert np.bincount(keys[idx]).tolist() == [2, 2, 2]
    assert np.all(np.diff(idx) > 0)  # sorted, no repeats
    assert np.array_equal(idx, balance.subsample(keys, seed=0))
    assert any(not np.array_equal(idx, balance.subsample(keys, seed=s)) for s in range(1, 10))


def test_upsample_draws_every_key_equally_often():
    keys = np.array([0] * 10 + [1] * 90)
    idx = balance.upsample(keys, seed=0, n=200_000)
    assert len(idx) == 200_000 and len(balance.upsample(keys, seed=0)) == 100
    assert np.bincount(keys[idx]) / len(idx) == pytest.approx([0.5, 0.5], abs=0.005)


def test_upweight_gives_equal_total_weight_and_mean_one():
    w = balance.upweight(np.array([0, 0, 0, 1]))
    assert w == pytest.approx([2 / 3, 2 / 3, 2 / 3, 2])
    keys = np.random.default_rng(0).integers(0, 5, 1000)
    w = balance.upweight(keys)
    assert w.mean() == pytest.approx(1.0)
    assert np.bincount(keys, weights=w) == pytest.approx(np.full(5, 200.0))


def test_group_ratio_rejects_bad_ratio_and_groups_spanning_classes():
    y, g = np.array([0, 0, 1, 1]), np.array([0, 1, 2, 3])
    for r in (0, -0.1, 1.5):
        with pytest.raises(ValueError, match="group ratio"):
            balance.group_ratio_subset(y, g, r, seed=0)
    with pytest.raises(ValueError, match="one class"):
        balance.group_ratio_probs(y, np.array([0, 1, 1, 2]), 0.5)


def test_group_ratio_probs_are_class_balanced_with_minority_share_m():
    y = np.array([0] * 90 + [0] * 10 + [1] * 30 + [1] * 70)
    g = np.array([0] * 90 + [1] * 10 + [2] * 30 + [3] * 70)
    p = balance.group_ratio_probs(y, g, r=0.25)  # m = 0.2; minority = groups 1 and 2
    assert p.sum() == pytest.approx(1.0)
    assert np.bincount(g, weights=p) == pytest.approx([0.4, 0.1, 0.1, 0.4])
    p = balance.group_ratio_probs(y, g, r=0.25, minority=[2])  # class 0 has no minority: split evenly
    assert np.bincount(g, weights=p) == pytest.approx([0.25, 0.25, 0.1, 0.4])


def test_group_ratio_subset_on_hand_built_counts():
    y = np.array([0] * 50 + [0] * 10 + [1] * 20 + [1] * 40)
    g = np.array([0] * 50 + [1] * 10 + [2] * 20 + [3] * 40)
    idx = balance.group_ratio_subset(y, g, r=0.25, seed=0)  # budget 2 * 10 per class, m = 0.2 -> 4 minority
    assert np.bincount(g[idx]).tolist() == [16, 4, 4, 16]
    idx = balance.group_ratio_subset(y, g, r=1.0, seed=0)
    assert np.bincount(g[idx]).tolist() == [10, 10, 10, 10]


def _real(name):
    from repro import metadata

    df = metadata.read(name, ROOT)
    df = df[df.split == 0]
    n_attrs = 2
    return df.y.to_numpy(), (df.y * n_attrs + df.a).to_numpy()


@pytest.mark.parametrize("name,minority", [("waterbirds", None), ("celeba", datasets.get("celeba").paper_minority),
                                           ("multinli", None)])
def test_group_ratio_subset_on_real_training_splits(name, minority):
    y, g = _real(name)
    full = np.bincount(g).reshape(-1, 2)
    minor = set(minority) if minority is not None else {2 * c + 1 - int(np.argmax(n)) for c, n in enumerate(full)}
    sizes = set()
    for r in RATIOS:
        idx = balance.group_ratio_subset(y, g, r, seed=1, minority=minority)
        assert len(np.unique(idx)) == len(idx)
        sizes.add(len(idx))
        counts = np.bincount(g[idx], minlength=g.max() + 1).reshape(-1, 2)
        assert (counts.sum(1) == 2 * full.min()).all()  # class-balanced, 2 x smallest group per class
        for c, n in enumerate(counts):
            if 2 * c not in minor and 2 * c + 1 not in minor:
                assert n[0] == n[1]  # CelebA non-blond: split evenly, as in the paper's code
                continue
            k = 0 if 2 * c in minor else 1
            assert abs(n[k] - r * n[1 - k]) <= 1  # within rounding of r
    assert len(sizes) == 1  # total size does not depend on r


def test_group_ratio_budget_capped_when_a_majority_group_is_small():
    # CivilComments-like: in class 1 the majority group (3) has fewer examples than 2 x the smallest group (2)
    g = np.repeat([0, 1, 2, 3], [100, 60, 13, 18])
    y = g // 2
    sizes = {r: len(balance.group_ratio_subset(y, g, r, seed=0)) for r in (0.05, 0.1, 0.2, 0.5, 1.0)}
    assert set(sizes.values()) == {2 * 18}
    counts = balance.group_ratio_counts(y, g, 0.05)
    assert counts[3] <= 18 and counts[2] + counts[3] == 18
