import numpy as np
import pytest
import torch

from repro import last_layer

torch.set_num_threads(1)


def _data(n=240, d=12, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    a = rng.integers(0, 2, n)
    x = rng.normal(size=(n, d)) + 2.0 * rng.normal(size=(n_classes, d))[y] + rng.normal(size=(2, d))[a]
    return torch.tensor(x, dtype=torch.float32), y, y * 2 + a


@pytest.mark.parametrize("n_classes", [1, 2, 3])
def test_batched_heads_equal_single_head_reference(n_classes):
    x, y, g = _data(n_classes=max(n_classes, 2))
    rng = np.random.default_rng(1)
    subsets = [np.arange(len(y)), rng.choice(len(y), 70, replace=False), rng.integers(0, len(y), 150), np.arange(33)]
    weights = [None, rng.uniform(0.2, 3, 70), None, rng.uniform(0.5, 2, 33)]
    probs = [None, None, rng.uniform(0.1, 1, 150), None]
    init = [None, None, None, (torch.randn(n_classes, 12), torch.randn(n_classes))]
    l2 = [0.0, 0.3, 0.0, 0.1]
    seeds = [5, 6, 7, 8]
    W, b = last_layer.fit_heads(x, y, subsets, weights, n_classes=n_classes, epochs=3, seeds=seeds, probs=probs,
                                init=init, l2_to_init=l2, batch_size=16, lr=0.05, chunk=3)
    assert W.shape == (4, n_classes, 12) and b.shape == (4, n_classes)
    for h in range(4):
        W1, b1 = last_layer.fit_head(x, y, subsets[h], weights[h], n_classes=n_classes, epochs=3, seed=seeds[h],
                                     probs=probs[h], init=init[h], l2_to_init=l2[h], batch_size=16, lr=0.05)
        assert (W[h] - W1).abs().max() <= 1e-5 and (b[h] - b1).abs().max() <= 1e-5
    assert (W[0] - last_layer.init_head(12, n_classes, 5)[0]).abs().max() > 1e-3  # it trained


def test_init_head_matches_nn_linear_default_init():
    torch.manual_seed(3)
    lin = torch.nn.Linear(7, 2)  # nn.Linear under torch.manual_seed(3) draws exactly init_head(.., seed=3)
    W, b = last_layer.init_head(7, 2, seed=3)
    assert torch.equal(W, lin.weight) and torch.equal(b, lin.bias)
    assert not torch.equal(W, last_layer.init_head(7, 2, seed=4)[0])


def test_afr_weights_follow_afrs_code_exp_times_n_over_class_count():
    p = np.array([0.9, 0.5, 0.1, 0.8, 0.2])
    y = np.array([0, 0, 0, 1, 1])
    w = last_layer.afr_weights(p, y, gamma=2.0)
    # by hand, AFR's rebalance_weights: exp(-2 p) * N / n_c with N = 5, n_0 = 3, n_1 = 2, then sum 1
    raw = np.exp(-2 * p) * np.array([5 / 3, 5 / 3, 5 / 3, 5 / 2, 5 / 2])
    assert w == pytest.approx(raw / raw.sum(), rel=1e-12)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] < w[1] < w[2]  # badly fit examples weigh more
    # the old rule (every class the same total exp(-gamma p) mass) differs at gamma > 0 ...
    e = np.exp(-2 * p)
    old = e / np.bincount(y, weights=e)[y] / 2
    assert not np.allclose(w, old)
    # a class's total is proportional to its mean exp(-gamma p): the worse-fit class gets more, not 1/2 each
    mean_e = np.array([e[:3].mean(), e[3:].mean()])
    assert np.bincount(y, weights=w) == pytest.approx(mean_e / mean_e.sum(), rel=1e-12)
    assert np.bincount(y, weights=old) == pytest.approx([0.5, 0.5])
    # ... and agrees with it at gamma = 0: class balancing, [1/6]*3 + [1/4]*2
    assert last_layer.afr_weights(p, y, 0.0) == pytest.approx([1 / 6, 1 / 6, 1 / 6, 1 / 4, 1 / 4])
    with pytest.raises(ValueError, match="gamma"):
        last_layer.afr_weights(p, y, -1.0)


def test_afr_with_gamma_and_lambda_zero_is_cbllr_upweighting_from_the_erm_head():
    x, y, g = _data(n_classes=2)
    erm_head = (torch.randn(2, 12), torch.randn(2))
    p_afr = last_layer.plan(x, y, g, dict(method="afr", seed=4, erm_head=erm_head, gamma=0.0, l2=0.0))
    p_cb = last_layer.plan(x, y, g, dict(method="cbllr", seed=4, balance="upweighting"))
    assert p_afr.weights == pytest.approx(p_cb.weights, rel=1e-12)
    W, b = last_layer.fit_heads(x, y, [p_afr.subset, p_cb.subset], [p_afr.weights, p_cb.weights], n_classes=2,
                                epochs=3, seeds=[4, 4], init=erm_head)
    assert (W[0] - W[1]).abs().max() <= 1e-6 and (b[0] - b[1]).abs().max() <= 1e-6


