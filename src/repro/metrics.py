"""Metrics: pure functions of arrays (numpy or torch in, numpy floats out).

Accuracy: per-group accuracy, worst-group accuracy (WGA, empty groups never count), average accuracy, and
the Waterbirds-style average weighted by training group proportions; `summarize` returns fixed keys
acc_avg, acc_wavg (only with proportions), acc_wg, acc_g0 ... acc_g{n_groups-1}, and pred_classes (how many
distinct classes the classifier predicts: 1 marks a trivial classifier that gives every example one class).

NC1 (paper Sec. 2.1): NC1 = (1/K) tr(Sigma_A Sigma_R^+) on the penultimate features, K = number of classes.
Margins (paper Sec. 2.2): y f(x) / ||theta|| of the linear head on the features, per group min and average.
SVM direction (paper Fig. 3): ||theta/||theta|| - theta_svm/||theta_svm|| ||_2, theta_svm from the exact hard-margin
SVM with a bias (Sec. 2.2), which exists only where the features are linearly separable (an LP decides).

How the paper's code differs (reference-code.md, section D), for the book's deviations page:
- NC1 there is computed on the flattened *pre-pooling* maps (ResNet layer4, all BERT tokens), not on the
  pooled vector the classifier sees; tr(Sigma_W Sigma_B^+) is a Hutchinson estimate (3-10 Rademacher probes,
  Sigma_B^+ z by LSQR), and it has *no* 1/K factor. The master branch instead uses
  tr(Sigma_W pinv(Sigma_B + 1e-3 I)) / K, whose ridge dominates the null space. We compute the paper's text
  formula exactly on the pooled features, with the exact pseudo-inverse.
- Margins there are p_y - max_{k != y} p_k on *softmax probabilities*, divided by the L2 norm of all
  trainable parameters (the whole network during ERM, the head in LLR). We use logits of the linear head
  (the paper's f(x) = x^T theta + b) divided by the norm of the head's weight matrix, bias excluded.
- The SVM there is LinearSVC(fit_intercept=False, C=1e5): no bias, and a squared hinge loss that does not
  reach the hard-margin solution. We solve the hard-margin SVM of the paper's Sec. 2.2 (with a bias) exactly
  and report "not separable" where it does not exist. The directional error ignores the bias, as there.
"""
from __future__ import annotations

import warnings

import numpy as np


def _np(x, dtype=None) -> np.ndarray:
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    return x if dtype is None else x.astype(dtype, copy=False)


# ---------------------------------------------------------------- accuracy


def group_accuracy(pred, y, g, n_groups: int) -> np.ndarray:
    """Accuracy of every group: (n,) x3 -> (n_groups,) float64, NaN for groups without examples."""
    pred, y, g = _np(pred), _np(y), _np(g).astype(np.int64)
    if not len(pred) == len(y) == len(g):
        raise ValueError(f"pred, y and g must have the same length, got {len(pred)}, {len(y)}, {len(g)}")
    if len(g) and (g.min() < 0 or g.max() >= n_groups):
        raise ValueError(f"group ids must lie in [0, {n_groups}), got [{g.min()}, {g.max()}]; check n_groups")
    correct = np.bincount(g, weights=(pred == y).astype(np.float64), minlength=n_groups)
    total = np.bincount(g, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, correct / np.maximum(total, 1), np.nan)


def worst_group_accuracy(pred, y, g) -> float:
    """Minimum accuracy over the groups that have examples (WGA)."""
    g = _np(g).astype(np.int64)
    return float(np.nanmin(group_accuracy(pred, y, g, int(g.max()) + 1)))


def average_accuracy(pred, y) -> float:
    """Fraction of correct predictions."""
    pred, y = _np(pred), _np(y)
    if len(pred) != len(y) or len(y) == 0:
        raise ValueError(f"pred and y must be non-empty and of equal length, got {len(pred)} and {len(y)}")
    return float(np.mean(pred == y))


def weighted_average_accuracy(pred, y, g, group_weights) -> float:
    """Sum_g acc_g * w_g / sum_g w_g over groups with examples (Waterbirds' convention: w = train proportions)."""
    w = _np(group_weights, np.float64)
    acc = group_accuracy(pred, y, g, len(w))
    present = ~np.isnan(acc)
    return float(np.sum(acc[present] * w[present]) / np.sum(w[present]))


