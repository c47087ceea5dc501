import numpy as np
import pytest

from repro import toy


def test_collapse_replaces_points_by_class_means():
    features = np.array([[0.0, 0.0], [2.0, 2.0], [5.0, -1.0]])
    y = np.array([0, 0, 1])
    np.testing.assert_allclose(toy.collapse(features, y), [[1, 1], [1, 1], [5, -1]])


def test_class_mean_rule_is_the_perpendicular_bisector():
    features = np.array([[-1.0, -1.0], [1.0, 3.0]])
    w, b = toy.class_mean_classifier(features, np.array([0, 1]))
    np.testing.assert_allclose(w, [2, 4])
    assert w @ np.array([0.0, 1.0]) + b == pytest.approx(0.0)  # the midpoint lies on the boundary


def test_figure1_claims_hold_on_the_toy_problem():
    train = toy.make(400, 0.9, seed=0)
    heldout = toy.make(200, 0.9, seed=1)
    mean_w, _ = toy.class_mean_classifier(toy.collapse(train[0], train[1]), train[1])
    svm_w, _ = toy.svm(heldout[0], heldout[1])
    assert toy.spurious_share(mean_w) > 0.4
    assert toy.spurious_share(svm_w) < 0.15


def test_make_rejects_bad_probability():
    with pytest.raises(ValueError, match="p_major"):
        toy.make(10, 1.5, seed=0)


def test_toy_svm_is_the_hard_margin_svm():
    """Every held-out point has functional margin >= 1 and the closest ones sit exactly on it."""
    x, y, _ = toy.make(200, 0.9, seed=1)
    w, b = toy.svm(x, y)
    margins = (2 * y - 1) * (x @ w + b)
    assert margins.min() == pytest.approx(1.0, abs=1e-6)
    assert (margins >= 1 - 1e-6).all()
