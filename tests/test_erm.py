import json

import numpy as np
import pytest
import torch

from tests.conftest import image_data
from repro import erm, features, inputs, runs
from repro.data import GroupData


@pytest.fixture(scope="module")
def tiny_images(tmp_path_factory):
    """96 random 32x32 PNGs named like Waterbirds: the red channel gives y, the blue one a (= y 75%)."""
    return image_data(tmp_path_factory.mktemp("imgs"), (48, 16, 32))


@pytest.fixture(scope="module")
def tiny_texts():
    rng = np.random.default_rng(0)
    n = 80
    y, a = rng.integers(0, 2, n), rng.integers(0, 2, n)
    words = np.array(["good", "city", "plan", "idiot", "stupid", "women", "road"])
    texts = [" ".join(rng.choice(words[:3] if yi == 0 else words[3:5], 4)) + (" women" if ai else "")
             for yi, ai in zip(y, a)]
    split = np.repeat([0, 1, 2], [40, 20, 20])
    return GroupData("civilcomments", "text", np.array(texts, dtype=object), y, a, split, root="memory")


@pytest.fixture
def use(monkeypatch):
    def _use(data):
        monkeypatch.setattr(erm, "load_data", lambda config: data)
    return _use


def _cfg(dataset="waterbirds", **kw):
    return erm.default_config(dataset, "smoke", data_root="memory", **{"epochs": 3, **kw})


def test_default_config_reads_hparams_and_rejects_unknown_keys():
    cfg = erm.default_config("celeba", "paper")
    assert (cfg["model"], cfg["lr"], cfg["epochs"], cfg["schedule"], cfg["save_epochs"]) == \
        ("resnet50", 1e-5, 20, "cosine", [20])
    assert erm.default_config("waterbirds", "paper")["group_ratio_method"] == "upsampling"
    json.dumps(cfg)  # the config is the run-store key: JSON-able
    with pytest.raises(ValueError, match="valid keys:.*dataset"):
        erm.default_config("celeba", "cpu", learning_rate=1.0)
    with pytest.raises(ValueError, match="choose one of none, subsetting"):
        erm.default_config("celeba", "cpu", balance="oversample")
    with pytest.raises(ValueError, match="save_epochs"):
        erm.default_config("celeba", "cpu", epochs=2, save_epochs=[5])


def test_lr_schedules():
    assert erm.lr_factor("cosine", 0, 0, 4, 40) == 1.0
    assert erm.lr_factor("cosine", 2, 0, 4, 40) == pytest.approx(0.5)
    assert erm.lr_factor("linear", 3, 10, 4, 40) == 0.75
    assert erm.lr_factor("constant", 3, 39, 4, 40) == 1.0


