import time

import numpy as np
import pytest
import torch

from repro import metrics


def test_group_accuracy_worst_group_and_summary_on_hand_built_case():
    y = np.array([0, 0, 0, 1, 1, 1, 1])
    g = np.array([0, 0, 1, 2, 2, 2, 2])  # group 3 is empty
    pred = np.array([0, 1, 1, 1, 1, 1, 0])
    acc = metrics.group_accuracy(pred, y, g, 4)
    assert acc[:3] == pytest.approx([0.5, 0.0, 0.75]) and np.isnan(acc[3])
    assert metrics.worst_group_accuracy(pred, y, g) == 0.0
    assert metrics.average_accuracy(torch.tensor(pred), torch.tensor(y)) == pytest.approx(4 / 7)
    assert metrics.weighted_average_accuracy(pred, y, g, [0.5, 0.25, 0.25, 0.0]) == pytest.approx(0.25 + 0.1875)
    out = metrics.summarize(pred, y, g, 4, train_group_props=[0.5, 0.25, 0.25, 0.0])
    assert list(out) == ["acc_avg", "acc_wavg", "acc_wg", "acc_g0", "acc_g1", "acc_g2", "acc_g3", "pred_classes"]
    assert out["acc_wg"] == 0.0 and np.isnan(out["acc_g3"]) and out["pred_classes"] == 2
    assert list(metrics.summarize(pred, y, g, 4)) == ["acc_avg", "acc_wg", "acc_g0", "acc_g1", "acc_g2", "acc_g3",
                                                      "pred_classes"]


def test_a_classifier_that_predicts_one_class_is_counted_as_such():
    y, g = np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2])
    one = metrics.summarize(torch.full((4,), 2), y, g, 3)
    assert one["pred_classes"] == 1 and one["acc_g0"] == one["acc_g1"] == 0.0 and one["acc_g2"] == 1.0
    assert metrics.summarize(np.array([0, 1, 2, 0]), y, g, 3)["pred_classes"] == 3


def test_empty_groups_never_decide_the_worst_group():
    assert metrics.worst_group_accuracy(np.array([1, 1]), np.array([1, 1]), np.array([3, 3])) == 1.0
    with pytest.raises(ValueError, match="n_groups"):
        metrics.group_accuracy([0], [0], [5], 4)


def _nc1_brute(f, y):
    classes = np.unique(y)
    means = np.stack([f[y == c].mean(0) for c in classes])
    centered = f - means[np.searchsorted(classes, y)]
    sigma_a = centered.T @ centered / len(f)
    m = means - means.mean(0)
    sigma_r = m.T @ m / len(classes)
    return np.trace(sigma_a @ np.linalg.pinv(sigma_r, rtol=1e-8, hermitian=True)) / len(classes)


def test_nc1_is_zero_for_collapsed_features():
    y = np.array([0, 0, 1, 1, 1, 2])
    f = np.eye(3)[y] * 5.0 + 1.0
    assert metrics.nc1(f, y) == pytest.approx(0.0, abs=1e-12)


def test_nc1_closed_form_two_classes_in_2d():
    delta, eps = 0.3, 0.7  # Sigma_A = [[d^2, -d e], [-d e, e^2]], Sigma_R^+ = e1 e1^T -> NC1 = d^2 / 2
    f = np.array([[-1 - delta, eps], [-1 + delta, -eps], [1 - delta, eps], [1 + delta, -eps]])
    assert metrics.nc1(f, np.array([0, 0, 1, 1])) == pytest.approx(delta**2 / 2)


def test_nc1_matches_brute_force_pinv_and_is_scale_invariant():
    rng = np.random.default_rng(0)
    y = rng.choice(3, size=200, p=[0.6, 0.3, 0.1])  # unequal classes: mu_G is the unweighted mean of means
    f = rng.normal(size=(200, 20)) + 2.0 * rng.normal(size=(3, 20))[y]
    value = metrics.nc1(f, y, chunk_size=37)
    assert value == pytest.approx(_nc1_brute(f, y), rel=1e-8)
    assert metrics.nc1(torch.tensor(1e3 * f, dtype=torch.float32), torch.tensor(y)) == pytest.approx(value, rel=1e-5)


