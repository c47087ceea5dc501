"""DFR as Kirichenko et al. (2023) code it (PolinaKirichenko/deep_feature_reweighting, dfr_evaluate_spurious.py):
L1-regularized logistic regression (liblinear) on standardized features, C tuned by worst-group accuracy on
half of the held-out set, the final head averaged over group-balanced resamples of the whole held-out set.

The paper's LLR/DFR (repro.last_layer "dfr") is plain SGD on unscaled features; this module is the original
method beside it (Figure 7), so a reader can see how much of a gap is the optimizer. Following their code:
- tuning (dfr_on_validation_tune, one round): a seeded random half of the held-out set, group-balanced by
  subsetting every group to the smallest group's size, is the training set; unlike their plain random half,
  the halves are stratified by group (`stratified_halves`), so every group with at least 2 examples is in both;
  a group with fewer (or none) cannot be, and the head records it (`tuning_groups_missing`) instead of
  balancing silently over the groups present (their code would fail there); a StandardScaler is fit on it;
  each C in C_OPTIONS is fit and scored by worst-group accuracy on the other (unbalanced) half; the first C
  with the best score wins (np.argmax);
- final fit (dfr_on_validation_eval): a StandardScaler fit on the ERM training-set features; `n_resamples`
  (20 in their code) group-balanced subsets of the whole held-out set, one fit each with the chosen C; the
  coefficients and intercepts are averaged.
Randomness: numpy default_rng(seed) for the split, the resamples and liblinear's seeds (their code uses the
global np.random state seeded once), so one seed gives the same head bit for bit.
The averaged head is mapped back to raw features, W x + b, so that it is evaluated and stored like any head.
"""
from __future__ import annotations

import warnings

import numpy as np

from repro.metrics import _np  # torch tensor or array -> numpy array of a dtype

C_OPTIONS = (1.0, 0.7, 0.3, 0.1, 0.07, 0.03, 0.01)


def balanced_subset(g, rng) -> np.ndarray:
    """Indices of a group-balanced subset: every group present cut to the smallest group's size after a
    permutation drawn from rng (their `np.random.shuffle` of each group's indices)."""
    groups = [np.flatnonzero(g == k) for k in np.unique(g)]
    smallest = min(len(idx) for idx in groups)
    return np.concatenate([rng.permutation(idx)[:smallest] for idx in groups])


