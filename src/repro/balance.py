"""Balancing a dataset by a key vector: class labels to class-balance, group ids to group-balance.

Paper Sec. 3.2 (and Appendix A) compares three techniques, each a function of a key vector `keys` (n,):
  subsample(keys, seed)  -> indices: every key cut to the size of the smallest key ("subsetting")
  upsample(keys, seed)   -> indices drawn with replacement, every key equally likely in expectation
  upweight(keys)         -> per-example loss weights, every key with the same total weight

Upweighting normalization. The paper's code multiplies the per-example cross-entropy by hard-coded weights
max_count / count (computed once on the full training split, e.g. CelebA class weights [1, 5.71], group weights
[1, 1.07, 3.21, 51.64]) and takes `.mean()` of the batch without dividing by the sum of the weights. We
normalize the weights to mean 1 over the given examples instead. The two differ by one constant factor per
dataset, and with plain SGD a constant factor on the loss only rescales the effective learning rate (the
paper's CelebA group weights average about 2.4 over the training set, so its upweighted runs used a ~2.4x
larger effective step than ours).

Group ratio (paper Sec. 3.1, Fig. 4): within a class, r = (#minority) / (#majority), 0 < r <= 1. With
m = r / (1 + r), every class gets the same budget 2 * (smallest group count), a share 1 - m from its
majority group and m from its minority group(s) (split evenly over several), each group's count rounded up as
in the paper's code, so the total size does not depend on r beyond that rounding. A ratio the budget cannot
express (a minority share below one example) raises instead of silently taking 0 or 1 examples. Which groups
are minority: by default every group but the largest of its class; pass `minority` to choose, e.g. (3,) for
CelebA (its record's `paper_minority`), which mirrors the paper's code: non-blond female and non-blond male
are split 50/50 and only blond male is a minority group. A class without any
minority group is split evenly over its groups.
"""
from __future__ import annotations

import numpy as np

# Balancing names, as configs and specs spell them: "none", then the three techniques of this module.
BALANCES = ("none", "subsetting", "upsampling", "upweighting")
METHODS = BALANCES[1:]


def _keys(keys) -> np.ndarray:
    keys = np.asarray(keys.cpu() if hasattr(keys, "cpu") else keys)
    if keys.ndim != 1 or len(keys) == 0:
        raise ValueError(f"keys must be a non-empty 1-D array of class labels or group ids, got shape {keys.shape}")
    return keys


def subsample(keys, seed: int) -> np.ndarray:
    """Indices that keep min-count examples of every key present, chosen by a seeded permutation.

    keys: (n,) -> (K * min_count,) int64 indices, sorted ascending.
    """
    keys = _keys(keys)
    values, counts = np.unique(keys, return_counts=True)
    perm = np.random.default_rng(seed).permutation(len(keys))
    keep = [perm[keys[perm] == v][: counts.min()] for v in values]
    return np.sort(np.concatenate(keep)).astype(np.int64)


def inverse_count_probs(keys) -> np.ndarray:
    """Per-example probabilities proportional to 1 / count(key), summing to 1: (n,) -> (n,) float64."""
    keys = _keys(keys)
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    probs = 1.0 / counts[inverse]
    return probs / probs.sum()


def draw(probs, seed: int, n: int | None = None) -> np.ndarray:
    """n indices (default len(probs)) drawn with replacement with the given probabilities (numpy default_rng)."""
    probs = np.asarray(probs, dtype=np.float64)
    n = len(probs) if n is None else int(n)
    return np.random.default_rng(seed).choice(len(probs), size=n, replace=True, p=probs / probs.sum()).astype(np.int64)


def upsample(keys, seed: int, n: int | None = None) -> np.ndarray:
    """n indices (default len(keys)) drawn with replacement, probability proportional to 1 / count(key).

    keys: (n,) -> (n,) int64 indices in draw order; every key is equally likely in expectation.
    """
    return draw(inverse_count_probs(keys), seed, n)


def upweight(keys) -> np.ndarray:
    """Per-example loss weights proportional to 1 / count(key) with mean 1: (n,) -> (n,) float64.

    Every key gets the same total weight n / K (see the module docstring for the paper's normalization).
    """
    return inverse_count_probs(keys) * len(_keys(keys))


def _check_ratio(r: float) -> float:
    if not 0 < r <= 1:
        raise ValueError(f"group ratio r = #minority / #majority must be in (0, 1], got {r}")
    return float(r)