def test_nc1_is_fast_for_resnet_sized_features():
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 4, (20000,), generator=gen)
    f = torch.randn(20000, 2048, generator=gen) + torch.randn(4, 2048, generator=gen)[y]
    t = time.perf_counter()
    value = metrics.nc1(f, y)
    assert time.perf_counter() - t < 20 and np.isfinite(value) and value > 0


def test_margins_binary_heads_agree_and_multiclass_hand_value():
    x = np.array([[1.0, 2.0], [-1.0, 0.5], [0.0, -3.0]])
    y = np.array([1, 0, 1])
    w, b = np.array([3.0, 4.0]), np.array([1.0])
    expected = np.array([12.0, 0.0, -11.0]) * np.array([1, -1, 1]) / 5.0  # f = x.w + b
    assert metrics.margins(x, y, w[None], b) == pytest.approx(expected)
    two = np.stack([np.zeros(2), w]), np.array([0.0, 1.0])  # z_1 - z_0 equals the 1-logit head
    assert metrics.margins(x, y, *two) == pytest.approx(expected)
    W = np.eye(3)[:, :2]  # (3, 2): z = (x1, x2, 0)
    m = metrics.margins(x, np.array([1, 0, 2]), W, np.zeros(3))
    assert m == pytest.approx(np.array([2 - 1, -1 - 0.5, 0 - 0.0]) / np.sqrt(2))


def test_group_margins_min_over_correct_points_avg_over_all():
    out = metrics.group_margins(np.array([0.5, -1.0, 2.0, -0.5]), np.array([0, 0, 0, 1]), 3)
    assert out["min"][0] == 0.5 and np.isnan(out["min"][1]) and np.isnan(out["min"][2])
    assert out["avg"][:2] == pytest.approx([0.5, -0.5]) and np.isnan(out["avg"][2])