def summarize(pred, y, g, n_groups: int, train_group_props=None, avg_weights=None) -> dict:
    """Fixed-key summary: acc_avg, acc_wavg (only if train_group_props given), acc_wg, acc_g0 .. acc_g{n-1},
    pred_classes (number of distinct predicted classes).

    avg_weights: (n_groups,) group proportions to weight acc_avg by instead of the examples' own (a synthetic
    twin's test split, whose small groups are over-sampled: the real test proportions)."""
    acc = group_accuracy(pred, y, g, n_groups)
    out = {"acc_avg": average_accuracy(pred, y) if avg_weights is None else
           weighted_average_accuracy(pred, y, g, avg_weights)}
    if train_group_props is not None:
        out["acc_wavg"] = weighted_average_accuracy(pred, y, g, train_group_props)
    out["acc_wg"] = float(np.nanmin(acc))
    out.update({f"acc_g{k}": float(a) for k, a in enumerate(acc)})
    out["pred_classes"] = int(len(np.unique(_np(pred))))
    return out


# ---------------------------------------------------------------- neural collapse


def _torch(x, dtype=None):
    """x as a torch tensor on its own device (numpy arrays: on the CPU)."""
    import torch

    t = x if torch.is_tensor(x) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def nc1(features, y, chunk_size: int = 8192, rtol: float = 1e-10) -> float:
    """NC1 = (1/K) tr(Sigma_A Sigma_R^+) (paper Sec. 2.1); features (n, d), y (n,) -> float.

    Sigma_A = (1/n) sum_i (f_i - mu_{y_i})(.)^T, mu_G = mean of the K class means (unweighted),
    Sigma_R = (1/K) sum_y (mu_y - mu_G)(.)^T, K = number of classes present.
    Sigma_R = (1/K) M^T M with M (K, d) the centered class means has rank <= K - 1, so with the SVD
    M = U S V^T: Sigma_R^+ = K V S^-2 V^T and NC1 = sum_j v_j^T Sigma_A v_j / s_j^2 over the s_j^2 > rtol *
    max s^2 (eigenvalues of the K x K Gram M M^T). Two streamed passes in float64 on the features' device
    (a torch tensor on a GPU stays there), no d x d matrix.
    """
    import torch

    f_all = _torch(features)
    n, d = f_all.shape
    y = _torch(y).to(device=f_all.device, dtype=torch.int64).reshape(-1)
    if len(y) != n:
        raise ValueError(f"features has {n} rows but y has {len(y)} labels")
    classes, y_idx = torch.unique(y, return_inverse=True)
    K = len(classes)
    if K < 2:
        raise ValueError("NC1 needs at least two classes in y (Sigma_R is zero otherwise)")
    sums = torch.zeros(K, d, dtype=torch.float64, device=f_all.device)
    for start in range(0, n, chunk_size):
        sums.index_add_(0, y_idx[start:start + chunk_size], f_all[start:start + chunk_size].double())
    means = sums / torch.bincount(y_idx, minlength=K)[:, None]
    M = means - means.mean(0)
    eigval, U = torch.linalg.eigh(M @ M.T)
    keep = eigval > rtol * eigval.max()
    s = eigval[keep].sqrt()
    V = M.T @ U[:, keep] / s  # (d, r) orthonormal directions spanning Sigma_R
    sq = torch.zeros(int(keep.sum()), dtype=torch.float64, device=f_all.device)
    for start in range(0, n, chunk_size):
        f = f_all[start:start + chunk_size].double()
        sq += ((f - means[y_idx[start:start + chunk_size]]) @ V).square().sum(0)
    return float((sq / n / s**2).sum())


# ---------------------------------------------------------------- margins and SVM


def margins(features, y, weight, bias) -> np.ndarray:
    """Normalized margins y f(x) / ||theta|| of a linear head (paper Sec. 2.2): features (n, d), y (n,) -> (n,).

    weight (C, d), bias (C,). C == 1: f = x.w + b, labels {0,1} or {-1,1} mapped to -1/+1, theta = w.
    C == 2: f = z_1 - z_0, theta = w_1 - w_0. C > 2: z_y - max_{k != y} z_k, theta = W (Frobenius norm).
    The bias is never part of the norm. Positive margin = correctly classified. Computed in float64 on the
    features' device; returned as a numpy array.
    """
    import torch

    x = _torch(features, torch.float64)
    dev = x.device
    y = _torch(y).to(device=dev, dtype=torch.int64).reshape(-1)
    W = _torch(weight, torch.float64).to(dev).reshape(-1, x.shape[1])
    b = _torch(bias, torch.float64).to(dev).reshape(-1)
    C = W.shape[0]
    if C <= 2:
        theta = W[0] if C == 1 else W[1] - W[0]
        offset = b[0] if C == 1 else b[1] - b[0]
        sign = torch.where(y > 0, 1.0, -1.0).to(torch.float64)
        return (sign * (x @ theta + offset) / torch.linalg.vector_norm(theta)).cpu().numpy()
    z = x @ W.T + b
    rows = torch.arange(len(y), device=dev)
    z_true = z[rows, y].clone()
    z[rows, y] = -torch.inf
    return ((z_true - z.max(1).values) / torch.linalg.matrix_norm(W)).cpu().numpy()


