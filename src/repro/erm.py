"""ERM finetuning (paper Appendix B.2): one JSON-able config dict, which is also the run-store config.

`default_config(dataset, profile, **overrides)` reads repro.hparams.erm(dataset, profile); `train(config,
workdir)` trains, evaluates per-group accuracy every `eval_every` epochs, and at every epoch of
`save_epochs` writes a checkpoint (checkpoint_epoch{E}.safetensors, the config in its metadata) and the
feature cache (repro.features). `run(dataset, profile, **overrides)` does all of it through the run store.

Deviations from the paper's code (documented for the deviations page): the "train" evaluation split and
NC1 use the ERM training set in eval mode without augmentation (the paper's code measures NC1 on
augmented batches in train mode); the final epoch is reported (no model selection), as in the paper.
"""
from __future__ import annotations

import functools
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro import hparams, models, runs

CHOICES = {
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "linear", "constant"),
    "balance": ("none", "subsetting", "upsampling", "upweighting"),
    "balance_by": ("class", "group"),
    "group_ratio_method": ("subsetting", "upsampling"),
    "train_set": ("train", "train+heldout"),
    "heldout_source": ("val", "train"),
}

# Keys beyond hparams.erm: per-profile defaults (the cpu/smoke profiles run 32x32 twins and short texts).
# eval_every=0 evaluates only after the last epoch (an evaluation pass costs about one training epoch on the
# twins); runs that need curves (Fig. 6) set eval_every=1.
_EXTRA = {
    "paper": dict(image_size=224, max_length=128, augment=True, eval_every=2, model_kw={}),
    "cpu": dict(image_size=32, max_length=64, augment=True, eval_every=0, model_kw={}),
    "smoke": dict(image_size=32, max_length=64, augment=True, eval_every=0, model_kw={}),
}
_PAPER_DATASET = {"waterbirds": dict(eval_every=10), "civilcomments": dict(max_length=220)}


def _data_root() -> str:
    if os.environ.get("REPRO_DATA"):
        return os.environ["REPRO_DATA"]
    return str(runs.default_root().parent / "data")


def default_config(dataset: str, profile: str = "paper", **overrides) -> dict:
    """The full ERM config of `dataset` under `profile` (hparams.erm), with `overrides` applied."""
    hp = hparams.erm(dataset, profile)
    config = dict(dataset=dataset, data_root=_data_root(), profile=profile, model=None, pretrained=None, seed=1,
                  epochs=None, lr=None, weight_decay=None, batch_size=None, optimizer="adamw", schedule="cosine",
                  balance="none", balance_by="class", group_ratio=None,
                  group_ratio_method="upsampling" if dataset == "waterbirds" else "subsetting",
                  train_set="train", heldout_source="val", eval_every=1, save_epochs=None, nc1_every=0,
                  image_size=224, max_length=128, augment=True, model_kw={}, data_fingerprint=None, min_steps=0)
    config.update(_EXTRA[profile])
    if profile == "paper":
        config.update(_PAPER_DATASET.get(dataset, {}))
    for source, values in (("repro.hparams.erm", hp), ("overrides", overrides)):
        unknown = sorted(set(values) - set(config))
        if unknown:
            raise ValueError(f"unknown ERM config key(s) {unknown} in {source}; valid keys: {', '.join(config)}")
        config.update(values)
    if config["save_epochs"] is None:
        config["save_epochs"] = [config["epochs"]]
    if config["data_fingerprint"] is None:
        config["data_fingerprint"] = _fingerprint(dataset, str(config["data_root"]))
    return check(config)


@functools.lru_cache(maxsize=64)
def _fingerprint(dataset: str, root: str) -> str | None:
    """The data's fingerprint, or None when the data are not there (e.g. planning the paper profile)."""
    from repro import metadata
    try:
        return metadata.fingerprint(dataset, root)
    except FileNotFoundError:
        return None


