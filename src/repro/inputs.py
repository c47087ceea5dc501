"""The input pipeline of ERM and feature extraction: dataset indices in, model-ready batches on the run's device out.

Three paths, chosen by the data (paper Appendix B.2 transforms):
- images up to 64 px (the twins of the CPU profiles) are decoded once into memory as uint8 (n, 3, S, S) and
  augmented in batches on the device (`augment`);
- larger images (the paper's 224 px) go through a torch DataLoader with `loader_workers()` worker processes:
  RandomResizedCrop(224, scale 0.7-1) + flip for training, Resize(256) + CenterCrop(224) for evaluation
  (repro.pixels). Every training example is transformed under its own seed, derived from (run seed, epoch,
  position in the epoch), so a run's batches are identical for any number of workers. The workers read the
  decoded pixels from memory-mapped caches next to the data (repro.pixels), or with REPRO_PIXEL_CACHE=0 decode
  the files; the batches are the same bit for bit;
- texts are tokenized once per (tokenizer, max_length) and cached on disk next to the data; MultiNLI arrives
  tokenized. Text batches are rows of those token tensors.
"""
from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro import models, pixels
from repro.device import LOADER_WORKERS_ENV, loader_workers  # noqa: F401  (the DataLoader's default, and its variable)
from repro.device import pixel_cache
from repro.pixels import eval_resize, image_transforms, open_image

IN_MEMORY_MAX_SIZE = 64  # images up to this size are decoded once into memory

_CACHE: dict = {}  # decoded images / tokens / datasets, reused by runs in the same process (sweep workers)


def _cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def load_data(config: dict):
    """The GroupData of config["dataset"] under config["data_root"], loaded once per process."""
    from repro import data
    return _cached(("data", config["dataset"], str(config["data_root"])),
                   lambda: data.load(config["dataset"], config["data_root"]))


# ------------------------------------------------------------------------------------------------- images

def _decode(paths, size: int) -> torch.Tensor:
    """(n,) image paths -> (n, 3, size, size) uint8, resized if the files have another size."""
    from PIL import Image
    out = torch.empty((len(paths), 3, size, size), dtype=torch.uint8)
    for i, path in enumerate(paths):
        im = open_image(path)
        if im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        out[i] = torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)
    return out


def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random resized crop (area 0.7-1, aspect 3/4-4/3) + horizontal flip, batched: (n,3,H,W) -> same.

    The random numbers come from the CPU `generator`, so a batch is augmented alike on every device."""
    n = x.shape[0]
    u = torch.rand(n, 5, generator=generator).to(x.device, non_blocking=True)  # (a blocking copy waits for the GPU)
    area = 0.7 + 0.3 * u[:, 0]
    ratio = torch.exp(math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1])
    w, h = (area * ratio).sqrt().clamp(max=1), (area / ratio).sqrt().clamp(max=1)
    cx, cy = (2 * u[:, 2] - 1) * (1 - w), (2 * u[:, 3] - 1) * (1 - h)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2], theta[:, 1, 1], theta[:, 1, 2] = w * flip, cx, h, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


class ImageFiles(torch.utils.data.Dataset):
    """Images read from their files. Item (dataset index, seed) -> (3, size, size) float tensor: the training
    transform under torch seed `seed`, or the evaluation transform when seed < 0."""

    def __init__(self, paths, size: int):
        self.paths = paths
        self.train_tf = image_transforms(True, size)
        self.eval_tf = image_transforms(False, size, resize=eval_resize(size))

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item):
        i, seed = item
        im = open_image(self.paths[i])
        if seed < 0:
            return self.eval_tf(im)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_tf(im)


class _Batches(torch.utils.data.Sampler):
    """The batch list of the current pass; persistent DataLoader workers read whatever it holds when iterated."""

    def __init__(self):
        self.batches: list = []

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """Torch seed of one training example's augmentation: a function of the run seed, epoch and position only."""
    return int(np.random.SeedSequence([seed, epoch, position]).generate_state(1)[0])


# ------------------------------------------------------------------------------------------------- texts

def tokenize(texts, tokenizer, max_length: int) -> dict:
    """Tokens of (n,) texts: dict of (n, max_length) int64 input_ids, attention_mask, token_type_ids."""
    enc = tokenizer(list(texts), max_length=max_length, padding="max_length", truncation=True, return_tensors="np")
    keys = ("input_ids", "attention_mask", "token_type_ids")
    out = {k: np.asarray(enc[k], dtype=np.int64) for k in keys if k in enc}
    out.setdefault("token_type_ids", np.zeros_like(out["input_ids"]))
    return out