def group_margins(margins, g, n_groups: int) -> dict:
    """Per-group margins: {"min": (n_groups,) over correctly classified points (margin > 0), "avg": over all}.

    NaN where a group has no (correctly classified) points.
    """
    m, g = _np(margins, np.float64), _np(g).astype(np.int64)
    out = {"min": np.full(n_groups, np.nan), "avg": np.full(n_groups, np.nan)}
    for k in range(n_groups):
        mk = m[g == k]
        if len(mk):
            out["avg"][k] = mk.mean()
        if (mk > 0).any():
            out["min"][k] = mk[mk > 0].min()
    return out


def _signs(y) -> np.ndarray:
    """Binary labels ({0, 1}, {-1, 1} or any two values) as -1 / +1, +1 for the larger label."""
    y = _np(y).reshape(-1)
    classes = np.unique(y)
    if len(classes) != 2:
        raise ValueError(f"the hard-margin SVM needs exactly two classes, got {len(classes)} ({classes.tolist()[:5]})")
    return np.where(y == classes[1], 1.0, -1.0)


def linearly_separable(features, y, witnesses=()) -> bool:
    """Whether some (w, b) has s_i (x_i.w + b) >= 1 for every example (s = -1/+1 labels): a linear program
    (scipy.optimize.linprog, HiGHS) with a zero objective; True when it is feasible, False when infeasible.

    A (w, b) with s_i (x_i.w + b) > 0 for every example proves separability (scaled, it meets the margin 1)
    without the LP, which takes about 40 s on 4,817 x 1,280 features: the candidates are `witnesses` (e.g. a
    trained head) and a soft-margin linear SVM (C = 100, at most 200,000 SMO iterations; about 3 s there). A
    candidate that fails proves nothing: the LP decides. The hard-margin SVM of paper Sec. 2.2 exists exactly
    when this is True.
    """
    import warnings

    from scipy.optimize import linprog
    from sklearn.svm import SVC

    x, s = _np(features, np.float64), _signs(y)
    A = -s[:, None] * np.hstack([x, np.ones((len(x), 1))])
    if len(x) <= x.shape[1] + 1 and np.linalg.matrix_rank(A) == len(x):
        return True  # n independent rows: A z = -1 has a solution, no LP needed
    for w, b in witnesses:
        if np.all(s * (x @ _np(w, np.float64).reshape(-1) + float(b)) > 0):
            return True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an SVM stopped by max_iter is only a candidate
        if np.all(s * SVC(kernel="linear", C=100.0, max_iter=200_000, cache_size=500).fit(x, s).decision_function(x) > 0):
            return True
    res = linprog(np.zeros(x.shape[1] + 1), A_ub=A, b_ub=-np.ones(len(x)), bounds=(None, None),
                  method="highs-ipm")  # interior point: 4-5x faster than simplex on dense 3000 x 1280
    if res.status not in (0, 2):
        raise RuntimeError(f"the separability LP did not finish (status {res.status}: {res.message})")
    return res.status == 0


def _kkt_solve(x, s, active):
    """Hard-margin SVM restricted to the constraints `active` held with equality: the KKT system
    [[G, s_A], [s_A^T, 0]] [alpha; b] = [1; 0], G = (s s^T) * (x_A x_A^T), solved in float64 by least squares.
    Returns theta (d,), b, alpha (|A|,)."""
    xa, sa = x[active], s[active]
    G = (sa[:, None] * sa[None, :]) * (xa @ xa.T)
    kkt = np.block([[G, sa[:, None]], [sa[None, :], np.zeros((1, 1))]])
    sol = np.linalg.lstsq(kkt, np.r_[np.ones(len(sa)), 0.0], rcond=None)[0]
    alpha, b = sol[:-1], float(sol[-1])
    return xa.T @ (alpha * sa), b, alpha


