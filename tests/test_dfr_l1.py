"""Kirichenko et al.'s DFR (repro.dfr_l1): their tuning and averaging, mapped back to raw features, and its
route through the heads kind next to the SGD methods."""
import time

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from repro import dfr_l1, heads, last_layer


def _spurious(n=600, d=16, seed=0, n_classes=2):
    """y from a core direction, a spurious attribute a that agrees with y 90% of the time, on other directions."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    a = np.where(rng.random(n) < 0.9, y % 2, 1 - y % 2)
    x = rng.normal(size=(n, d)) * rng.uniform(0.5, 5, d) + rng.uniform(-3, 3, d)  # unscaled, off-centre
    x[:, 0] = rng.normal(size=n) + (1.0 * (2 * y - 1) if n_classes == 2 else 3.0 * y)
    x[:, 1] += 3.0 * (2 * a - 1)
    return x, y, y * 2 + a


def test_the_head_is_their_averaged_model_on_standardized_features():
    x, y, g = _spurious()
    train = np.random.default_rng(5).normal(size=(300, 16)) * 2 + 1
    W, b, info = dfr_l1.fit(x, y, g, seed=3, features_train=train, n_classes=2, n_resamples=4)
    assert W.shape == (2, 16) and b.shape == (2,) and W.dtype == torch.float32
    assert info["C"] in dfr_l1.C_OPTIONS and max(info["wga_by_C"].values()) == info["wga_by_C"][str(info["C"])]
    # replay their procedure with the same generator: tune, then 4 group-balanced fits, coefficients averaged
    rng = np.random.default_rng(3)
    C, _, missing = dfr_l1.tune_c(x, y, g, rng)
    assert missing == [] and info["dfr_tuning_groups_missing"] == []
    scaler = StandardScaler().fit(train)
    fits = []
    for _ in range(4):
        idx = dfr_l1.balanced_subset(g, rng)
        assert np.bincount(g[idx]).tolist() == [np.bincount(g).min()] * 4  # group-balanced
        model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", random_state=int(rng.integers(2**31 - 1)))
        fits.append(model.fit(scaler.transform(x[idx]), y[idx]))
    z = scaler.transform(x)
    logit = z @ np.mean([f.coef_[0] for f in fits], 0) + np.mean([f.intercept_[0] for f in fits])
    head = x @ W.double().numpy().T + b.double().numpy()
    np.testing.assert_allclose(head[:, 1] - head[:, 0], logit, rtol=1e-5, atol=1e-4)


def test_seeded_resamples_are_a_hyperparameter_and_bad_values_fail():
    x, y, g = _spurious()
    one = dfr_l1.fit(x, y, g, seed=1, features_train=x, n_classes=2)
    again = dfr_l1.fit(x, y, g, seed=1, features_train=x, n_classes=2)
    assert torch.equal(one[0], again[0]) and torch.equal(one[1], again[1])  # same seed, same bits
    assert not torch.equal(one[0], dfr_l1.fit(x, y, g, seed=2, features_train=x, n_classes=2)[0])
    assert not torch.equal(one[0], dfr_l1.fit(x, y, g, seed=1, features_train=x, n_classes=2, n_resamples=3)[0])
    with pytest.raises(ValueError, match="n_resamples"):
        dfr_l1.fit(x, y, g, seed=1, features_train=x, n_classes=2, n_resamples=0)


def test_multiclass_gives_one_vs_rest_rows_and_beats_chance_on_the_worst_group():
    x, y, g = _spurious(n=900, n_classes=3)
    W, b, _ = dfr_l1.fit(x, y, g, seed=0, features_train=x, n_classes=3, n_resamples=2)
    pred = (torch.as_tensor(x, dtype=torch.float32) @ W.T + b).argmax(1).numpy()
    assert W.shape == (3, 16)
    assert min((pred == y)[g == k].mean() for k in np.unique(g)) > 0.5  # chance: 1/3


def test_heads_route_it_beside_sgd_methods(monkeypatch):
    """heads.fit_batch fits SGD specs in one call and solved specs (dfr_l1) by their solver, one head each."""
    x, y, g = _spurious(n=400)
    f = {"features_heldout": torch.tensor(x, dtype=torch.float32), "y_heldout": torch.tensor(y),
         "g_heldout": torch.tensor(g), "features_test": torch.tensor(x[:100], dtype=torch.float32),
         "y_test": torch.tensor(y[:100]), "g_test": torch.tensor(g[:100]),
         "features_train": torch.tensor(x, dtype=torch.float32), "head_weight": torch.zeros(2, 16),
         "head_bias": torch.zeros(2)}
    from repro import features, runs
    monkeypatch.setattr(features, "load", lambda *a, **k: f)
    monkeypatch.setattr(features, "metadata", lambda *a, **k: {"config": {"dataset": "waterbirds"}})
    monkeypatch.setattr(runs, "run_dir", lambda *a, **k: "unused")
    common = {"erm": "e", "epochs": 2, "lr": 1e-2, "batch_size": 32}
    configs = [{**common, "spec": {"method": "dfr_l1", "seed": 1, "n_resamples": 2}},
               {**common, "spec": {"method": "llr", "seed": 1}}]
    assert "dfr_l1" in last_layer.SOLVED and "dfr_l1" not in last_layer.REGISTRY
    results = []
    for compute in heads.fit_batch(configs):
        results.append(compute(None, _tmp := __import__("tempfile").mkdtemp()))
    assert results[0]["C"] in dfr_l1.C_OPTIONS and "C" not in results[1]
    assert results[0]["dfr_tuning_groups_missing"] == [] and results[1]["test_pred_classes"] == 2
    assert {"test_acc_wg", "heldout_acc_wg", "margin_min"} <= set(results[0]) & set(results[1])


def test_tuning_halves_are_stratified_and_reproducible():
    g = np.repeat([0, 1, 2, 3], [50, 7, 2, 41])
    score, train, missing = dfr_l1.stratified_halves(g, np.random.default_rng(4))
    assert missing == [] and not set(score) & set(train) and len(score) + len(train) == len(g)
    assert np.bincount(g[score]).tolist() == [25, 3, 1, 20] and np.bincount(g[train]).tolist() == [25, 4, 1, 21]
    again = dfr_l1.stratified_halves(g, np.random.default_rng(4))
    assert np.array_equal(score, again[0]) and np.array_equal(train, again[1])  # same seed, same split
    assert not np.array_equal(score, dfr_l1.stratified_halves(g, np.random.default_rng(5))[0])


def test_a_group_too_small_for_both_halves_is_recorded_not_dropped_silently():
    x, y, g = _spurious(n=400)
    keep = np.r_[np.flatnonzero(g != 1), np.flatnonzero(g == 1)[:1]]  # group 1 keeps a single example
    x, y, g = x[keep], y[keep], g[keep]
    score, train, missing = dfr_l1.stratified_halves(g, np.random.default_rng(0), n_groups=5)
    assert missing == [1, 4]  # one example: training half only; group 4: none at all
    assert (g[train] == 1).sum() == 1 and (g[score] == 1).sum() == 0
    _, _, info = dfr_l1.fit(x, y, g, seed=0, features_train=x, n_classes=2, n_resamples=2, n_groups=4)
    assert info["dfr_tuning_groups_missing"] == [1] and info["dfr_group_counts"][1] == 1


def test_time_per_fit_is_modest():
    """Print the time of one fit (7 C values + 20 resamples) at a cpu-profile-like size: 2000 x 512."""
    x, y, g = _spurious(n=2000, d=512)
    t = time.perf_counter()
    dfr_l1.fit(x, y, g, seed=0, features_train=x, n_classes=2)
    seconds = time.perf_counter() - t
    print(f"dfr_l1.fit on 2000 x 512: {seconds:.2f} s")
    assert seconds < 120
