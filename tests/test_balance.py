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


def test_group_ratio_counts_round_up_as_the_papers_code():
    # budget 2 * 10 = 20 per class; r = 0.1 -> m = 1/11: minority 20/11 = 1.82 -> 2, majority 18.18 -> 19
    y = np.array([0] * 50 + [0] * 10 + [1] * 20 + [1] * 40)
    g = np.array([0] * 50 + [1] * 10 + [2] * 20 + [3] * 40)
    assert balance.group_ratio_counts(y, g, 0.1) == {0: 19, 1: 2, 2: 2, 3: 19}
    # the paper's greedy loop (take a group's example while its count < its fractional target) gives the same
    target = 20 / 11
    assert sum(1 for _ in iter(lambda c=[0]: (c.__setitem__(0, c[0] + 1) or c[0]) if c[0] < target else None,
                               None)) == 2


def test_group_ratio_that_cannot_be_met_raises_one_line_naming_ratio_and_counts():
    # issue 11: the old rounding gave {1: 0, 3: 0} here (smallest group 1 -> budget 2, m * 2 = 1/3 example)
    y = np.array([0] * 51 + [1] * 30)
    g = np.array([0] * 50 + [1] + [2] * 20 + [3] * 10)
    with pytest.raises(ValueError, match=r"group ratio r = 0.2 cannot be met") as err:
        balance.group_ratio_counts(y, g, 0.2, minority=(1, 3))
    assert "\n" not in str(err.value) and "{0: 50, 1: 1, 2: 20, 3: 10}" in str(err.value)
    with pytest.raises(ValueError, match="cannot be met"):
        balance.group_ratio_subset(y, g, 0.2, seed=0, minority=(1, 3))
    # a group is never asked for more than it holds (random sets and minority choices)
    rng = np.random.default_rng(0)
    for _ in range(200):
        sizes = rng.integers(1, 30, 4)
        g = np.repeat(np.arange(4), sizes)
        y = g // 2
        minority = [int(k) for k in rng.choice(4, 2, replace=False) if k != 2 * (k // 2) + int(rng.integers(2))]
        try:
            counts = balance.group_ratio_counts(y, g, float(rng.choice([0.05, 0.2, 0.5, 1.0])), minority or None)
        except ValueError as e:
            assert "cannot be met" in str(e) or "only minority groups" in str(e)
            continue
        assert all(counts[k] <= sizes[k] for k in counts)


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
        assert (np.abs(counts.sum(1) - 2 * full.min()) <= 1).all()  # class-balanced up to rounding up
        for c, n in enumerate(counts):
            if 2 * c not in minor and 2 * c + 1 not in minor:
                assert n[0] == n[1]  # CelebA non-blond: split evenly, as in the paper's code
                continue
            k = 0 if 2 * c in minor else 1
            assert abs(n[k] - r * n[1 - k]) <= 1  # within rounding of r
    assert max(sizes) - min(sizes) <= len(full)  # total size does not depend on r beyond rounding up


def test_group_ratio_budget_capped_when_a_majority_group_is_small():
    # CivilComments-like: in class 1 the majority group (3) has fewer examples than 2 x the smallest group (2)
    g = np.repeat([0, 1, 2, 3], [100, 60, 13, 18])
    y = g // 2
    sizes = {r: len(balance.group_ratio_subset(y, g, r, seed=0)) for r in (0.1, 0.2, 0.5, 1.0)}
    assert all(2 * 18 <= n <= 2 * 18 + 2 for n in sizes.values())  # budget 18 per class, + rounding up
    counts = balance.group_ratio_counts(y, g, 0.1)
    assert counts[3] <= 18 and counts == {0: 17, 1: 2, 2: 2, 3: 17}  # 18 / 11 = 1.6 -> 2, 16.4 -> 17
    with pytest.raises(ValueError, match="r = 0.05 cannot be met"):  # 18 / 21 = 0.86 of an example
        balance.group_ratio_counts(y, g, 0.05)