SPECS = [dict(method="llr"), dict(method="dfr", balance="subsetting"), dict(method="dfr", balance="upsampling"),
         dict(method="dfr", balance="upweighting"), dict(method="cbllr", balance="subsetting"),
         dict(method="cbllr", balance="upsampling"), dict(method="cbllr", balance="upweighting"),
         dict(method="ratio", r=0.2), dict(method="ratio", r=0.5, balance="subsetting"),
         dict(method="afr", gamma=2.0, l2=0.1)]


def test_every_registered_method_is_exercised():
    assert {s["method"] for s in SPECS} == set(last_layer.REGISTRY)


def test_fit_trains_a_whole_grid_in_one_call_and_learns():
    x, y, g = _data(n_classes=2)
    erm_head = (torch.zeros(2, 12), torch.zeros(2))
    specs = [{**s, "seed": seed, **({"erm_head": erm_head} if s["method"] == "afr" else {})}
             for s in SPECS for seed in (0, 1)]
    W, b = last_layer.fit(x, y, g, specs, n_classes=2, epochs=5)
    assert W.shape == (len(specs), 2, 12) and b.shape == (len(specs), 2)
    acc = ((torch.einsum("nd,hcd->hnc", x, W) + b[:, None]).argmax(2) == torch.tensor(y)).float().mean(1)
    assert acc.min() > 0.9


def test_balanced_plans_have_the_promised_counts():
    x, y, g = _data(n_classes=2)
    sub = last_layer.plan(x, y, g, dict(method="dfr", seed=0, balance="subsetting")).subset
    assert len(set(np.bincount(g[sub]).tolist())) == 1
    up = last_layer.plan(x, y, g, dict(method="cbllr", seed=0, balance="upsampling"))
    assert np.bincount(y, weights=up.probs) == pytest.approx([0.5, 0.5])


def test_bad_choices_list_the_valid_ones():
    x, y, g = _data()
    with pytest.raises(ValueError, match="llr, dfr, cbllr, ratio, afr"):
        last_layer.plan(x, y, g, dict(method="jtt", seed=0))
    with pytest.raises(ValueError, match="subsetting, upsampling, upweighting"):
        last_layer.plan(x, y, g, dict(method="dfr", seed=0, balance="mixture"))
    with pytest.raises(ValueError, match="erm_head"):
        last_layer.plan(x, y, g, dict(method="afr", seed=0))


def test_sgd_path_records_the_head_after_the_given_steps():
    x, y, g = _data(n=96, n_classes=2)
    W, b = last_layer.sgd_path(x, y, steps=[0, 4, 6], seeds=(0, 1), lr=1e-2)  # 3 steps per epoch
    assert W.shape == (3, 2, 1, 12) and b.shape == (3, 2, 1)
    assert torch.equal(W[0, 0], last_layer.init_head(12, 1, 0)[0])
    W2, b2 = last_layer.fit_heads(x, y, [np.arange(96)], n_classes=1, epochs=2, seeds=[1], lr=1e-2)
    assert (W[2, 1] - W2[0]).abs().max() <= 1e-7


def test_the_svm_path_counts_the_classes_its_head_predicts_on_test(monkeypatch, tmp_path):
    """heads.svm_path records, per recorded step, how many classes the LLR head predicts on the test set: a
    test set on one side of the data gets one class once the head is trained."""
    from repro import features, heads, runs

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 20)
    x = rng.normal(size=(40, 3)) + 4.0 * (2 * y[:, None] - 1)  # separable along every axis
    f = {"features_heldout": torch.tensor(x, dtype=torch.float32), "y_heldout": torch.tensor(y),
         "features_test": torch.tensor(np.r_[x[:5], x[-5:]], dtype=torch.float32)}
    monkeypatch.setattr(features, "load", lambda *a, **k: f)
    monkeypatch.setattr(runs, "run_dir", lambda *a, **k: "unused")
    config = {"erm": "e", "lr": 1e-2, "batch_size": 8, "llr_epochs": 2, "factor": 2.0, "n_points": 4, "seed": 1}
    both = heads.svm_path(config, tmp_path / "svm" / "work")
    assert both["separable"] and len(both["test_pred_classes"]) == len(both["steps"])
    assert both["test_pred_classes"][-1] == 2
    f["features_test"] = f["features_test"][:5]  # class 0's side only
    one = heads.svm_path(config, tmp_path / "svm" / "work")["test_pred_classes"]
    assert one[-1] == 1 and set(one) <= {1, 2}  # trained: all on class 0's side