def cached_tokens(data, model: str, max_length: int, pretrained: bool = True) -> dict[str, torch.Tensor]:
    """Tokens of a text dataset by the tokenizer of `model` (models.tokenizer(model, pretrained)), computed once
    per (tokenizer, max_length, texts) and cached on disk in <dataset folder>/.tokens/ (safetensors,
    int32/uint8); in memory only when the data have no folder."""
    from safetensors.torch import load_file, save_file

    def compute():
        tokens = tokenize(data.inputs, models.tokenizer(model, pretrained), max_length)
        return {k: torch.from_numpy(v) for k, v in tokens.items()}

    if not Path(data.root).is_dir():
        return compute()
    digest = hashlib.sha256(f"{models.tokenizer_id(model, pretrained)}\0{max_length}\0".encode())
    for text in data.inputs:
        digest.update(str(text).encode() + b"\0")
    path = Path(data.root) / ".tokens" / f"{data.name}-{max_length}-{digest.hexdigest()[:16]}.safetensors"
    if path.is_file():
        return {k: v.long() for k, v in load_file(str(path)).items()}
    tokens = compute()
    path.parent.mkdir(exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    small = {k: v.to(torch.uint8 if k != "input_ids" else torch.int32).contiguous() for k, v in tokens.items()}
    save_file(small, str(tmp))
    os.replace(tmp, path)
    return tokens


# ------------------------------------------------------------------------------------------------- batches

class Inputs:
    """Model inputs of a dataset on a device: `batches(idx, batch_size, train, ...)` yields (rows, batch).

    rows: (b,) dataset indices of the batch; batch: a float tensor (b, 3, S, S) or a dict of (b, L) int64
    token tensors, on `device`. `batch(idx, train, generator)` gives one in-memory batch (no DataLoader).
    """

    def __init__(self, data, config: dict, device=None, workers: int | None = None, cache: bool | None = None):
        self.kind, self.augment = data.kind, config["augment"]
        self.data, self.size = data, config["image_size"]
        self.device = torch.device("cpu") if device is None else torch.device(device)
        self.seed = config["seed"]
        self.channels_last = self.device.type == "cuda" and data.kind == "image"
        key = (data.name, data.root, config["model"], config["image_size"], config["max_length"])
        self.files = data.kind == "image" and self.size > IN_MEMORY_MAX_SIZE
        self.pixel_cache = False  # file-backed images read from decoded-pixel caches (repro.pixels)
        if data.kind == "image" and not self.files:
            self.images = _cached(("img",) + key, lambda: _decode(data.inputs, self.size))
            mean, std = models.normalization(config["model"])
            self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
            self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        elif data.kind == "text":
            self.tokens = _cached(("tok", config["pretrained"]) + key,
                                  lambda: cached_tokens(data, config["model"], config["max_length"], config["pretrained"]))
        elif data.kind == "tokens":
            self.tokens = {k: torch.from_numpy(v[:, :config["max_length"]]) for k, v in data.tokens.items()}
        if self.files:
            self.workers = loader_workers() if workers is None else workers
            self._order = _Batches()
            # the decoded-pixel caches (an execution detail: `cache`, else REPRO_PIXEL_CACHE), else the files
            cached = pixels.dataset(data, config, self.workers) if (pixel_cache() if cache is None else cache) else None
            self.pixel_cache = cached is not None
            self._loader = torch.utils.data.DataLoader(
                cached if cached is not None else ImageFiles(data.inputs, self.size),
                batch_sampler=self._order, num_workers=self.workers,
                persistent_workers=self.workers > 0, pin_memory=self.device.type == "cuda",
                generator=torch.Generator())  # its own generator: the global RNG (dropout) is not consumed

    def _to(self, x):
        if isinstance(x, dict):
            return {k: v.to(self.device, non_blocking=True) for k, v in x.items()}
        x = x.to(self.device, non_blocking=True)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def batch(self, idx: np.ndarray, train: bool, generator: torch.Generator | None = None):
        """One batch of in-memory data (small images or tokens) for (b,) dataset indices, on the device."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.kind in ("text", "tokens"):
            rows = torch.from_numpy(self.data.inputs[idx] if self.kind == "tokens" else idx)
            tokens = {k: v[rows] for k, v in self.tokens.items()}
            return models.TokenBatch(self._to(tokens), *models.host_lengths(tokens["attention_mask"]))  # on the host
        x = self.raw(idx)
        if train and self.augment:
            x = augment(x, generator)
        return self.normalize(x)

    def raw(self, idx: np.ndarray) -> torch.Tensor:
        """In-memory images of (b,) dataset indices as floats in [0, 1], (b, 3, S, S) on the device."""
        if self.files:
            raise ValueError("file-backed images are read through batches(), not batch()")
        return self.images[torch.from_numpy(np.asarray(idx, dtype=np.int64))].to(self.device, non_blocking=True).float().div_(255)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """The model's input normalization of a [0, 1] image batch, in the model's memory format."""
        return self._to((x - self.mean) / self.std)

    def batches(self, idx: np.ndarray, batch_size: int, train: bool, generator: torch.Generator | None = None,
                epoch: int = 0):
        """Yield (rows (b,), batch) over idx in order, in batches of batch_size (the last may be short)."""
        idx = np.asarray(idx, dtype=np.int64)
        starts = range(0, len(idx), batch_size)
        chunks = [idx[start:start + batch_size] for start in starts]
        if not self.files:
            for rows in chunks:
                yield rows, self.batch(rows, train, generator)
            return
        augmenting = train and self.augment
        self._order.batches = [[(int(i), sample_seed(self.seed, epoch, start + k) if augmenting else -1)
                                for k, i in enumerate(rows)] for start, rows in zip(starts, chunks)]
        try:
            for rows, x in zip(chunks, self._loader):
                yield rows, self._to(x)
        except ValueError as err:  # a worker's error arrives with its traceback: keep the message's last line
            last = str(err).strip().splitlines()[-1]
            raise ValueError(last.removeprefix("ValueError: ")) from None
