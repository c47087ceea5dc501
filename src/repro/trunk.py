"""Fine-tuning the top of a pretrained backbone: the frozen lower units run once per dataset, cached on disk.

A backbone with units (repro.models: EfficientNetLite, TextEncoder) is split by the ERM key `train_blocks`
= k: units[:n - k] are frozen (eval mode, requires_grad False) and units[n - k:] plus the head are trained.
The frozen part's outputs ("trunk states") are a function of the data, the model and the input size only, so
they are computed once per (dataset files' fingerprint, model, image size or max length, frozen depth, views)
and stored in <dataset folder>/.trunk/ (safetensors, written atomically under a file lock, so concurrent
processes compute them once). ERM then trains on batches of cached states (`TrunkInputs`).

Augmentation cannot pass through a frozen cache, so images cache VIEWS fixed views of every example: view 0
is the image itself (the only view evaluation and features use), view 1 its horizontal flip, views 2-3 two
random resized crops (repro.inputs.augment, drawn once under a fixed seed). Each epoch a training example uses
one view, drawn uniformly under a generator seeded by (run seed, epoch). Texts have one view (ERM does not
augment texts).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from repro import models

VIEWS = 4  # image views cached per example: original, flip, two random resized crops
VIEW_SEED = 20260  # the crops' generator seed (fixed: the views belong to the dataset, not to a run)
BATCH = 256
FORMAT = 3  # how states are computed (2: images in channels-last memory; 3: texts in batches sorted by length;
#   each other float rounding): part of a cache's name


class Top(nn.Module):
    """The trained top of a backbone: units[start:] then the pool; takes trunk states."""

    def __init__(self, backbone: nn.Module, start: int):
        super().__init__()
        self.backbone, self.start = backbone, start

    def forward(self, state):
        b = self.backbone
        state = b.run(state, self.start, b.n_units)
        return b.pool_state(state) if hasattr(b, "pool_state") else b.pool(state)


def depth(model, train_blocks: int, name: str) -> int:
    """Number of frozen units of `model` when its top `train_blocks` units are trained (0 < k <= n_units - 1)."""
    n = getattr(model.backbone, "n_units", None)
    if n is None:
        raise ValueError(f"ERM config key 'train_blocks': model {name!r} is not a chain of units; "
                         "use train_blocks 0 (train everything) or model efficientnet-lite0 / minilm")
    if not 1 <= train_blocks <= n - 1:
        raise ValueError(f"ERM config key 'train_blocks' must be in 1..{n - 1} for model {name!r} "
                         f"({n} units), got {train_blocks}; fix it in the params file or with --set")
    return n - train_blocks


def freeze(model, frozen: int):
    """(model whose backbone is Top(units[frozen:]), the frozen backbone): trunk parameters stop requiring
    gradients and the trunk is put in eval mode."""
    backbone = model.backbone
    for unit in backbone.units[:frozen] if hasattr(backbone, "units") else ():
        unit.requires_grad_(False).eval()
    if hasattr(backbone, "bert"):
        backbone.bert.embeddings.requires_grad_(False).eval()
        for layer in backbone.bert.encoder.layer[:frozen - 1]:
            layer.requires_grad_(False).eval()
    model.backbone = Top(backbone, frozen)
    return model


def _views(x: torch.Tensor, rows: np.ndarray, view: int) -> torch.Tensor:
    """View `view` of a (b, 3, S, S) float batch: itself, its flip, or a crop seeded by (VIEW_SEED, view, rows)."""
    from repro.inputs import augment
    if view == 0:
        return x
    if view == 1:
        return x.flip(3)
    out = torch.empty_like(x)
    for k, row in enumerate(rows):  # one generator per example: a view does not depend on batching
        gen = torch.Generator().manual_seed(VIEW_SEED * 1000003 + view * 100003 + int(row))
        out[k:k + 1] = augment(x[k:k + 1], gen)
    return out


@torch.no_grad()
def compute(backbone, inputs, frozen: int, views: int) -> dict[str, torch.Tensor]:
    """Trunk states of every example and view: images {"x": (views, n, C, h, w)}; texts {"hidden": (n, L, d),
    "attention_mask": (n, L)} with L the longest text of the dataset."""
    n = len(inputs.data.y)
    was = backbone.training
    backbone.eval()
    if inputs.kind != "image":
        states = _text_states(backbone, inputs, frozen)
        backbone.train(was)
        return states
    backbone.to(memory_format=torch.channels_last)  # convolutions in channels-last memory: ~3x faster on one CPU thread
    parts: dict[int, list] = {v: [] for v in range(views)}
    for start in range(0, n, BATCH):
        rows = np.arange(start, min(start + BATCH, n))
        x = inputs.raw(rows)
        for v in range(views):
            x_v = inputs.normalize(_views(x, rows, v)).contiguous(memory_format=torch.channels_last)
            parts[v].append(backbone.run(x_v, 0, frozen).contiguous().cpu())
    backbone.train(was)
    backbone.to(memory_format=torch.contiguous_format)
    return {"x": torch.stack([torch.cat(parts[v]) for v in range(views)]).contiguous()}


def _text_states(backbone, inputs, frozen: int) -> dict[str, torch.Tensor]:
    """Text trunk states {"hidden": (n, L, d), "attention_mask": (n, L)}, L the dataset's longest text. The texts
    go through the trunk in batches of similar lengths (sorted by length, stable), since each batch is padded
    to its longest text: for texts of uneven length this halves the tokens computed."""
    masks = inputs.tokens["attention_mask"]
    if inputs.kind == "tokens":  # token-id datasets index their token table (repro.inputs)
        masks = masks[torch.from_numpy(np.asarray(inputs.data.inputs, dtype=np.int64))]
    lengths = masks.sum(1).numpy()
    order = np.argsort(lengths, kind="stable")
    length = int(lengths.max())
    hidden, mask = None, torch.zeros(len(lengths), length, dtype=torch.long)
    for start in range(0, len(order), BATCH):
        rows = order[start:start + BATCH]
        state = backbone.run(inputs.batch(rows, train=False), 0, frozen)
        if hidden is None:
            hidden = torch.zeros(len(lengths), length, state["hidden"].shape[-1])
        r, m = torch.from_numpy(rows), state["attention_mask"].cpu()
        L = m.shape[1]  # padding positions hold zeros, whatever a batch computed there
        hidden[r, :L], mask[r, :L] = state["hidden"].cpu().masked_fill(~m.bool()[..., None], 0.0), m
    return {"hidden": hidden, "attention_mask": mask}


def cache_path(data, config: dict, frozen: int, views: int) -> Path:
    """<dataset folder>/.trunk/<name>-<model>-<size>-f<frozen>-v<views>-<digest>.safetensors."""
    size = config["image_size"] if data.kind == "image" else config["max_length"]
    # the frozen weights: the model's pretrained ones, or its random init, drawn from the run's seed
    weights = "pretrained" if config["pretrained"] else f"random-init-seed{config['seed']}"
    key = (f"{config['data_fingerprint']}\0{config['model']}\0{size}\0{frozen}\0{views}\0{VIEW_SEED}\0{weights}"
           f"\0{FORMAT}")
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return Path(data.root) / ".trunk" / f"{data.name}-{config['model']}-{size}-f{frozen}-v{views}-{digest}.safetensors"


def cached(backbone, inputs, config: dict, frozen: int) -> dict[str, torch.Tensor]:
    """Trunk states of the dataset (see `compute`), read from the on-disk cache or computed once and written
    there atomically under a file lock; in memory only when the data have no folder or no fingerprint."""
    from safetensors.torch import load_file, save_file

    from repro import runs
    data = inputs.data
    views = VIEWS if data.kind == "image" and config["augment"] else 1
    if not Path(data.root).is_dir() or config["data_fingerprint"] is None:
        return compute(backbone, inputs, frozen, views)
    path = cache_path(data, config, frozen, views)
    if not path.is_file():
        path.parent.mkdir(exist_ok=True)
        with runs.file_lock(path.with_name(f".{path.name}.lock"), f"the trunk cache {path.name}"):
            if not path.is_file():  # another process may have written it while we waited
                states = compute(backbone, inputs, frozen, views)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                save_file({k: v.contiguous() for k, v in states.items()}, str(tmp))
                os.replace(tmp, path)
                return states
    return load_file(str(path))


class TrunkInputs:
    """Cached trunk states as model inputs, with the interface of repro.inputs.Inputs: `batches(idx,
    batch_size, train, generator, epoch)` yields (rows (b,), state on the device)."""

    def __init__(self, inputs, states: dict, config: dict):
        self.data, self.kind, self.device = inputs.data, inputs.kind, inputs.device
        self.channels_last, self.seed = False, config["seed"]
        self.states = states
        self.views = states["x"].shape[0] if "x" in states else 1
        # texts: each example's length (n,), so that a batch copies its states only up to its longest text
        self.lengths = states["attention_mask"].sum(1).numpy() if "attention_mask" in states else None

    def batch(self, rows: np.ndarray, train: bool, view: np.ndarray | None = None):
        r = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        # copies without blocking: a blocking copy to a GPU waits for the device's work queued so far
        if self.kind != "image":
            length = int(self.lengths[rows].max())  # on the host
            state = {k: v[:, :length][r] for k, v in self.states.items()}
            _, padded = models.host_lengths(state["attention_mask"])
            return models.TokenBatch({k: v.to(self.device, non_blocking=True) for k, v in state.items()}, length, padded)
        v = torch.zeros_like(r) if view is None else torch.from_numpy(view[rows])
        return self.states["x"][v, r].to(self.device, non_blocking=True)

    def batches(self, idx: np.ndarray, batch_size: int, train: bool, generator=None, epoch: int = 0):
        idx = np.asarray(idx, dtype=np.int64)
        view = None
        if train and self.views > 1:  # one view per example and epoch, seeded by (run seed, epoch)
            view = np.random.default_rng([self.seed, epoch]).integers(self.views, size=len(self.data.y))
        starts = list(range(0, len(idx), batch_size))
        if train and self.kind == "image" and len(starts) > 1 and len(idx) % batch_size == 1:
            # a last training batch of one example would give the top's BatchNorm, over 1x1 maps at 32 px, one
            # value per channel (an error in train mode): it joins the batch before (batch_size + 1 examples)
            starts.pop()
        for start, stop in zip(starts, starts[1:] + [len(idx)]):
            rows = idx[start:stop]
            yield rows, self.batch(rows, train, view)
