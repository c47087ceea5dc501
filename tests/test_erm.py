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


def test_schedule_and_evaluated_splits():
    cfg = _cfg(epochs=4, eval_every=2, save_epochs=[3, 4])
    assert erm.schedule(cfg, 64) == (4, 4, {3, 4})
    assert [erm.evaluated_splits(cfg, e, 4, {3, 4}) for e in (1, 2, 3, 4)] == [[], list(erm.SPLITS), list(erm.SPLITS),
                                                                             list(erm.SPLITS)]
    cfg = _cfg(epochs=4, eval_every=1, eval_splits=["test"], nc1_every=2, max_steps=5)
    assert erm.schedule(cfg, 64) == (4, 3, {3})  # 2 steps an epoch: the 5th step ends in epoch 3, then saved
    assert [erm.evaluated_splits(cfg, e, 3, {3}) for e in (1, 2, 3)] == [["test"], ["train", "test"], list(erm.SPLITS)]
    assert erm.schedule(_cfg(epochs=2, min_steps=7), 64) == (4, 4, {4})
    for bad in (["test", "train"], [], ["val"], "test"):
        with pytest.raises(ValueError, match="eval_splits"):
            _cfg(eval_splits=bad)
    assert "eval_splits" not in _cfg(eval_splits=list(erm.SPLITS))  # the default: no key, the same run ids


def _tensors(path) -> tuple[dict, dict]:
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, {k: v for k, v in f.metadata().items() if k != "config"}


def test_evaluating_only_the_test_split_changes_only_the_history(tiny_images, use, tmp_path):
    """eval_splits=["test"] (Figure 6's runs on the paper profile): the same checkpoints, features and final
    metrics, bit for bit; per epoch, only the test split's values, which equal those of a full evaluation."""
    use(tiny_images)
    full, test_only = _cfg(eval_every=1), _cfg(eval_every=1, eval_splits=["test"])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    m1, m2 = erm.train(full, tmp_path / "a"), erm.train(test_only, tmp_path / "b")
    strip = {k: v for k, v in m1.items() if k != "history"}
    assert json.dumps(strip) == json.dumps({k: v for k, v in m2.items() if k != "history"})
    assert json.dumps(m1["history"][-1]) == json.dumps(m2["history"][-1])
    for h1, h2 in zip(m1["history"][:-1], m2["history"][:-1]):
        assert not [k for k in h2 if k.startswith(("train_", "heldout_"))] and h2["test_acc_wg"] == h1["test_acc_wg"]
        assert json.dumps(h2) == json.dumps({k: v for k, v in h1.items() if not k.startswith(("train_", "heldout_"))})
    for name in ("checkpoint_epoch3.safetensors", "features_epoch3.safetensors"):
        (t1, meta1), (t2, meta2) = _tensors(tmp_path / "a" / name), _tensors(tmp_path / "b" / name)
        assert meta1 == meta2 and t1.keys() == t2.keys() and all(torch.equal(t1[k], t2[k]) for k in t1)


def _syncing_epoch(model, opt, inputs, order, y, w, *, config, epoch, epochs, step, total_steps, base_lrs,
                   generator, scaler=None, max_steps=0):
    """train_one_epoch as it was: the loss read to the host at every step (a reference for its bits)."""
    import torch.nn.functional as F
    model.train()
    total, seen = 0.0, 0
    for b, x in inputs.batches(order, config["batch_size"], train=True, generator=generator, epoch=epoch):
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * erm.lr_factor(config["schedule"], epoch - 1, step, epochs, total_steps)
        rows = torch.from_numpy(b).to(y.device)
        loss = F.cross_entropy(model(x).float(), y[rows], reduction="none")
        loss = (loss * w[rows]).mean() if w is not None else loss.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step, seen, total = step + 1, seen + len(b), total + float(loss.detach()) * len(b)
    return total / max(seen, 1), step