def test_augment_keeps_shape_and_identity_when_full_crop():
    x = torch.rand(4, 3, 8, 8)
    out = inputs.augment(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and not torch.equal(out, x)


def test_train_is_deterministic_and_caches_features(tiny_images, use, tmp_path):
    use(tiny_images)
    cfg = _cfg(save_epochs=[2, 3], nc1_every=1, eval_every=1)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m1, m2 = erm.train(cfg, tmp_path / "a"), erm.train(cfg, tmp_path / "b")
    assert json.dumps(m1) == json.dumps(m2)  # (NaN for empty groups: compare as text)
    assert [h["epoch"] for h in m1["history"]] == [1, 2, 3] and m1["test_acc_wg"] > 0.5  # y is easy here
    assert set(m1) >= {"test_acc_avg", "test_acc_wg", "test_acc_g3", "heldout_acc_wg", "train_acc_wg",
                       "nc1_train", "nc1_heldout"}
    assert features.epochs(tmp_path / "a") == [2, 3]
    f = features.load(tmp_path / "a")  # last saved epoch
    idx = erm.splits(tiny_images, cfg)
    for split, i in idx.items():
        assert torch.equal(f[f"idx_{split}"], torch.from_numpy(i))
        assert torch.equal(f[f"y_{split}"], torch.from_numpy(tiny_images.y[i]))
        torch.testing.assert_close(f[f"logits_{split}"], f[f"features_{split}"] @ f["head_weight"].T + f["head_bias"])
    assert len(idx["heldout"]) == round(0.2 * 48) and len(np.intersect1d(idx["train"], idx["heldout"])) == 0
    model, saved = erm.load_checkpoint(tmp_path / "a" / "checkpoint_epoch3.safetensors")
    assert saved == cfg and features.metadata(tmp_path / "a", 2)["epoch"] == 2
    feats, logits = features.extract(model, inputs.Inputs(tiny_images, cfg), idx["test"])
    torch.testing.assert_close(feats, f["features_test"])  # the checkpoint reproduces the cached features
    with pytest.raises(FileNotFoundError, match="saved epochs: \\[2, 3\\]"):
        features.load(tmp_path / "a", 1)


@pytest.mark.parametrize("over", [dict(balance="subsetting", balance_by="group"), dict(balance="upsampling"),
                                  dict(balance="upweighting", balance_by="group"), dict(group_ratio=0.5),
                                  dict(group_ratio=0.5, group_ratio_method="subsetting"),
                                  dict(train_set="train+heldout", schedule="linear", augment=False)])
def test_balancing_options_run(tiny_images, use, tmp_path, over):
    use(tiny_images)
    m = erm.train(_cfg(epochs=1, **over), tmp_path)
    assert [h["epoch"] for h in m["history"]] == [1] and "test_acc_wg" in m["history"][0]
    n_heldout_union = 48 if over.get("train_set") else 38
    if over.get("balance") == "subsetting" or over.get("group_ratio_method") == "subsetting":
        assert m["n_train"] < 38
    else:
        assert m["n_train"] == n_heldout_union


def test_text_model_trains(tiny_texts, use, tmp_path):
    use(tiny_texts)
    m = erm.train(_cfg("civilcomments", batch_size=16, max_length=16), tmp_path)
    assert 0 <= m["test_acc_wg"] <= m["test_acc_avg"] <= 1
    f = features.load(tmp_path)
    hidden = erm.default_config("civilcomments", "smoke")["model_kw"].get("hidden", 128)
    assert f["features_train"].shape == (40, hidden)


def test_run_twice_does_no_work(tiny_images, use, tmp_path, monkeypatch):
    use(tiny_images)
    path = erm.run("waterbirds", "smoke", store=tmp_path, data_root="memory", epochs=1)
    assert runs.is_done(path) and features.epochs(path.name, store=tmp_path) == [1]
    monkeypatch.setattr(erm, "train", lambda *a: pytest.fail("trained twice"))
    assert erm.run("waterbirds", "smoke", store=tmp_path, data_root="memory", epochs=1) == path


def test_eval_every_zero_evaluates_only_the_last_epoch(tiny_images, use, tmp_path):
    use(tiny_images)
    m = erm.train(_cfg(eval_every=0, epochs=2), tmp_path)
    assert "test_acc_wg" not in m["history"][0] and "test_acc_wg" in m["history"][1]


def test_optimizers_agree_with_the_per_tensor_loop():
    """AdamW runs torch's fused kernel: the per-tensor loop's result to float rounding; SGD's multi-tensor loop
    gives the per-tensor loop's bits."""
    import torch

    from repro import models

    for name, kw, optimizer in (("cnn-small", {}, "adamw"), ("bert-micro", {"hidden": 32, "intermediate": 64}, "adamw"),
                                ("cnn-small", {}, "sgd")):
        finals = []
        for reference in (True, False):
            torch.manual_seed(0)
            model = models.build(name, 2, False, **kw)
            opt = erm._optimizer(model, {"model": name, "weight_decay": 1e-4, "lr": 1e-3, "optimizer": optimizer})
            assert opt.defaults["fused" if optimizer == "adamw" else "foreach"] is True
            if reference:  # the per-tensor loop torch would choose for CPU tensors
                for group in opt.param_groups:
                    group["foreach"], group["fused"] = False, False
            gen = torch.Generator().manual_seed(1)
            for _ in range(3):
                for p in model.parameters():
                    p.grad = torch.randn(p.shape, generator=gen)
                opt.step()
            finals.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        if optimizer == "sgd":
            assert torch.equal(*finals), name
        else:
            assert torch.allclose(*finals, rtol=1e-6, atol=1e-7), name
            assert not torch.equal(finals[0], torch.zeros_like(finals[0]))
