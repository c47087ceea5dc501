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
majority group and m from its minority group(s) (split evenly over several), so the total size does not
depend on r. Which groups are minority: by default every group but the largest of its class; pass
`minority` to choose, e.g. (3,) for CelebA (its record's `paper_minority`), which mirrors the paper's code: non-blond
female and non-blond male are split 50/50 and only blond male is a minority group. A class without any
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


def _split(total: int, parts: int) -> list[int]:
    """`total` split into `parts` integers that differ by at most one (earlier parts get the remainder)."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def group_ratio_counts(y, g, r: float, minority=None) -> dict[int, int]:
    """Number of examples taken from every group at group ratio r: {group id: count}.

    Each class gets a budget of 2 * (smallest group count), as in the paper's code; its minority groups share
    round(m * budget) of it, m = r / (1 + r), and its majority group(s) the rest. Where a class's majority
    group(s) hold fewer examples than that budget (CivilComments: toxic/identity 17,784 < 2 x 12,731), the
    budget is capped at that count, so every r in (0, 1] stays feasible and the size still does not depend
    on r (the paper's code would run out of majority examples there).
    """
    r = _check_ratio(r)
    y, g, plan = _class_groups(y, g, minority)
    count = dict(zip(*np.unique(g, return_counts=True)))
    budget = min(2 * min(count.values()), *(sum(count[k] for k in major) for major, _ in plan.values()))
    m = r / (1 + r)
    counts = {}
    for c, (major, minor) in plan.items():
        n_minor = int(round(m * budget)) if minor else 0
        counts.update(zip(minor, _split(n_minor, max(len(minor), 1))))
        counts.update(zip(major, _split(budget - n_minor, len(major))))
    return {int(k): int(v) for k, v in sorted(counts.items())}


def group_ratio_subset(y, g, r: float, seed: int, minority=None) -> np.ndarray:
    """Indices of a class-balanced subset at group ratio r; its size does not depend on r (paper Sec. 3.1).

    y, g: (n,) class labels and group ids; minority: group ids treated as minority (default: all but the
    largest group of each class). After a default_rng(seed) permutation the first examples of each group
    are kept. Returns (C * 2 * min group count,) int64 indices, sorted ascending.
    """
    counts = group_ratio_counts(y, g, r, minority)
    g = _keys(g)
    perm = np.random.default_rng(seed).permutation(len(g))
    keep = []
    for k, n_k in counts.items():
        members = perm[g[perm] == k]
        if len(members) < n_k:
            raise ValueError(f"group {k} has {len(members)} examples but ratio {r} needs {n_k}; use a larger r "
                             "or choose its class's majority group differently via `minority`")
        keep.append(members[:n_k])
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