def stratified_halves(g, rng, n_groups: int | None = None) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Split indices into (scoring half, training half) within every group: a group of n_k examples gives
    n_k // 2 to the scoring half and the rest to the training half, after a permutation drawn from rng. Returns
    the two index arrays and the groups (of 0 .. n_groups-1, else of those present) missing from either half:
    those with fewer than 2 examples (a single example goes to the training half)."""
    n_groups = int(g.max()) + 1 if n_groups is None else n_groups
    score, train, missing = [], [], []
    for k in range(n_groups):
        idx = rng.permutation(np.flatnonzero(g == k))
        score.append(idx[:len(idx) // 2]), train.append(idx[len(idx) // 2:])
        if len(idx) < 2:
            missing.append(k)
    return np.sort(np.concatenate(score)), np.sort(np.concatenate(train)), missing


def _fit(x, y, C: float, rng) -> tuple[np.ndarray, np.ndarray]:
    """L1 logistic regression by liblinear (their LogisticRegression(penalty="l1", solver="liblinear"); l1_ratio=1
    is the same model in scikit-learn >= 1.8), liblinear's shuffling seeded from rng. More than two classes:
    one-vs-rest, which liblinear did by itself in the scikit-learn of their code. Returns coef (K, d), intercept
    (K,) with K = 1 for two classes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=int(rng.integers(2**31 - 1)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # liblinear's ConvergenceWarning at its default max_iter, as in their runs
        if len(np.unique(y)) <= 2:
            model.fit(x, y)
            return model.coef_, model.intercept_
        parts = OneVsRestClassifier(model).fit(x, y).estimators_
    return np.vstack([m.coef_ for m in parts]), np.concatenate([m.intercept_ for m in parts])


def _predict(x, coef, intercept, classes) -> np.ndarray:
    z = x @ coef.T + intercept
    return classes[(z[:, 0] > 0).astype(int)] if coef.shape[0] == 1 else classes[z.argmax(1)]


def tune_c(x, y, g, rng, c_options=C_OPTIONS, n_groups: int | None = None) -> tuple[float, dict, list[int]]:
    """C by worst-group accuracy: train on a group-balanced random half, score on the other half (halves
    stratified by group). Returns (best C, {C: worst-group accuracy}, groups missing from either half)."""
    from sklearn.preprocessing import StandardScaler

    score_idx, train_idx, missing = stratified_halves(g, rng, n_groups)
    train_idx = train_idx[balanced_subset(g[train_idx], rng)]
    scaler = StandardScaler().fit(x[train_idx])
    xt, xs = scaler.transform(x[train_idx]), scaler.transform(x[score_idx])
    scores = {}
    for C in c_options:
        pred = _predict(xs, *_fit(xt, y[train_idx], C, rng), np.unique(y[train_idx]))
        correct = pred == y[score_idx]
        scores[C] = float(min(correct[g[score_idx] == k].mean() for k in np.unique(g[score_idx])))
    return max(scores, key=lambda c: (scores[c], -c_options.index(c))), scores, missing


def fit(features, y, g, seed: int, *, features_train, n_classes: int, n_resamples: int = 20,
        n_groups: int | None = None):
    """One DFR head (Kirichenko et al.) on the held-out set: W (n_classes, d), b (n_classes,) float32 torch
    tensors on raw features, plus {"C": chosen C, "wga_by_C": tuning scores, "dfr_tuning_groups_missing":
    groups (of n_groups, else of those present) missing from a tuning half, "dfr_group_counts": held-out
    examples per group (the final fit's resamples balance the groups present to the smallest count)}.

    features (n, d), y, g (n,): the held-out set; features_train: the ERM training-set features (their
    final fit standardizes with the training set's statistics). A binary problem gives a 2-logit head
    [0, w] so that it reads like the ERM head; more classes give liblinear's one-vs-rest rows.
    """
    import torch
    from sklearn.preprocessing import StandardScaler

    if n_resamples < 1:
        raise ValueError(f"dfr_l1 needs n_resamples >= 1, got {n_resamples}")
    x, y, g = _np(features, np.float64), _np(y, np.int64), _np(g, np.int64)
    rng = np.random.default_rng(seed)
    C, scores, missing = tune_c(x, y, g, rng, n_groups=n_groups)
    scaler = StandardScaler().fit(_np(features_train, np.float64))
    z = scaler.transform(x)
    coefs, intercepts = [], []
    for _ in range(n_resamples):
        idx = balanced_subset(g, rng)
        coef, intercept = _fit(z[idx], y[idx], C, rng)
        coefs.append(coef), intercepts.append(intercept)
    coef, intercept = np.mean(coefs, axis=0), np.mean(intercepts, axis=0)
    W = coef / scaler.scale_  # z = (x - mean) / scale  ->  coef z + c = (coef / scale) x + c - (coef / scale) mean
    b = intercept - W @ scaler.mean_
    if n_classes == 2 and W.shape[0] == 1:
        W, b = np.vstack([np.zeros_like(W), W]), np.r_[0.0, b]
    if W.shape[0] != n_classes:
        raise ValueError(f"dfr_l1 learned {W.shape[0]} rows for {n_classes} classes: a class is missing from the "
                         "held-out set")
    return torch.as_tensor(W, dtype=torch.float32), torch.as_tensor(b, dtype=torch.float32), \
        {"C": C, "wga_by_C": {str(c): v for c, v in scores.items()}, "dfr_tuning_groups_missing": missing,
         "dfr_group_counts": np.bincount(g, minlength=n_groups or 0).tolist()}
