"""The two-feature toy problem of Figure 1: one core feature, one spurious feature, four groups.

x = (core, spurious) with core = y + noise and spurious = s + noise, y, s in {-1, +1}; in the training set
s agrees with y with probability `p_major` (majority groups), so class means lean on the spurious axis.
Figure 1(b) replaces every training point by its class mean (complete neural collapse) and takes the
classifier those means give; Figure 1(c) fits the max-margin SVM on uncollapsed held-out points.
"""
from __future__ import annotations

import numpy as np


def make(n: int, p_major: float, seed: int, noise: float = 0.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return features (n, 2), y (n,) in {0, 1} and a (n,) in {0, 1} (a == y in the majority groups)."""
    if not 0.0 < p_major <= 1.0:
        raise ValueError(f"p_major must be in (0, 1], got {p_major}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < p_major, y, 1 - y)
    centre = np.stack([2 * y - 1, 2 * a - 1], axis=1).astype(float)
    # noise is bounded so the classes stay separable along the core axis (the SVM exists)
    features = centre + noise * np.clip(rng.standard_normal((n, 2)), -2.5, 2.5)
    return features, y, a


def collapse(features: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Replace every point by the mean of its class (NC1 = 0)."""
    out = np.empty_like(features, dtype=float)
    for k in np.unique(y):
        out[y == k] = features[y == k].mean(axis=0)
    return out


def class_mean_classifier(features: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest-class-mean rule: w = mu_1 - mu_0, b puts the boundary halfway between the means."""
    mu0, mu1 = features[y == 0].mean(axis=0), features[y == 1].mean(axis=0)
    w = mu1 - mu0
    return w, float(-w @ (mu0 + mu1) / 2)


def svm(features: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, float]:
    """The hard-margin SVM with an unpenalized intercept, (w, b): repro.metrics.hard_margin_svm (exact; it
    raises if the points are not linearly separable, which `make`'s bounded noise rules out)."""
    from repro import metrics

    w, b = metrics.hard_margin_svm(features, y)
    return np.asarray(w, dtype=float), float(b)


def spurious_share(w: np.ndarray) -> float:
    """|w_spurious| / ||w||: 0 for a classifier that ignores the spurious feature, 1 for one that uses only it."""
    return float(abs(w[1]) / np.linalg.norm(w))


def group_accuracy(w: np.ndarray, b: float, features: np.ndarray, y: np.ndarray, a: np.ndarray) -> dict:
    """Accuracy of sign(w.x + b) per group name 'y=.., s=..' and the worst group."""
    from repro import metrics

    pred = (features @ w + b > 0).astype(int)
    acc = metrics.group_accuracy(pred, y, 2 * y + a, 4)
    out = {f"y={k}, s={s}": float(acc[2 * k + s]) for k in (0, 1) for s in (0, 1) if not np.isnan(acc[2 * k + s])}
    out["worst group"] = metrics.worst_group_accuracy(pred, y, 2 * y + a)
    return out