def _separable(n=60, d=4, offset=1.5, seed=0):
    """Two classes separated with a margin by a hyperplane that does not pass through the origin."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d))
    x[:, 0] = np.where(y == 1, 1.0, -1.0) * (0.5 + np.abs(x[:, 0])) + offset  # |x0 - offset| >= 0.5
    return x, y


def _dual_qp(x, y):
    """Hard-margin SVM through its dual QP, solved by SLSQP: max sum(a) - |sum a_i s_i x_i|^2 / 2, a >= 0,
    sum a_i s_i = 0; theta = sum a_i s_i x_i, b from the support vectors."""
    from scipy.optimize import minimize

    s = np.where(y == 1, 1.0, -1.0)
    Q = (s[:, None] * x) @ (s[:, None] * x).T
    res = minimize(lambda a: 0.5 * a @ Q @ a - a.sum(), np.zeros(len(s)), jac=lambda a: Q @ a - 1,
                   bounds=[(0, None)] * len(s),
                   constraints=[{"type": "eq", "fun": lambda a: a @ s, "jac": lambda a: s}],
                   method="SLSQP", options={"ftol": 1e-10, "maxiter": 2000})
    assert res.success, res.message
    a = res.x
    theta = (a * s) @ x
    sv = a > 1e-6 * a.max()
    return theta, float(np.mean(s[sv] - x[sv] @ theta))


def test_hard_margin_svm_matches_the_dual_qp_with_a_bias_and_separates_every_point():
    for seed in range(3):
        x, y = _separable(seed=seed)
        assert metrics.linearly_separable(x, y)
        theta, b = metrics.hard_margin_svm(x, y)
        theta_qp, b_qp = _dual_qp(x, y)
        unit = lambda v: v / np.linalg.norm(v)  # noqa: E731
        assert np.linalg.norm(unit(theta) - unit(theta_qp)) < 1e-4
        assert np.linalg.norm(theta - theta_qp) / np.linalg.norm(theta_qp) < 1e-4
        assert b == pytest.approx(b_qp, abs=1e-4 * max(1.0, abs(b_qp)))
        s = np.where(y == 1, 1.0, -1.0)
        assert (s * (x @ theta + b) >= 1 - 1e-8).all()  # separates every point, at functional margin 1
        assert abs(b) > 0.5  # the offset hyperplane needs its bias
        # the old reference (squared-hinge LinearSVC without intercept) is far from it on the same data
        from sklearn.svm import LinearSVC
        old = LinearSVC(fit_intercept=False, C=1e5, max_iter=100_000, random_state=0).fit(x, y).coef_[0]
        assert metrics.direction_error(old, theta) > 1e-2


def test_non_separable_features_are_detected():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    assert not metrics.linearly_separable(x, y)
    with pytest.raises(ValueError, match="not linearly separable"):
        metrics.hard_margin_svm(x, y)
    x, y = _separable()
    x[0], y[0] = x[1], 1 - y[1]  # one contradicting duplicate breaks separability
    assert not metrics.linearly_separable(x, y)
    assert metrics.linearly_separable(rng.normal(size=(5, 8)), [0, 1, 0, 1, 1])  # n <= d + 1: always


def test_gradient_descent_on_the_logistic_loss_approaches_the_svm_direction():
    # symmetric toy (x, y) <-> (-x, 1 - y): the SVM's bias is 0, so GD with a bias from zero converges to it
    rng = np.random.default_rng(0)
    half = rng.normal(size=(20, 2)) * [0.3, 1.0] + [1.0, 0.0]
    x = np.vstack([half, -half])
    y = np.r_[np.ones(20), np.zeros(20)].astype(int)
    theta, b = metrics.hard_margin_svm(x, y)
    assert abs(b) < 1e-8
    X, w, errors = np.hstack([x, np.ones((40, 1))]), np.zeros(3), []
    s = np.where(y == 1, 1.0, -1.0)
    for t in range(1, 100_001):
        z = s * (X @ w)
        w += 1.0 * X.T @ (s * 0.5 * (1 - np.tanh(z / 2))) / len(s)  # gradient step on mean log(1 + e^-z)
        if t in (10, 100, 1000, 10_000, 100_000):
            errors.append(metrics.direction_error(w[:2], theta))
    assert all(a > b for a, b in zip(errors, errors[1:])), errors  # the error falls as the steps grow
    assert errors[-1] < 0.5 * errors[0]


def test_direction_error():
    theta = np.array([0.6, 0.8, 0.0])
    assert metrics.direction_error(5 * theta, theta) == pytest.approx(0.0, abs=1e-12)
    assert metrics.direction_error(-theta, theta) == pytest.approx(2.0)
    head = np.stack([np.zeros(3), 2 * theta])  # 2-logit head: theta = w_1 - w_0
    assert metrics.direction_error(head, theta) == pytest.approx(0.0, abs=1e-12)


def test_pearson_handles_constant_and_nan_input():
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert np.isnan(metrics.pearson([1, 1, 1], [1, 2, 3]))
    assert metrics.pearson([1, 2, np.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)


def test_a_separating_witness_proves_separability_and_a_failing_one_leaves_it_to_the_lp(monkeypatch):
    import scipy.optimize

    x, y = _separable()
    theta, b = metrics.hard_margin_svm(x, y)
    with monkeypatch.context() as m:
        m.setattr(scipy.optimize, "linprog", lambda *a, **k: pytest.fail("the LP ran despite a separating witness"))
        assert metrics.linearly_separable(x, y, witnesses=[(theta * 1e-3, b * 1e-3)])
    assert metrics.linearly_separable(x, y, witnesses=[(-theta, -b)])  # a wrong witness: the LP finds it separable
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(200, 3)), rng.integers(0, 2, 200)
    assert not metrics.linearly_separable(x, y, witnesses=[(np.ones(3), 0.0)])