def hard_margin_svm(features, y, C: float = 1e6, max_C: float = 1e12, check: float = 1e-8, separable: bool = False):
    """The hard-margin SVM of paper Sec. 2.2, min over (theta, b) of ||theta||^2 / 2 subject to
    s_i (x_i.theta + b) >= 1, the bias unpenalized: returns (theta (d,), b), s = +1 for the larger label.

    features (n, d) must be linearly separable: `linearly_separable` decides it first (ValueError if not),
    unless the caller already did and passes separable=True. libsvm's SMO (sklearn SVC, linear kernel) with a
    box C large enough that no dual variable reaches it (C grows 100x until then; the soft-margin dual with no
    variable at its bound is the hard-margin dual) finds the support vectors; libsvm caches its kernel in
    float32, so its answer is then polished in float64 by solving the KKT system on the support set exactly
    (an active-set loop: a support vector with a negative dual variable leaves the set, a point inside the
    margin joins it). The result is verified to `check`: every functional margin >= 1 - check, the support
    vectors' margins 1 within check, dual variables >= 0, and ||theta||^2 = sum of dual variables (no duality
    gap) to `check` relative; RuntimeError otherwise.
    """
    from sklearn.svm import SVC

    x, s = _np(features, np.float64), _signs(y)
    if not separable and not linearly_separable(x, s):
        raise ValueError("the features are not linearly separable, so the hard-margin SVM does not exist")
    while True:
        svc = SVC(kernel="linear", C=C, tol=1e-6, cache_size=500).fit(x, s)
        if np.abs(svc.dual_coef_[0]).max() < C * (1 - 1e-9):
            break
        if C >= max_C:
            raise RuntimeError(f"no hard-margin SVM found: dual variables still reach the box C = {C:g}")
        C *= 100
    active = np.sort(svc.support_)
    for _ in range(50):
        theta, b, alpha = _kkt_solve(x, s, active)
        margin = s * (x @ theta + b)
        inside = np.setdiff1d(np.flatnonzero(margin < 1 - check), active)
        negative = active[alpha < -check * max(1.0, alpha.max())]
        if not len(inside) and not len(negative):
            break
        active = np.union1d(np.setdiff1d(active, negative), inside)
    gap = abs(theta @ theta - alpha.sum()) / (theta @ theta)
    off = np.abs(margin[active] - 1).max()
    if margin.min() < 1 - check or off > check or alpha.min() < -check * alpha.max() or gap > check:
        raise RuntimeError(f"the SVM solution failed its check (smallest margin {margin.min():.3g}, support "
                           f"margins off 1 by up to {off:.3g}, smallest dual variable {alpha.min():.3g}, "
                           f"duality gap {gap:.3g}, C {C:g})")
    return theta, b


def direction_error(theta, theta_svm) -> float:
    """||theta/||theta|| - theta_svm/||theta_svm|| ||_2 (paper Fig. 3); biases are not part of theta.

    theta (d,), (1, d) or a 2-logit head (2, d) (then theta = w_1 - w_0) against theta_svm (d,);
    for (K, d) against (K, d) the mean over per-row errors of normalized rows (the paper's MultiNLI choice).
    """
    t, s = _np(theta, np.float64), _np(theta_svm, np.float64)
    if t.ndim == 2 and t.shape[0] == 2 and s.ndim == 1:
        t = t[1] - t[0]
    t = t.reshape(s.shape) if t.size == s.size else t
    if t.shape != s.shape:
        raise ValueError(f"theta {t.shape} does not match theta_svm {s.shape}")
    if s.ndim == 1:
        return float(np.linalg.norm(t / np.linalg.norm(t) - s / np.linalg.norm(s)))
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    return float(np.mean(np.linalg.norm(unit(t) - unit(s), axis=1)))


def pearson(x, y) -> float:
    """Pearson correlation (scipy.stats.pearsonr); pairs with a NaN are dropped; NaN if < 2 pairs or constant."""
    from scipy.stats import pearsonr

    x, y = _np(x, np.float64).ravel(), _np(y, np.float64).ravel()
    ok = ~(np.isnan(x) | np.isnan(y))
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.all(x == x[0]) or np.all(y == y[0]):
        return float("nan")
    return float(pearsonr(x, y)[0])
