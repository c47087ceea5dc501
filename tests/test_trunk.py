"""Pretrained backbones of the cpu profile: EfficientNet-Lite0's weights, frozen trunks cached on disk, partial
checkpoints, and the `backbones` params switch."""
import json

import numpy as np
import pytest
import torch

from tests.conftest import image_data
from repro import book, erm, hparams, inputs, models, runs, sections, synth, trunk


def _photo(name: str) -> torch.Tensor:
    """scikit-learn's sample photo: shorter side resized to 224, centre crop 224, mean = std = 0.5."""
    from sklearn.datasets import load_sample_image
    from torchvision.transforms import functional as TF

    x = torch.from_numpy(load_sample_image(name).copy()).permute(2, 0, 1).float() / 255
    x = TF.center_crop(TF.resize(x, 224, antialias=True), 224)
    mean, std = models.normalization("efficientnet-lite0")
    return ((x - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1))[None]


@pytest.mark.parametrize("photo, expected", [("china.jpg", {"bell cote", "palace", "monastery"}),
                                             ("flower.jpg", {"daisy"})])
def test_efficientnet_lite0_imagenet_weights_classify_sample_photos(photo, expected):
    from torchvision.models import ResNet18_Weights
    names = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]  # the 1000 ImageNet class names
    net = models.efficientnet_lite0_imagenet().eval()  # strict load: every key maps, shapes agree
    with torch.no_grad():
        top5 = {names[i] for i in net(_photo(photo))[0].topk(5).indices}
    assert top5 & expected, top5
    # the registry's model is the same network up to the classifier (its head unit a matrix product over
    # pixels, models.PointwiseHead: other float rounding)
    model = models.build("efficientnet-lite0", 2, True).eval()
    with torch.no_grad():
        torch.testing.assert_close(model.features(_photo(photo)),
                                   net.forward_head(net.forward_features(_photo(photo)), pre_logits=True),
                                   atol=1e-5, rtol=1e-5)


def test_every_weight_key_maps_with_equal_shapes():
    import timm
    state = models.efficientnet_lite0_state()
    target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    assert set(state) == set(target) and all(state[k].shape == target[k].shape for k in target)


@pytest.mark.parametrize("name, blocks", [("efficientnet-lite0", 2), ("minilm", 1)])
def test_top_on_trunk_states_equals_the_whole_backbone(name, blocks):
    torch.manual_seed(0)
    model = models.build(name, 2, True).eval()
    if name == "minilm":
        tok = models.tokenizer("minilm")
        enc = tok(["a bird on water", "a much longer sentence about a bird"], padding="max_length", max_length=16,
                  return_tensors="pt")
        x = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    else:
        x = torch.randn(3, 3, 32, 32)
    frozen = trunk.depth(model, blocks, name)
    with torch.no_grad():
        whole = model.features(x)
        state = model.backbone.run(x, 0, frozen)
        top = trunk.freeze(model, frozen)
        assert torch.equal(top.features(state), whole)
    b = top.backbone.backbone
    lower = [b.bert.embeddings, *b.bert.encoder.layer[:frozen - 1]] if name == "minilm" else list(b.units[:frozen])
    upper = b.bert.encoder.layer[frozen - 1] if name == "minilm" else b.units[frozen]
    assert not any(p.requires_grad for m in lower for p in m.parameters())
    assert all(p.requires_grad for p in upper.parameters()) and all(not m.training for m in lower)
    with pytest.raises(ValueError, match="train_blocks"):
        trunk.depth(models.build("cnn-small", 2, False), 1, "cnn-small")


