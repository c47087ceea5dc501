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
    assert list(out) == ["acc_avg", "acc_wavg", "acc_wg", "acc_g0", "acc_g1", "acc_g2", "acc_g3"]
    assert out["acc_wg"] == 0.0 and np.isnan(out["acc_g3"])
    assert list(metrics.summarize(pred, y, g, 4)) == ["acc_avg", "acc_wg", "acc_g0", "acc_g1", "acc_g2", "acc_g3"]


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


def test_svm_direction_and_direction_error():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 3)) * [0.2, 1, 1]
    x[:, 0] += np.where(y == 1, 2.0, -2.0)  # separable along e1 through the origin
    theta = metrics.svm_direction(x, y)
    assert theta.shape == (3,) and np.linalg.norm(theta) == pytest.approx(1.0)
    assert theta[0] > 0.9
    assert metrics.direction_error(5 * theta, theta) == pytest.approx(0.0, abs=1e-12)
    assert metrics.direction_error(-theta, theta) == pytest.approx(2.0)
    head = np.stack([np.zeros(3), 2 * theta])  # 2-logit head: theta = w_1 - w_0
    assert metrics.direction_error(head, theta) == pytest.approx(0.0, abs=1e-12)


def test_pearson_handles_constant_and_nan_input():
    assert metrics.pearson([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert np.isnan(metrics.pearson([1, 1, 1], [1, 2, 3]))
    assert metrics.pearson([1, 2, np.nan, 3], [1, 2, 5, 3]) == pytest.approx(1.0)