def check(config: dict) -> dict:
    """Validate choices and ranges; returns the config unchanged."""
    for key, valid in CHOICES.items():
        if config[key] not in valid:
            raise ValueError(f"unknown {key} {config[key]!r}; choose one of {', '.join(valid)}")
    r = config["group_ratio"]
    if r is not None and not 0 < r <= 1:
        raise ValueError(f"group_ratio must be null or in (0, 1], got {r}")
    if r is not None and config["balance"] != "none":
        raise ValueError("group_ratio already fixes the group balance; use it with balance='none'")
    if config["eval_every"] < 0 or config["nc1_every"] < 0 or config["min_steps"] < 0:
        raise ValueError("eval_every and nc1_every must be >= 0 (0: only after the last epoch / off)")
    bad = [e for e in config["save_epochs"] if not 1 <= e <= config["epochs"]]
    if bad:
        raise ValueError(f"save_epochs {bad} outside 1..{config['epochs']}")
    return config


# ------------------------------------------------------------------------------------------------- inputs

_CACHE: dict = {}  # decoded images / tokens / datasets, reused by runs in the same process (sweep workers)


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def load_data(config: dict):
    from repro import data
    return _cached(("data", config["dataset"], str(config["data_root"])),
                   lambda: data.load(config["dataset"], config["data_root"]))


def _decode(paths, size: int) -> torch.Tensor:
    """(n,) image paths -> (n, 3, size, size) uint8, resized if the files have another size."""
    from PIL import Image
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = im.convert("RGB")
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


_MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
_STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 0.7-1, aspect 3/4-4/3) + horizontal flip, batched: (n,3,H,W) -> same."""
    n = x.shape[0]
    u = torch.rand(n, 5, generator=generator)
    area = 0.7 + 0.3 * u[:, 0]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    cx, cy = (2 * u[:, 2] - 1) * (1 - w), (2 * u[:, 3] - 1) * (1 - h)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class Inputs:
    """Model inputs of a dataset: `batch(idx, train, generator)` for (b,) dataset indices.

    Images up to 64 px are decoded once into memory as uint8 (n, 3, S, S); larger images are read from
    their paths with repro.data.image_transforms per batch. Texts are tokenized once to max_length.
    """

    def __init__(self, data, config: dict):
        self.kind, self.augment = data.kind, config["augment"]
        self.data, self.size = data, config["image_size"]
        key = (data.name, data.root, config["model"], config["image_size"], config["max_length"])
        if data.kind == "image" and self.size <= 64:
            self.images = _cached(("img",) + key, lambda: _decode(data.inputs, self.size))
        elif data.kind == "text":
            from repro.data import tokenize
            self.tokens = _cached(("tok",) + key, lambda: {k: torch.from_numpy(v) for k, v in tokenize(
                data.inputs, models.tokenizer(config["model"]), config["max_length"]).items()})
        elif data.kind == "tokens":
            self.tokens = {k: torch.from_numpy(v[:, :config["max_length"]]) for k, v in data.tokens.items()}

    def batch(self, idx: np.ndarray, train: bool, generator: torch.Generator | None = None):
        idx = np.asarray(idx, dtype=np.int64)
        if self.kind in ("text", "tokens"):
            rows = torch.from_numpy(self.data.inputs[idx] if self.kind == "tokens" else idx)
            return {k: v[rows] for k, v in self.tokens.items()}
        idx = torch.from_numpy(idx)
        if hasattr(self, "images"):
            x = self.images[idx].float().div_(255)
            if train and self.augment:
                x = augment(x, generator)
            return (x - _MEAN) / _STD
        from PIL import Image
        from repro.data import image_transforms
        tf = image_transforms(train and self.augment, self.size, resize=int(self.size * 256 / 224))
        return torch.stack([tf(Image.open(self.data.inputs[i]).convert("RGB")) for i in idx.tolist()])


# ------------------------------------------------------------------------------------------------- training

def splits(data, config: dict) -> dict:
    """Dataset indices of the ERM training set ("train"), the held-out set and the test set."""
    from repro import split
    train_idx, heldout_idx, test_idx = split.heldout(data, config["seed"], source=config["heldout_source"])
    if config["train_set"] == "train+heldout":
        train_idx = np.union1d(train_idx, heldout_idx)
    return {"train": train_idx, "heldout": heldout_idx, "test": test_idx}


def _sampler(data, train_idx: np.ndarray, config: dict):
    """(epoch -> (m,) dataset indices in training order, m, per-example loss weights (n,) or None).

    Upsampling (by balance or group ratio) redraws m = len(train) examples with replacement every epoch
    (WeightedRandomSampler in the paper's code); subsetting fixes one seeded subset.
    """
    from repro import balance
    seed, y, g = config["seed"], data.y[train_idx], data.g[train_idx]
    keys = y if config["balance_by"] == "class" else g
    weights = None
    if config["group_ratio"] is not None:
        minority = balance.PAPER_MINORITY.get(data.name)
        if config["group_ratio_method"] == "subsetting":
            train_idx = train_idx[balance.group_ratio_subset(y, g, config["group_ratio"], seed, minority)]
        else:
            probs = balance.group_ratio_probs(y, g, config["group_ratio"], minority)
            return (lambda e: train_idx[balance.draw(probs, seed * 1000 + e, len(train_idx))]), len(train_idx), None
    elif config["balance"] == "subsetting":
        train_idx = train_idx[balance.subsample(keys, seed)]
    elif config["balance"] == "upsampling":
        return (lambda e: train_idx[balance.upsample(keys, seed * 1000 + e, len(train_idx))]), len(train_idx), None
    elif config["balance"] == "upweighting":
        weights = np.zeros(len(data.y), dtype=np.float32)
        weights[train_idx] = balance.upweight(keys)
    perm_rng = np.random.default_rng(seed)
    return (lambda e: train_idx[perm_rng.permutation(len(train_idx))]), len(train_idx), weights


def _optimizer(model, config: dict) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    text = models.is_text(config["model"])  # BERT: no weight decay on biases and LayerNorm
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if text and (name.endswith("bias") or "LayerNorm" in name) else decay).append(p)
    groups = [{"params": decay, "weight_decay": config["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}]
    if config["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=config["lr"])
    return torch.optim.SGD(groups, lr=config["lr"], momentum=0.0)


def lr_factor(schedule: str, epoch: int, step: int, epochs: int, total_steps: int) -> float:
    """cosine: per epoch 0.5(1+cos(pi e/E)), e = 0-based epoch; linear: per step 1 - t/T; constant: 1."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "linear":
        return 1 - step / total_steps
    return 1.0


@torch.no_grad()
def predict(model, inputs: Inputs, idx: np.ndarray, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode features (n, d) and logits (n, C) of dataset indices idx, without augmentation."""
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for start in range(0, len(idx), batch_size):
        f = model.features(inputs.batch(idx[start:start + batch_size], train=False))
        feats.append(f)
        logits.append(model.head(f))
    model.train(was_training)
    d = model.head.in_features
    return (torch.cat(feats) if feats else torch.zeros(0, d)), (torch.cat(logits) if logits else torch.zeros(0, 1))


def _progress(iterable, **kw):
    from tqdm import tqdm
    off = os.environ.get("REPRO_PROGRESS", "1") == "0" or not sys.stderr.isatty()
    return tqdm(iterable, disable=off, **kw)


def train(config: dict, workdir) -> dict:
    """Train ERM for config["epochs"] epochs; write checkpoints and feature caches into workdir; metrics dict."""
    from repro import features, metrics
    config, workdir = check(dict(config)), Path(workdir)
    torch.manual_seed(config["seed"])
    gen = torch.Generator().manual_seed(config["seed"])
    data = load_data(config)
    idx = splits(data, config)
    order_of, n_train, weights = _sampler(data, idx["train"], config)
    inputs = Inputs(data, config)
    model = models.build(config["model"], data.n_classes, config["pretrained"], **config["model_kw"])
    opt = _optimizer(model, config)
    base_lrs = [group["lr"] for group in opt.param_groups]
    epochs, bs = config["epochs"], config["batch_size"]
    steps_per_epoch = math.ceil(n_train / bs)
    save = set(config["save_epochs"])
    if config["min_steps"] > epochs * steps_per_epoch:
        # a small subset (e.g. at a group ratio) trains for at least min_steps SGD steps; it saves its last epoch
        epochs = math.ceil(config["min_steps"] / steps_per_epoch)
        save = {epochs}
    props = np.bincount(data.g[idx["train"]], minlength=data.n_groups) / len(idx["train"])
    y, g = torch.tensor(data.y, dtype=torch.long), torch.tensor(data.g, dtype=torch.long)
    w = torch.from_numpy(weights) if weights is not None else None
    history, step, nc1_heldout = [], 0, None
    for epoch in _progress(range(1, epochs + 1), desc=f"erm {config['dataset']}", unit="epoch"):
        model.train()
        order, total = order_of(epoch), 0.0
        for start in range(0, len(order), bs):
            b = order[start:start + bs]
            for group, base in zip(opt.param_groups, base_lrs):
                group["lr"] = base * lr_factor(config["schedule"], epoch - 1, step, epochs, epochs * steps_per_epoch)
            loss = F.cross_entropy(model(inputs.batch(b, train=True, generator=gen)), y[b], reduction="none")
            loss = (loss * w[b]).mean() if w is not None else loss.mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step, total = step + 1, total + float(loss.detach()) * len(b)
        row = {"epoch": epoch, "loss": total / len(order)}
        every = config["eval_every"]
        full = (every > 0 and epoch % every == 0) or epoch == epochs or epoch in save
        nc1_due = config["nc1_every"] > 0 and (epoch % config["nc1_every"] == 0 or epoch == epochs)
        if full or nc1_due:
            out = {s: predict(model, inputs, i) for s, i in idx.items() if full or s == "train"}
            for s, (f, logits) in out.items():
                row.update({f"{s}_{k}": v for k, v in metrics.summarize(
                    logits.argmax(1), y[idx[s]], g[idx[s]], data.n_groups,
                    props if data.name == "waterbirds" else None).items()})
            if nc1_due:
                row["nc1_train"] = metrics.nc1(out["train"][0], y[idx["train"]])
                if epoch == epochs:  # the last epoch always evaluates every split
                    nc1_heldout = metrics.nc1(out["heldout"][0], y[idx["heldout"]])
            if epoch in save:
                save_checkpoint(model, config, workdir / f"checkpoint_epoch{epoch}.safetensors", epoch)
                features.save(workdir / f"features_epoch{epoch}.safetensors", model, out, data, idx,
                              {"config": runs.canonical_json(config), "epoch": str(epoch)})
        history.append(row)
    final = {k: v for k, v in history[-1].items() if k not in ("epoch",)}
    return {**final, "nc1_heldout": nc1_heldout, "history": history, "n_train": n_train,
            "saved_epochs": sorted(save), "epochs_trained": epochs}


def save_checkpoint(model, config: dict, path: Path, epoch: int) -> None:
    """safetensors of the state dict, with the full config (JSON) and the epoch in its metadata."""
    from safetensors.torch import save_model
    save_model(model, str(path), metadata={"config": runs.canonical_json(config), "epoch": str(epoch)})


def load_checkpoint(path) -> tuple[torch.nn.Module, dict]:
    """(model, config) from a checkpoint written by save_checkpoint."""
    from safetensors import safe_open
    from safetensors.torch import load_model
    from repro.data import CLASS_NAMES
    import json
    with safe_open(str(path), "pt") as f:
        config = json.loads(f.metadata()["config"])
    model = models.build(config["model"], len(CLASS_NAMES[config["dataset"]]), False, **config["model_kw"])
    load_model(model, str(path))
    return model, config


def run(dataset: str, profile: str = "paper", store=None, **overrides) -> Path:
    """Train (if not already in the run store) and cache features; returns the run directory."""
    config = default_config(dataset, profile, **overrides)
    return runs.get("erm", config, train, store)