@pytest.mark.parametrize("pool", ["pooler", "cls"])
def test_first_token_top_layer_equals_the_whole_layer_and_trains_all_of_it(pool):
    """With a [CLS] pool the last layer computes the first token alone (models.first_token_layer): the same
    features as the whole layer (to float rounding; padding in the batch), and every weight still gets a
    gradient but the keys' bias (the keys and values of all tokens feed the first token's attention)."""
    torch.manual_seed(0)
    model = models.build("minilm", 2, True, pool=pool).eval()
    enc = models.tokenizer("minilm")(["a bird on water", "a much longer sentence about a bird on the water"],
                                     padding="max_length", max_length=16, return_tensors="pt")
    x = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    frozen = trunk.depth(model, 1, "minilm")
    with torch.no_grad():
        whole = model.features(x)
        state = model.backbone.run(x, 0, frozen)
    top = trunk.freeze(model, frozen)
    out = top.backbone.backbone.run(state, frozen, frozen + 1)
    assert out["hidden"].shape[1] == 1
    assert torch.allclose(top.features(state), whole, atol=1e-5, rtol=0)
    assert not torch.allclose(whole, models.build("minilm", 2, True, pool="mean").eval().features(x), atol=1e-2)
    top.train()
    top(state).sum().backward()
    last = top.backbone.backbone.bert.encoder.layer[frozen - 1]
    # the key bias adds the same constant to every score of a query, which the softmax cancels: its gradient is
    # zero in the whole layer too (up to rounding), and it has no effect on any output
    grads = {name: p.grad for name, p in last.named_parameters()}
    assert grads.pop("attention.self.key.bias") is None
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return image_data(tmp_path_factory.mktemp("imgs"), (48, 16, 32))


def _config(**kw):
    base = dict(data_root="memory", epochs=2, data_fingerprint="tiny-fingerprint", model="efficientnet-lite0",
                pretrained=True, train_blocks=1, lr=1e-4, model_kw={})
    return erm.default_config("waterbirds", "cpu", **{**base, **kw})


def test_trunk_cache_is_the_computation_written_once_and_reused(tiny, monkeypatch):
    config = _config()
    model = models.build("efficientnet-lite0", 2, True)
    frozen = trunk.depth(model, 1, "efficientnet-lite0")
    source = inputs.Inputs(tiny, config)
    first = trunk.cached(model.backbone, source, config, frozen)
    path = trunk.cache_path(tiny, config, frozen, trunk.VIEWS)
    assert path.is_file() and first["x"].shape[:2] == (trunk.VIEWS, len(tiny.y))
    stamp = path.stat().st_mtime_ns
    monkeypatch.setattr(trunk, "compute", lambda *a: pytest.fail("recomputed a cached trunk"))
    again = trunk.cached(model.backbone, source, config, frozen)
    assert path.stat().st_mtime_ns == stamp and list(path.parent.iterdir()) == [path]  # no lock/tmp left over
    monkeypatch.undo()
    fresh = trunk.compute(model.backbone, source, frozen, trunk.VIEWS)
    assert torch.equal(again["x"], first["x"]) and torch.equal(fresh["x"], first["x"])
    model.eval()  # views 0 and 1 are the image and its mirror image, through the frozen units in eval mode
    close = dict(atol=1e-4, rtol=1e-4)  # the cache convolves in channels-last memory: other float rounding
    with torch.no_grad():
        x = source.batch(np.arange(4), train=False)
        torch.testing.assert_close(first["x"][0, :4], model.backbone.run(x, 0, frozen), **close)
        torch.testing.assert_close(first["x"][1, :4], model.backbone.run(x.flip(3), 0, frozen), **close)
        assert not torch.allclose(first["x"][1, :4], first["x"][0, :4], **close)