def _class_groups(y, g, minority) -> tuple[np.ndarray, np.ndarray, dict]:
    """For every class: (majority groups, minority groups) among the groups present."""
    y, g = _keys(y), _keys(g)
    if len(y) != len(g):
        raise ValueError(f"y and g must have the same length, got {len(y)} and {len(g)}")
    plan = {}
    for c in np.unique(y):
        groups, counts = np.unique(g[y == c], return_counts=True)
        if np.isin(groups, g[y != c]).any():
            raise ValueError("every group must belong to one class; build g as y * n_attrs + a")
        if minority is None:
            minor = [k for k in groups if k != groups[np.argmax(counts)]]
        else:
            minor = [k for k in groups if k in set(int(m) for m in minority)]
        major = [k for k in groups if k not in minor]
        if not major:
            raise ValueError(f"class {c} has only minority groups {minor}; leave its majority group out of `minority`")
        plan[int(c)] = (major, minor)
    return y, g, plan


def group_ratio_counts(y, g, r: float, minority=None) -> dict[int, int]:
    """Number of examples taken from every group at group ratio r: {group id: count}.

    Each class gets a budget B of 2 * (smallest group count), as in the paper's code; its minority groups get
    m * B, m = r / (1 + r), split evenly, its majority group(s) (1 - m) * B, split evenly (a class without a
    minority group: B split evenly), each count rounded UP as the paper's code does (make_group_ratio_subset
    keeps taking a group's examples while its count is below the fractional target). Where a class's majority
    group(s) hold fewer examples than B (CivilComments: toxic/identity 17,784 < 2 x 12,731), B is capped at
    that count, so the size does not depend on r (up to the rounding, one example per group).

    Raises ValueError (naming r and the group counts) when the ratio cannot be met: a minority group's exact
    share m * B / (its class's minority groups) is below one example (rounding up would then give it more
    than the requested share; e.g. r = 0.2 with a smallest group of 1). No group is asked for more examples
    than it holds: a minority share is at most B / 2 <= the smallest group, and the majority groups' total is
    at least B (the cap).
    """
    r = _check_ratio(r)
    y, g, plan = _class_groups(y, g, minority)
    count = {int(k): int(v) for k, v in zip(*np.unique(g, return_counts=True))}
    budget = min(2 * min(count.values()), *(sum(count[k] for k in major) for major, _ in plan.values()))
    m = r / (1 + r)

    def up(x: float) -> int:  # ceil, robust to a float product landing a hair above an integer
        return int(np.ceil(x - 1e-9))

    counts = {}
    for major, minor in plan.values():
        if minor:
            share = m * budget / len(minor)
            if share < 1:
                raise ValueError(f"group ratio r = {r} cannot be met: its minority groups {[int(k) for k in minor]} would get "
                                 f"{share:.3g} examples each (budget {budget} per class, group counts {count}); "
                                 "use a larger r or a set with larger groups")
            counts.update({k: up(share) for k in minor})
        counts.update({k: up((1 - m if minor else 1.0) * budget / len(major)) for k in major})
    return {int(k): int(v) for k, v in sorted(counts.items())}


def group_ratio_subset(y, g, r: float, seed: int, minority=None) -> np.ndarray:
    """Indices of a class-balanced subset at group ratio r; its size does not depend on r (paper Sec. 3.1).

    y, g: (n,) class labels and group ids; minority: group ids treated as minority (default: all but the
    largest group of each class). After a default_rng(seed) permutation the first examples of each group
    are kept. Returns about C * 2 * min group count int64 indices (group_ratio_counts rounds each group up),
    sorted ascending.
    """
    counts = group_ratio_counts(y, g, r, minority)
    g = _keys(g)
    perm = np.random.default_rng(seed).permutation(len(g))
    keep = []
    for k, n_k in counts.items():
        keep.append(perm[g[perm] == k][:n_k])  # group_ratio_counts checked that every group holds n_k
    return np.sort(np.concatenate(keep)).astype(np.int64)


def group_ratio_probs(y, g, r: float, minority=None) -> np.ndarray:
    """Per-example sampling probabilities (n,) summing to 1 at group ratio r, for upsampling.

    In expectation the draw is class-balanced, with minority share m = r / (1 + r) within each class split
    evenly over its minority groups (the paper's code: weight w_g / n_g, e.g. w = [1-m, m, m, 1-m] / 2).
    """
    r = _check_ratio(r)
    y, g, plan = _class_groups(y, g, minority)
    m = r / (1 + r)
    probs = np.zeros(len(g))
    for major, minor in plan.values():
        shares = [(1 - m) / len(major)] * len(major) + [m / len(minor)] * len(minor) if minor else \
            [1.0 / len(major)] * len(major)
        for k, share in zip(major + minor, shares):
            members = g == k
            probs[members] = share / len(plan) / members.sum()
    return probs / probs.sum()