@pytest.mark.parametrize("over", [{}, dict(balance="upweighting", nc1_every=1)])
def test_the_loss_summed_on_the_device_has_the_per_step_sum_s_bits(tiny_images, use, tmp_path, monkeypatch, over):
    use(tiny_images)
    cfg = _cfg(eval_every=1, **over)
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    now = erm.train(cfg, tmp_path / "a")
    monkeypatch.setattr(erm, "train_one_epoch", _syncing_epoch)
    before = erm.train(cfg, tmp_path / "b")
    assert json.dumps(now) == json.dumps(before)
    for name in ("checkpoint_epoch3.safetensors", "features_epoch3.safetensors"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_token_batches_carry_their_longest_text(tiny_texts):
    """Inputs counts a text batch's longest sequence on the host; the model trims to it without reading the
    device, and computes what it computes from a plain dict (which it trims by reading the mask)."""
    from repro import models
    cfg = _cfg("civilcomments", max_length=16)
    batch = inputs.Inputs(tiny_texts, cfg).batch(np.arange(8), train=False)
    assert isinstance(batch, models.TokenBatch) and batch.longest == int(batch["attention_mask"].sum(1).max()) < 16
    torch.manual_seed(0)
    model = models.build("bert-micro", 2, False, **cfg["model_kw"]).eval()
    with torch.no_grad():
        assert torch.equal(model(batch), model(dict(batch)))


def test_token_batches_know_on_the_host_whether_they_hold_padding(tiny_texts):
    """A TokenBatch says whether any text is shorter than its longest (counted by numpy on the host); the model
    then builds BERT's attention mask without reading a tensor, and computes the same bits as from a plain dict
    (where transformers reads the mask to decide whether it needs one), padded or not."""
    from repro import device as devices
    from repro import models
    cfg = _cfg("civilcomments", max_length=16)
    torch.manual_seed(0)
    model = models.build("bert-micro", 2, False, **cfg["model_kw"]).eval()
    pipe = inputs.Inputs(tiny_texts, cfg)
    lengths = (pipe.tokens["attention_mask"].sum(1)).numpy()
    padded, full = np.flatnonzero(lengths < lengths.max())[:4], np.flatnonzero(lengths == lengths.max())[:4]
    for rows, want in ((np.concatenate([padded, full]), True), (full, False)):
        batch = pipe.batch(rows, train=False)
        assert batch.padded is want and batch.longest == lengths.max()
        reads, plain = [], []
        with torch.no_grad():
            with devices.host_reads(reads):
                out = model(batch)
            with devices.host_reads(plain):
                assert torch.equal(out, model(dict(batch)))
        assert reads == [] and [op for op, _ in plain] == ["_local_scalar_dense"] * 2  # its trim, its mask


@pytest.mark.parametrize("data,dataset", [("tiny_images", "waterbirds"), ("tiny_texts", "civilcomments")])
def test_a_training_epoch_reads_the_device_once_not_per_step(data, dataset, use, tmp_path, monkeypatch, request):
    """Every value the host reads from a tensor waits for the GPU (repro.device.host_reads records them on a
    CPU): an epoch of several steps reads one, its summed loss at the end."""
    from repro import device as devices
    use(request.getfixturevalue(data))
    inner, seen = erm.train_one_epoch, []

    def watched(*args, **kw):
        with devices.host_reads([]) as log:
            out = inner(*args, **kw)
        seen.append((out[1] - kw["step"], log))
        return out

    monkeypatch.setattr(erm, "train_one_epoch", watched)
    erm.train(_cfg(dataset, epochs=2, batch_size=8, max_length=16), tmp_path)
    for steps, log in seen:
        assert steps >= 4 and [op for op, _ in log] == ["_local_scalar_dense"], log
        assert log[0][1].startswith("erm.py:")


# Run ids of default configs, recorded before the keys tf32 and compile existed (erm code version 6): a key added
# at its default must leave every stored run's id as it was.
OLD_IDS = [(("waterbirds", "smoke", {}), "78cb94d4a7d4bfaa"), (("celeba", "smoke", {}), "20f4d413b6bdee48"),
           (("civilcomments", "smoke", {}), "1c450685a36ff81e"), (("multinli", "smoke", {}), "588471463a71459a"),
           (("waterbirds", "cpu", {}), "00fba3a8ce3a279c"), (("multinli", "cpu", {}), "e9192f2a421dcead"),
           (("civilcomments", "cpu", {"backbones": "scratch"}), "7f7206eb515b62a9"),
           (("waterbirds", "paper", {}), "f1d6c06067147c1b"),
           (("multinli", "paper", {"backbones": "rehearsal"}), "16b9ad81fa7e6240"),
           (("celeba", "smoke", {"precision": "bf16"}), "313daead64c8b2de"),
           (("celeba", "smoke", {"max_steps": 3, "eval_splits": ["test"]}), "0d8625237f5023d8")]


@pytest.mark.parametrize("case,rid", OLD_IDS)
def test_run_ids_of_the_cpu_smoke_and_paper_profiles_did_not_change(case, rid):
    dataset, profile, over = case
    config = erm.default_config(dataset, profile, data_root="nowhere", **over)
    assert runs._digest("erm", config, 6) == rid  # the config hashes as before (version pinned: 6)
    assert "tf32" not in config and "compile" not in config
    for key in ("tf32", "compile"):  # set away from its default: hashed, another run
        other = erm.default_config(dataset, profile, data_root="nowhere", **over, **{key: True})
        assert other[key] is True and runs._digest("erm", other, 6) != rid
        assert erm.default_config(dataset, profile, data_root="nowhere", **over, **{key: False}) == config


def test_the_fast_path_keys_are_checked_set_per_run_and_listed(tiny_images, use, tmp_path, monkeypatch):
    for key in ("tf32", "compile"):
        with pytest.raises(ValueError, match=f"ERM config key '{key}' must be true or false"):
            _cfg(**{key: "yes"})
    assert erm.fast_path(_cfg()) == [] and erm.fast_path(_cfg(precision="bf16", tf32=True, compile=True)) == \
        ["bf16", "tf32", "compile"]
    use(tiny_images)
    flags = []
    monkeypatch.setattr(erm, "_optimizer", lambda model, config, inner=erm._optimizer: (
        flags.append(torch.backends.cuda.matmul.allow_tf32), inner(model, config))[1])
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    erm.train(_cfg(epochs=1, tf32=True), tmp_path / "a")
    erm.train(_cfg(epochs=1), tmp_path / "b")  # a later run of the process does not inherit the switch
    assert flags == [True, False] and torch.backends.cudnn.allow_tf32


def test_compile_is_refused_off_cuda_before_data_are_read_and_compiles_in_place_on_cuda(use, tmp_path, monkeypatch):
    use(None)  # reading data would fail: the refusal comes first
    with pytest.raises(ValueError, match="'compile' is true but this run's device is cpu: torch.compile is used on "
                                         "CUDA GPUs only; set compile: false or run on a GPU"):
        erm.train(_cfg(compile=True), tmp_path)
    erm.check_device(_cfg(compile=True), torch.device("cuda"))  # accepted there
    calls = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, *a, **kw: calls.append(type(self).__name__))
    from repro import models
    model = models.build("cnn-small", 2, False)
    keys = list(model.state_dict())
    assert erm.compiled(model, _cfg()) is model and calls == []
    assert erm.compiled(model, _cfg(compile=True)) is model and calls == ["Classifier"]
    assert list(model.state_dict()) == keys  # checkpoints keep their tensor names