def test_erm_trains_only_the_top_and_the_checkpoint_round_trips(tiny, monkeypatch, tmp_path):
    monkeypatch.setattr(erm, "load_data", lambda config: tiny)
    config = _config(epochs=4, lr=3e-3)
    metrics = erm.train(config, tmp_path)
    losses = [h["loss"] for h in metrics["history"]]
    assert losses[-1] < losses[0]  # the top learns
    model, saved = erm.load_checkpoint(tmp_path / "checkpoint_epoch4.safetensors")
    assert saved == config
    pretrained = models.build("efficientnet-lite0", 2, True)
    frozen = trunk.depth(pretrained, 1, "efficientnet-lite0")
    for k, v in pretrained.backbone.units[:frozen].state_dict().items():  # frozen weights and BN statistics
        assert torch.equal(model.backbone.backbone.units[:frozen].state_dict()[k], v)
    trained = model.backbone.backbone.units[frozen].state_dict()
    assert any(not torch.equal(v, pretrained.backbone.units[frozen].state_dict()[k]) for k, v in trained.items())
    from safetensors.torch import load_file
    stored = load_file(str(tmp_path / "checkpoint_epoch4.safetensors"))
    assert not any(k.startswith(f"backbone.backbone.units.{frozen - 1}.") for k in stored)  # trunk not stored
    from repro import features
    cached = features.load(tmp_path)
    states = trunk.TrunkInputs(inputs.Inputs(tiny, config), trunk.cached(pretrained.backbone, inputs.Inputs(tiny, config),
                                                                         config, frozen), config)
    feats, logits = features.predict(model, states, erm.splits(tiny, config)["test"])
    assert torch.equal(feats, cached["features_test"]) and torch.equal(logits, cached["logits_test"])


