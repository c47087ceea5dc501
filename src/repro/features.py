"""Feature cache: penultimate features of an ERM checkpoint, the input of every last-layer method and metric.

At each saved epoch E, an ERM run directory holds features_epoch{E}.safetensors with, for each split s in
train (the ERM training set), heldout and test:
  features_s (n_s, d) float32, logits_s (n_s, C) float32, y_s, g_s, idx_s (n_s,) int64 (indices into the dataset)
and the ERM head: head_weight (C, d), head_bias (C,); on a synthetic twin also test_weights (n_groups,)
float64, the real test proportions that average test accuracy is weighted by (repro.data.real_test_weights).
Features are extracted once, in eval mode, without augmentation. `load(run, epoch)` is the one entry point for reading them.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

SPLITS = ("train", "heldout", "test")


@torch.no_grad()
def predict(model, inputs, idx, batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode features (n, d) and logits (n, C) of dataset indices idx (n,), without augmentation.

    inputs: a repro.inputs.Inputs on the model's device; the results are on that device."""
    idx = np.asarray(idx, dtype=np.int64)
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for _, x in inputs.batches(idx, batch_size, train=False):
        f = model.features(x)
        feats.append(f)
        logits.append(model.head(f))
    model.train(was_training)
    if not feats:
        return torch.zeros(0, model.head.in_features), torch.zeros(0, model.head.out_features)
    return torch.cat(feats).float(), torch.cat(logits).float()


def extract(model, data, idx, config: dict | None = None, batch_size: int = 256):
    """Eval-mode penultimate features (n, d) and logits (n, C) of dataset indices idx (n,), on the CPU.

    data: a repro.inputs.Inputs, or a GroupData together with the ERM `config` (image_size, max_length, model).
    """
    from repro import inputs
    if not isinstance(data, inputs.Inputs):
        if config is None:
            raise ValueError("extract from a GroupData needs the ERM config (image_size, max_length, model)")
        data = inputs.Inputs(data, config, device=next(model.parameters()).device)
    f, logits = predict(model, data, idx, batch_size)
    return f.cpu(), logits.cpu()


def save(path, model, out: dict, data, idx: dict, metadata: dict | None = None) -> None:
    """Write the cache: out = {split: (features, logits)}, idx = {split: dataset indices}; atomic."""
    from repro import runs
    tensors = {"head_weight": model.head.weight.detach().float().cpu().clone(),
               "head_bias": model.head.bias.detach().float().cpu().clone()}
    for split in SPLITS:
        features, logits = out[split]
        i = np.asarray(idx[split], dtype=np.int64)
        tensors.update({f"features_{split}": features.float().cpu().contiguous(),
                        f"logits_{split}": logits.float().cpu().contiguous(),
                        f"y_{split}": torch.from_numpy(data.y[i].astype(np.int64)),
                        f"g_{split}": torch.from_numpy(data.g[i].astype(np.int64)),
                        f"idx_{split}": torch.from_numpy(i)})
    if getattr(data, "test_weights", None) is not None:  # a twin: the real test proportions (repro.data)
        tensors["test_weights"] = torch.from_numpy(np.asarray(data.test_weights, dtype=np.float64))
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    runs.save_safetensors(tmp, tensors, metadata=metadata or {})  # canonical header: equal runs, equal bytes
    tmp.replace(path)


def run_path(run, store=None) -> Path:
    """ERM run directory from a path or a run id (looked up in the run store)."""
    from repro import runs
    path = Path(run)
    if path.is_dir():
        return path
    path = runs.run_dir("erm", str(run), store)
    if not runs.is_done(path):
        raise FileNotFoundError(f"no finished ERM run {run!r} in {path.parent}; train it with repro.erm.run")
    return path


def epochs(run, store=None) -> list[int]:
    """Epochs with a feature cache in an ERM run, ascending."""
    files = run_path(run, store).glob("features_epoch*.safetensors")
    return sorted(int(f.name[len("features_epoch"):-len(".safetensors")]) for f in files)


def _file(run, epoch, store) -> Path:
    path, saved = run_path(run, store), epochs(run, store)
    if not saved:
        raise FileNotFoundError(f"ERM run {path} has no feature cache; set save_epochs in its config")
    epoch = saved[-1] if epoch is None else int(epoch)
    if epoch not in saved:
        raise FileNotFoundError(f"ERM run {path} has no features at epoch {epoch}; saved epochs: {saved}")
    from repro import runs
    return runs.artifact(path / f"features_epoch{epoch}.safetensors")  # sha256-checked; a damaged run is redone


def load(run, epoch: int | None = None, store=None) -> dict[str, torch.Tensor]:
    """Cached tensors of an ERM run (path or run id) at `epoch` (default: the last saved epoch)."""
    from safetensors.torch import load_file
    return load_file(str(_file(run, epoch, store)))


def metadata(run, epoch: int | None = None, store=None) -> dict:
    """{"config": ERM config dict, "epoch": int} stored with the cache."""
    from safetensors import safe_open
    with safe_open(str(_file(run, epoch, store)), "pt") as f:
        meta = f.metadata()
    return {"config": json.loads(meta["config"]), "epoch": int(meta["epoch"])}