@pytest.mark.parametrize("name", ["bert-micro", "efficientnet-lite0"])
def test_checkpoint_stores_only_trained_tensors_and_reproduces_outputs(name, tmp_path):
    dataset = "civilcomments" if name == "bert-micro" else "waterbirds"
    over = dict(model_kw={"hidden": 32, "intermediate": 64}) if name == "bert-micro" else dict(train_blocks=2,
                                                                                             pretrained=True)
    config = erm.default_config(dataset, "smoke", data_root="memory", data_fingerprint="x", model=name, seed=3, **over)
    model = erm._rebuild(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.01)  # "training"
    path = tmp_path / "c.safetensors"
    erm.save_checkpoint(model, config, path, 1)
    loaded, _ = erm.load_checkpoint(path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    if name == "bert-micro":  # the frozen random 30,522-row table is rebuilt from the seed, not stored
        assert path.stat().st_size < 1_000_000
        x = {"input_ids": torch.randint(0, 30522, (2, 8)), "attention_mask": torch.ones(2, 8, dtype=torch.long)}
    else:
        x = torch.randn(2, 192, 1, 1)
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    if name == "bert-micro":  # a checkpoint whose config rebuilds another random table (seed 4) is refused
        from safetensors.torch import load_file
        bad = erm.default_config(dataset, "smoke", data_root="memory", data_fingerprint="x", model=name, seed=4, **over)
        runs.save_safetensors(path, load_file(str(path)), metadata={
            "config": runs.canonical_json(bad), "epoch": "1",
            "frozen_sha256": erm.frozen_digest(model, models.frozen_keys(model))})
        with pytest.raises(ValueError, match="frozen weights"):
            erm.load_checkpoint(path)


@pytest.mark.slow
@pytest.mark.parametrize("dataset", ["waterbirds", "civilcomments"])
def test_cpu_profile_erm_run_per_backbone(dataset, tmp_path):
    root = tmp_path / "data"
    synth.ensure(root, [dataset], scale=0.01 if dataset == "waterbirds" else 0.002)
    path = erm.run(dataset, "cpu", store=tmp_path / "runs", data_root=str(root), epochs=1)
    assert runs.is_done(path)
    config = json.loads((path / "config.json").read_text())
    assert config["model"] == ("efficientnet-lite0" if dataset == "waterbirds" else "minilm") and config["train_blocks"] == 1
    assert len(list((root / dataset / ".trunk").glob("*.safetensors"))) == 1


def test_backbones_switch():
    assert hparams.erm("waterbirds", "cpu")["model"] == "efficientnet-lite0"
    assert hparams.erm("multinli", "cpu", "pretrained")["model"] == "minilm"
    assert hparams.erm("celeba", "cpu", "scratch")["model"] == "cnn-small"
    assert hparams.erm("civilcomments", "cpu", "scratch")["model"] == "bert-micro"
    with pytest.raises(ValueError, match="not available in the smoke profile"):
        hparams.erm("celeba", "smoke", "scratch")
    scratch = sections.base_configs(["waterbirds"], [1], "cpu", "memory", backbones="scratch")[0]
    assert scratch["model"] == "cnn-small" and "train_blocks" not in scratch  # the earlier cpu run ids
    assert sections.base_configs(["waterbirds"], [1], "cpu", "memory")[0]["train_blocks"] == 1
    assert "train_blocks" not in erm.default_config("waterbirds", "smoke", data_root="memory")  # smoke ids unchanged


def test_backbones_param_is_validated(tmp_path):
    import shutil
    root = tmp_path / "repo"
    repo = book.Path(__file__).resolve().parents[1]
    shutil.copytree(repo / "params", root / "params"), shutil.copytree(repo / "book", root / "book")
    (root / "params" / "cpu" / "margins.yml").write_text("backbones: imagenet\n")
    with pytest.raises(book.BookError, match=r"margins.yml: key 'backbones' must be 'pretrained' or 'scratch'"):
        book.load_params(root, "margins", "cpu")


_WORKER = """
import sys, numpy as np
from repro import inputs, models, trunk
from repro.data import GroupData
root, log = sys.argv[1], sys.argv[2]
paths = np.array([f"{root}/{i}.png" for i in range(96)], dtype=object)
data = GroupData("waterbirds", "image", paths, np.zeros(96, int), np.zeros(96, int), np.repeat([0, 1, 2], [48, 16, 32]), root=root)
compute = trunk.compute
def counted(*a):
    open(log, "a").write("computed\\n")
    return compute(*a)
trunk.compute = counted
config = dict(seed=1, pretrained=True, augment=True, image_size=32, max_length=64, model="efficientnet-lite0", data_fingerprint="two")
model = models.build("efficientnet-lite0", 2, True)
print(float(trunk.cached(model.backbone, inputs.Inputs(data, config), config, 17)["x"].sum()))
"""


def test_two_processes_compute_the_trunk_once(tmp_path):
    import os
    import subprocess
    import sys
    image_data(tmp_path, (48, 16, 32))
    log = tmp_path / "log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path), str(log)], env=env,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]
    sums = [p.communicate(timeout=300)[0].split()[-1] for p in procs]
    assert all(p.returncode == 0 for p in procs) and sums[0] == sums[1]
    assert log.read_text() == "computed\n" and len(list((tmp_path / ".trunk").glob("*.safetensors"))) == 1


def test_a_last_training_batch_of_one_image_joins_the_batch_before():
    """BatchNorm over the 1x1 maps of a 32 px top cannot train on one example: 65 = 32 + 33 when training,
    32 + 32 + 1 when evaluating (texts keep their batches)."""
    from types import SimpleNamespace

    data = SimpleNamespace(y=np.zeros(65, dtype=np.int64))
    config = {"seed": 1}
    images = trunk.TrunkInputs(SimpleNamespace(data=data, kind="image", device="cpu"),
                               {"x": torch.zeros(4, 65, 2, 1, 1)}, config)
    idx = np.arange(65)
    sizes = lambda pipe, train: [len(r) for r, _ in pipe.batches(idx, 32, train=train, epoch=1)]  # noqa: E731
    assert sizes(images, True) == [32, 33] and sizes(images, False) == [32, 32, 1]
    assert sorted(np.concatenate([r for r, _ in images.batches(idx, 32, train=True, epoch=1)])) == list(idx)
    texts = trunk.TrunkInputs(SimpleNamespace(data=data, kind="text", device="cpu"),
                              {"hidden": torch.zeros(65, 3, 2), "attention_mask": torch.ones(65, 3, dtype=torch.long)},
                              config)
    assert sizes(texts, True) == [32, 32, 1]


def test_trunk_cache_name_depends_on_the_frozen_weights_origin(tmp_path):
    """A random-init trunk is drawn from the run's seed: each seed gets its own cache; pretrained ones share."""
    from types import SimpleNamespace
    data = SimpleNamespace(root=str(tmp_path), name="waterbirds", kind="image")
    base = dict(data_fingerprint="f", model="efficientnet-lite0", image_size=32, max_length=64)
    pretrained = {trunk.cache_path(data, dict(base, pretrained=True, seed=s), 17, 4) for s in (1, 2)}
    random = {trunk.cache_path(data, dict(base, pretrained=False, seed=s), 17, 4) for s in (1, 2)}
    assert len(pretrained) == 1 and len(random) == 2 and not pretrained & random


class _Texts:
    """The part of repro.inputs.Inputs that trunk.compute reads, for a list of texts (kind "text")."""

    def __init__(self, texts, max_length=24):
        enc = models.tokenizer("minilm")(texts, padding="max_length", truncation=True, max_length=max_length,
                                         return_tensors="pt")
        self.kind, self.tokens = "text", {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        self.data = type("D", (), {"y": np.zeros(len(texts), dtype=np.int64)})()

    def batch(self, rows, train):
        tokens = {k: v[torch.from_numpy(np.asarray(rows))] for k, v in self.tokens.items()}
        return models.TokenBatch(tokens, models.longest(tokens))


def test_text_trunk_states_do_not_depend_on_batching_and_padding_holds_zeros(monkeypatch):
    """Texts go through the trunk sorted by length (trunk._text_states): each text's states are those it gets
    alone, to float rounding, whatever the batch size, and the positions past its length are zeros."""
    texts = ["a bird", "a much longer sentence about a bird standing on the water", "water",
             "a bird on land near a lake", "the quick brown fox jumps over the lazy dog again and again", "land"]
    model = models.build("minilm", 2, True).eval()
    frozen = trunk.depth(model, 1, "minilm")
    source = _Texts(texts)
    states = trunk.compute(model.backbone, source, frozen, 1)
    lengths = source.tokens["attention_mask"].sum(1)
    assert states["hidden"].shape[:2] == (len(texts), int(lengths.max()))
    monkeypatch.setattr(trunk, "BATCH", 2)
    small = trunk.compute(model.backbone, source, frozen, 1)
    assert torch.equal(small["attention_mask"], states["attention_mask"])
    torch.testing.assert_close(small["hidden"], states["hidden"], atol=1e-5, rtol=0)
    for i, n in enumerate(lengths.tolist()):
        with torch.no_grad():
            alone = model.backbone.run(source.batch([i], False), 0, frozen)["hidden"][0]
        torch.testing.assert_close(states["hidden"][i, :n], alone[:n], atol=1e-5, rtol=0)
        assert not states["hidden"][i, n:].any() and not states["attention_mask"][i, n:].any()


@pytest.mark.parametrize("size", [1, 2, 7])
def test_pointwise_head_is_the_convolution_and_batchnorm_it_replaces(size):
    """EfficientNet-Lite's head unit (1x1 conv, BatchNorm, ReLU6) computed on rows of pixels (models.PointwiseHead):
    the same outputs, gradients and running statistics as nn.Sequential(conv, bn), to float rounding."""
    import copy
    net = models.build("efficientnet-lite0", 2, True).backbone
    head = net.units[-1]
    assert isinstance(head, models.PointwiseHead)
    plain = torch.nn.Sequential(copy.deepcopy(head[0]), copy.deepcopy(head[1]))
    assert list(plain.state_dict()) == list(head.state_dict())
    x = torch.randn(8, head[0].in_channels, size, size).contiguous(memory_format=torch.channels_last)
    for train in (True, False):
        head.train(train), plain.train(train)
        out, ref = head(x), plain(x)
        torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
        assert out.is_contiguous(memory_format=torch.channels_last)
        if train:
            out.square().sum().backward(), ref.square().sum().backward()
            torch.testing.assert_close(head[0].weight.grad, plain[0].weight.grad, atol=1e-3, rtol=1e-4)
            torch.testing.assert_close(head[1].running_var, plain[1].running_var, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="1x1"):
        models.PointwiseHead(torch.nn.Conv2d(4, 4, 3), torch.nn.BatchNorm2d(4))
