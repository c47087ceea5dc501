"""ERM finetuning (paper Appendix B.2): one JSON-able config dict, which is also the run-store config.

`default_config(dataset, profile, **overrides)` reads repro.hparams.erm(dataset, profile); `train(config,
workdir)` trains on the process's device (repro.device), evaluates per-group accuracy of `eval_splits` every
`eval_every` epochs and of every split at the last epoch (`evaluated_splits`), and at every epoch of `save_epochs` writes a checkpoint (checkpoint_epoch{E}.safetensors, the config
in its metadata) and the feature cache (repro.features). `run(dataset, profile, **overrides)` does all of it
through the run store. The loop is split as in torchvision's reference scripts: `train_one_epoch`,
`evaluate`, `train`; batches come from repro.inputs.

Deviations from the paper's code (documented for the deviations page): the "train" evaluation split and
NC1 use the ERM training set in eval mode without augmentation (the paper's code measures NC1 on
augmented batches in train mode); the final epoch is reported (no model selection), as in the paper.
"""
from __future__ import annotations

import contextlib
import functools
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro import device as devices
from repro import balance, datasets, features, files, hparams, models, runs
from repro.inputs import Inputs, load_data

CHOICES = {
    "profile": hparams.PROFILES,
    "optimizer": ("adamw", "sgd"),
    "schedule": ("cosine", "linear", "constant"),
    "balance": balance.BALANCES,
    "balance_by": ("class", "group"),
    "group_ratio_method": balance.METHODS[:2],  # subsetting, upsampling
    "train_set": ("train", "train+heldout"),
    "heldout_source": ("val", "train"),
    "precision": ("fp32", "bf16", "fp16"),
}

# Keys beyond hparams.erm: per-profile defaults (and per dataset, its record's paper_erm) (the cpu/smoke profiles run 32x32 twins and short texts).
# eval_every=0 evaluates only after the last epoch (an evaluation pass costs about one training epoch on the
# twins, and on the real data evaluation would otherwise be most of the examples processed); runs whose
# per-epoch values a figure reads ask for them: Figure 2 nc1_every=1, Figure 6 eval_every=1 (test split only).
_EXTRA = {
    "paper": dict(image_size=224, max_length=128, augment=True, eval_every=0, model_kw={}),
    "cpu": dict(image_size=32, max_length=64, augment=True, eval_every=0, model_kw={}),
    "smoke": dict(image_size=32, max_length=64, augment=True, eval_every=0, model_kw={}),
}

# Keys added after the first runs were stored. A config holds them only when they differ from these defaults,
# so every run id computed before they existed stays valid (they change results, so they are hashed then).
#   precision: fp32 (the paper's code: Lightning's default) or bf16/fp16 autocast (fp16 with a gradient scaler)
#   max_steps: stop after this many SGD steps (0: no cap); the epoch in progress is then the last one,
#              evaluated and saved; the learning-rate schedule still spans `epochs` (the rehearsal uses it)
#   train_blocks: 0 trains the whole network; k > 0 trains only the top k units of the backbone (and the
#              head): the frozen lower units run once per dataset and are cached (repro.trunk)
#   eval_splits: the splits an `eval_every` evaluation computes before the last epoch (the last epoch and the
#              saved ones evaluate every split); training, checkpoints, features and final metrics do not
#              depend on it, only the history's entries do
#   tf32:      true lets matrix products (linear layers, attention) round their inputs to TF32 on CUDA GPUs of the
#              Ampere generation and later (torch.backends.cuda.matmul.allow_tf32); false keeps them in fp32,
#              torch's default. Convolutions use TF32 in every run, torch's default (cudnn.allow_tf32), which the
#              paper's code kept. Both switches are set at the start of each run (`numerics`)
#   compile:   torch.compile the model (CUDA only: on another device the run stops before reading data; on the
#              CPU twins compiling would take longer than training)
SPLITS = ("train", "heldout", "test")
LATE_DEFAULTS = {"precision": "fp32", "max_steps": 0, "train_blocks": 0, "eval_splits": list(SPLITS), "tf32": False,
                 "compile": False}
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _data_root() -> str:
    if os.environ.get("REPRO_DATA"):
        return os.environ["REPRO_DATA"]
    return str(runs.default_root().parent / "data")


def default_config(dataset: str, profile: str = "paper", backbones: str = "", **overrides) -> dict:
    """The full ERM config of `dataset` under `profile` (hparams.erm; `backbones` picks a variant of the
    profile's models, see hparams.BACKBONES, e.g. the paper profile's rehearsal), with `overrides` applied."""
    hp = hparams.erm(dataset, profile, backbones)
    config = dict(dataset=dataset, data_root=_data_root(), profile=profile, model=None, pretrained=None, seed=1,
                  epochs=None, lr=None, weight_decay=None, batch_size=None, optimizer="adamw", schedule="cosine",
                  balance="none", balance_by="class", group_ratio=None,
                  group_ratio_method=datasets.get(dataset).group_ratio_method,
                  train_set="train", heldout_source="val", eval_every=1, save_epochs=None, nc1_every=0,
                  image_size=224, max_length=128, augment=True, model_kw={}, data_fingerprint=None, min_steps=0,
                  **LATE_DEFAULTS)
    config.update(_EXTRA[profile])
    if profile == "paper":
        config.update(datasets.get(dataset).paper_erm)
    for source, values in (("repro.hparams.erm", hp), ("overrides", overrides)):
        unknown = sorted(set(values) - set(config))
        if unknown:
            raise ValueError(f"unknown ERM config key(s) {files.quote(unknown)} in {source}; valid keys: {', '.join(config)}")
        config.update(values)
    if config["save_epochs"] is None:
        config["save_epochs"] = [config["epochs"]]
    if config["data_fingerprint"] is None:
        config["data_fingerprint"] = _fingerprint(dataset, str(config["data_root"]))
    for key, default in LATE_DEFAULTS.items():
        if config[key] == default:
            del config[key]
    return check(config)


def setting(config: dict, key: str):
    """config[key], or its default for the keys of LATE_DEFAULTS."""
    return config.get(key, LATE_DEFAULTS.get(key))


@functools.lru_cache(maxsize=64)
def _fingerprint(dataset: str, root: str) -> str | None:
    """The data's fingerprint, or None when the data are not there (e.g. planning the paper profile)."""
    from repro import metadata
    try:
        return metadata.fingerprint(dataset, root)
    except FileNotFoundError:
        return None


def check(config: dict) -> dict:
    """Validate every key's type, choice and range up front (before any data is read); returns the config unchanged."""
    def fail(key, want):
        raise ValueError(f"ERM config key {key!r} must be {want}, got {files.quote(config[key])}; "
                         f"fix it in the params file or with --set {key}=VALUE")

    def number(v, integer=False):
        ok = isinstance(v, int) if integer else isinstance(v, (int, float)) and math.isfinite(v)
        return ok and not isinstance(v, bool) and abs(v) <= files.MAX_INT

    # key -> (integer?, lower bound, bound included?); keys absent from a config (precision, max_steps) are skipped
    ranges = {"seed": (True, 0, True), "epochs": (True, 1, True), "batch_size": (True, 1, True),
              "lr": (False, 0, False), "weight_decay": (False, 0, True), "eval_every": (True, 0, True),
              "nc1_every": (True, 0, True), "min_steps": (True, 0, True), "max_steps": (True, 0, True),
              "train_blocks": (True, 0, True),
              "image_size": (True, 1, True), "max_length": (True, 1, True)}
    for key, (integer, low, closed) in ranges.items():
        if key in config and not (number(config[key], integer) and (config[key] >= low if closed else config[key] > low)):
            fail(key, f"{'an integer' if integer else 'a number'} {'>=' if closed else '>'} {low} and <= {files.MAX_INT}")
    for key, valid in CHOICES.items():
        if key in config and (not isinstance(config[key], str) or config[key] not in valid):
            raise ValueError(f"ERM config key {key!r}: unknown value {files.quote(config[key])}; "
                             f"choose one of {', '.join(valid)}")
    if config["dataset"] not in (*datasets.names(), *datasets.companions()):
        fail("dataset", f"one of {', '.join((*datasets.names(), *datasets.companions()))}")
    if config["model"] not in models.REGISTRY:
        fail("model", f"one of {', '.join(models.REGISTRY)}")
    for key in ("tf32", "compile"):  # (absent from a config at their defaults)
        if key in config and not isinstance(config[key], bool):
            fail(key, "true or false")
    for key, kinds, want in (("augment", (bool,), "true or false"), ("pretrained", (bool, type(None)), "true or false"),
                             ("model_kw", (dict,), "a mapping"), ("data_root", (str,), "a folder name"),
                             ("data_fingerprint", (str, type(None)), "a string or null")):
        if not isinstance(config[key], kinds):
            fail(key, want)
    r = config["group_ratio"]
    if r is not None and not (number(r) and 0 < r <= 1):
        fail("group_ratio", "null or a number in (0, 1]")
    if r is not None and config["balance"] != "none":
        raise ValueError("group_ratio already fixes the group balance; use it with balance='none'")
    chosen = config.get("eval_splits", list(SPLITS))
    if not isinstance(chosen, list) or not chosen or chosen != [s for s in SPLITS if s in chosen]:
        fail("eval_splits", f"a non-empty list of splits among {', '.join(SPLITS)}, in that order")
    epochs = config["save_epochs"]
    if not isinstance(epochs, list) or not epochs or not all(number(e, True) and 1 <= e <= config["epochs"] for e in epochs):
        fail("save_epochs", f"a non-empty list of epochs in 1..{config['epochs']}")
    return config


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
    seed, y, g = config["seed"], data.y[train_idx], data.g[train_idx]
    keys = y if config["balance_by"] == "class" else g
    weights = None
    if config["group_ratio"] is not None:
        minority = datasets.get(data.name).paper_minority or None
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
    # AdamW: torch's fused kernel (one pass over each tensor; about 7x faster than the multi-tensor loop on one
    # CPU thread, where the optimizer step was a third of a text top's training step). It rounds differently
    # from the per-tensor loop (agreement to float rounding: tests/test_erm.py), hence erm kind version 5.
    # SGD: the multi-tensor loop, the same bits as the per-tensor loop torch would pick for CPU tensors.
    if config["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=config["lr"], fused=True)
    return torch.optim.SGD(groups, lr=config["lr"], momentum=0.0, foreach=True)


def lr_factor(schedule: str, epoch: int, step: int, epochs: int, total_steps: int) -> float:
    """cosine: per epoch 0.5(1+cos(pi e/E)), e = 0-based epoch; linear: per step 1 - t/T; constant: 1."""
    if schedule == "cosine":
        return 0.5 * (1 + math.cos(math.pi * epoch / epochs))
    if schedule == "linear":
        return 1 - step / total_steps
    return 1.0


def fast_path(config: dict) -> list[str]:
    """The settings of an ERM config that trade the fp32 numerics of the paper's code for speed, among 'bf16',
    'fp16', 'tf32' and 'compile' (the book's deviations page lists the runs that use them)."""
    precision = setting(config, "precision")
    return ([precision] if precision != "fp32" else []) + [key for key in ("tf32", "compile") if setting(config, key)]


def numerics(config: dict) -> None:
    """The run's TF32 switches, set whatever an earlier run of the process set: matrix products per its `tf32`,
    convolutions in TF32 (torch's default). They act on CUDA GPUs only."""
    torch.backends.cuda.matmul.allow_tf32 = bool(setting(config, "tf32"))
    torch.backends.cudnn.allow_tf32 = True


def check_device(config: dict, device) -> None:
    """ValueError when the config asks for what `device` does not run: `compile` off CUDA."""
    if setting(config, "compile") and torch.device(device).type != "cuda":
        raise ValueError(f"ERM config key 'compile' is true but this run's device is {torch.device(device)}: "
                         "torch.compile is used on CUDA GPUs only; set compile: false or run on a GPU")


def compiled(model, config: dict):
    """The model, compiled in place (nn.Module.compile: its parameters and state dict keep their names) when the
    config sets `compile`."""
    if setting(config, "compile"):
        model.compile()
    return model


def autocast(device, precision: str):
    """torch.autocast for bf16/fp16 on `device`; a no-op context for fp32."""
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _progress(iterable, **kw):
    from tqdm import tqdm
    off = os.environ.get("REPRO_PROGRESS", "1") == "0" or not sys.stderr.isatty()
    return tqdm(iterable, disable=off, **kw)


def optimizer_step(opt, loss: torch.Tensor, scaler=None) -> None:
    """The backward pass of `loss` and the optimizer's step, through the fp16 gradient scaler when there is one."""
    opt.zero_grad(set_to_none=True)
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()


def train_one_epoch(model, opt, inputs: Inputs, order: np.ndarray, y: torch.Tensor, w: torch.Tensor | None, *,
                    config: dict, epoch: int, epochs: int, step: int, total_steps: int, base_lrs: list,
                    generator: torch.Generator, scaler=None, max_steps: int = 0) -> tuple[float, int]:
    """One pass over `order` (dataset indices); y (n,) labels and w (n,) loss weights on the device.

    Returns (mean training loss over the examples seen, global step count after the epoch). Nothing in a step
    waits for the device: the loss is summed on the device (in float64, the Python float arithmetic of a
    per-step `float(loss)`, so the mean has the same bits; float32 on MPS, which has no float64) and read once."""
    model.train()
    seen, precision = 0, setting(config, "precision")
    total = torch.zeros((), dtype=torch.float32 if y.device.type == "mps" else torch.float64, device=y.device)
    pin = y.device.type == "cuda"  # a pinned index copy is asynchronous
    for b, x in inputs.batches(order, config["batch_size"], train=True, generator=generator, epoch=epoch):
        for group, base in zip(opt.param_groups, base_lrs):
            group["lr"] = base * lr_factor(config["schedule"], epoch - 1, step, epochs, total_steps)
        rows = torch.from_numpy(b)
        rows = rows.pin_memory().to(y.device, non_blocking=True) if pin else rows.to(y.device)
        with autocast(inputs.device, precision):
            loss = F.cross_entropy(model(x).float(), y[rows], reduction="none")
        loss = (loss * w[rows]).mean() if w is not None else loss.mean()
        optimizer_step(opt, loss, scaler)
        total += loss.detach().to(total.dtype) * len(b)
        step, seen = step + 1, seen + len(b)
        if max_steps and step >= max_steps:
            break
    return float(total) / max(seen, 1), step


def evaluate(model, inputs: Inputs, idx: dict, data, config: dict, splits_: list[str], props=None) -> tuple[dict, dict]:
    """Per-group accuracy of the given splits: ({"<split>_<metric>": value}, {split: (features, logits)}).

    Features and logits stay on the device; metrics are computed on the CPU. Each example is predicted once
    (the training set of a "train+heldout" run holds the held-out set), in order of dataset index, or for
    cached text states in order of length (batches padded to their longest text hold less padding)."""
    from repro import metrics
    out, row = {}, {}
    rows = np.unique(np.concatenate([idx[s] for s in splits_]))
    lengths = getattr(inputs, "lengths", None)  # repro.trunk.TrunkInputs of texts
    if lengths is not None:
        rows = rows[np.argsort(lengths[rows], kind="stable")]
    with autocast(inputs.device, setting(config, "precision")):
        f_all, logits_all = features.predict(model, inputs, rows)
    where = np.empty(len(data.y), dtype=np.int64)
    where[rows] = np.arange(len(rows))
    for s in splits_:
        at = torch.from_numpy(where[idx[s]]).to(f_all.device)
        out[s] = (f_all[at], logits_all[at])
    for s, (_, logits) in out.items():
        weights = data.test_weights if s == "test" else None  # a twin's test split: real proportions
        row.update({f"{s}_{k}": v for k, v in metrics.summarize(
            logits.argmax(1).cpu(), data.y[idx[s]], data.g[idx[s]], data.n_groups, props, weights).items()})
    return row, out


def train(config: dict, workdir) -> dict:
    """Train ERM on the process's device for config["epochs"] epochs (or max_steps steps); write checkpoints
    and feature caches into workdir; return the metrics dict."""
    device = devices.resolve()
    check_device(check(dict(config)), device)
    with devices.run_threads():
        return _train(check(dict(config)), Path(workdir), device)


def _setup(config: dict, device):
    """(data, inputs, model) of a checked config on `device`, as training starts: torch's global RNG seeded by
    the run's seed (a random init, then dropout), the model built, and with train_blocks its top over the
    cached trunk states (_top). Splits and samplers draw from their own seeded generators, not from torch's."""
    devices.configure(device)
    numerics(config)
    torch.manual_seed(config["seed"])
    data = load_data(config)
    inputs = Inputs(data, config, device)
    model = models.build(config["model"], data.n_classes, config["pretrained"], **config["model_kw"]).to(device)
    if setting(config, "train_blocks"):
        model, inputs = _top(model, inputs, config)
    return data, inputs, model


def schedule(config: dict, n_train: int) -> tuple[int, int, set[int]]:
    """(epochs the learning-rate schedule spans, the last epoch run, the epochs saved) of a run whose training
    set holds n_train examples per epoch: a small subset (e.g. at a group ratio) trains for at least min_steps
    SGD steps and saves its last epoch; max_steps stops early, and the last epoch run is then saved."""
    epochs, save = config["epochs"], set(config["save_epochs"])
    steps_per_epoch = math.ceil(n_train / config["batch_size"])
    if config["min_steps"] > epochs * steps_per_epoch:
        epochs = math.ceil(config["min_steps"] / steps_per_epoch)
        save = {epochs}
    max_steps = setting(config, "max_steps")
    last = min(epochs, math.ceil(max_steps / steps_per_epoch)) if max_steps else epochs
    if last < epochs:
        save = {e for e in save if e < last} | {last}
    return epochs, last, save


def nc1_due(config: dict, epoch: int, last: int) -> bool:
    """Whether NC1 of the training features is measured after `epoch` (every nc1_every epochs, and the last)."""
    return config["nc1_every"] > 0 and (epoch % config["nc1_every"] == 0 or epoch == last)


def evaluated_splits(config: dict, epoch: int, last: int, save: set[int]) -> list[str]:
    """The splits evaluated after `epoch`, in SPLITS order: every split at the last and the saved epochs;
    eval_splits every eval_every epochs; the training split when NC1 is due; else none."""
    if epoch == last or epoch in save:
        return list(SPLITS)
    every, wanted = config["eval_every"], set()
    if every > 0 and epoch % every == 0:
        wanted |= set(setting(config, "eval_splits"))
    if nc1_due(config, epoch, last):
        wanted.add("train")
    return [s for s in SPLITS if s in wanted]


def _train(config: dict, workdir: Path, device) -> dict:
    from repro import metrics
    gen = torch.Generator().manual_seed(config["seed"])
    data, inputs, model = _setup(config, device)
    idx = splits(data, config)
    order_of, n_train, weights = _sampler(data, idx["train"], config)
    if inputs.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = compiled(model, config)
    opt = _optimizer(model, config)
    base_lrs = [group["lr"] for group in opt.param_groups]
    precision, max_steps = setting(config, "precision"), setting(config, "max_steps")
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    epochs, last, save = schedule(config, n_train)
    steps_per_epoch = math.ceil(n_train / config["batch_size"])
    props = np.bincount(data.g[idx["train"]], minlength=data.n_groups) / len(idx["train"])
    props = props if datasets.get(data.name).train_weighted_average else None  # (Waterbirds)
    y = torch.tensor(data.y, dtype=torch.long, device=device)
    w = torch.from_numpy(weights).to(device) if weights is not None else None
    history, step, nc1_heldout = [], 0, None
    for epoch in _progress(range(1, last + 1), desc=f"erm {config['dataset']}", unit="epoch"):
        loss, step = train_one_epoch(model, opt, inputs, order_of(epoch), y, w, config=config, epoch=epoch,
                                     epochs=epochs, step=step, total_steps=epochs * steps_per_epoch,
                                     base_lrs=base_lrs, generator=gen, scaler=scaler, max_steps=max_steps)
        row = {"epoch": epoch, "loss": loss}
        evaluated = evaluated_splits(config, epoch, last, save)
        if evaluated:
            evals, out = evaluate(model, inputs, idx, data, config, evaluated, props)
            row.update(evals)
            if nc1_due(config, epoch, last):
                row["nc1_train"] = metrics.nc1(out["train"][0], y[torch.from_numpy(idx["train"]).to(device)])
                if epoch == last:  # the last epoch always evaluates every split
                    nc1_heldout = metrics.nc1(out["heldout"][0], y[torch.from_numpy(idx["heldout"]).to(device)])
            if epoch in save:
                save_checkpoint(model, config, workdir / f"checkpoint_epoch{epoch}.safetensors", epoch)
                features.save(workdir / f"features_epoch{epoch}.safetensors", model, out, data, idx,
                              {"config": runs.canonical_json(config), "epoch": str(epoch)})
        history.append(row)
    final = {k: v for k, v in history[-1].items() if k not in ("epoch",)}
    return {**final, "nc1_heldout": nc1_heldout, "history": history, "n_train": n_train,
            "saved_epochs": sorted(save), "epochs_trained": last}


def trunk_key(config: dict) -> tuple | None:
    """What the trunk states of an ERM config depend on (as repro.trunk.cache_path names them on disk; a
    random-init trunk is its seed's), or None without a trunk. Keys the in-memory cache and the warm-ups."""
    if not setting(config, "train_blocks"):
        return None
    return (config["dataset"], str(config["data_root"]), config["data_fingerprint"], config["model"],
            config["image_size"], config["max_length"], setting(config, "train_blocks"), config["augment"],
            bool(config["pretrained"]) or config["seed"])


def trunk_warmups(configs: list[dict]) -> list[dict]:
    """One config per distinct trunk cache that `configs` read, in their order: repro.sweep computes these
    first, one per pool worker, so that no two workers wait on one cache while another is still missing."""
    first: dict[tuple, dict] = {}
    for c in configs:
        key = trunk_key(c)
        if key is not None:
            first.setdefault(key, c)
    return list(first.values())


def warm_trunk(config: dict) -> None:
    """Compute (or read) the trunk cache of an ERM config, and keep it in this process's memory for its runs."""
    with devices.run_threads():
        _setup(check(dict(config)), devices.resolve())


def _top(model, inputs: Inputs, config: dict):
    """(model training only its top train_blocks units, inputs of cached trunk states): repro.trunk."""
    from repro import inputs as inputs_mod
    from repro import trunk
    frozen = trunk.depth(model, setting(config, "train_blocks"), config["model"])
    key = ("trunk", *trunk_key(config), str(inputs.device))
    states = inputs_mod._cached(key, lambda: trunk.cached(model.backbone, inputs, config, frozen))
    return trunk.freeze(model, frozen), trunk.TrunkInputs(inputs, states, config)


def frozen_digest(model, keys: list[str]) -> str:
    """sha256 of the frozen tensors (names, dtypes, shapes, bytes) of a model's state dict."""
    import hashlib
    state, digest = model.state_dict(), hashlib.sha256()
    for key in keys:
        t = state[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        digest.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def _rebuild(config: dict, pretrained: bool = True) -> torch.nn.Module:
    """The model of `config` before training: pretrained weights (unless pretrained=False) or its seeded random
    init, top-frozen as in ERM."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config["seed"])
        model = models.build(config["model"], datasets.get(config["dataset"]).n_classes,
                             bool(config["pretrained"]) and pretrained, **config["model_kw"])
    if setting(config, "train_blocks"):
        from repro import trunk
        model = trunk.freeze(model, trunk.depth(model, setting(config, "train_blocks"), config["model"]))
    return model


def save_checkpoint(model, config: dict, path: Path, epoch: int) -> None:
    """safetensors of what ERM trains (parameters and the buffers of trained modules, on the CPU), with the full
    config (JSON), the epoch and the sha256 of the frozen rest in its metadata. The frozen rest (pretrained
    weights, or a seeded random init such as bert-micro's word embeddings) is rebuilt from its source on load."""
    frozen = models.frozen_keys(model)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in set(frozen)}
    runs.save_safetensors(path, state, metadata={"config": runs.canonical_json(config), "epoch": str(epoch),
                                                 "frozen_sha256": frozen_digest(model, frozen)})


def load_checkpoint(path, device=None) -> tuple[torch.nn.Module, dict]:
    """(model, config) from a checkpoint written by save_checkpoint, on `device` (default: the CPU).

    The frozen tensors are rebuilt (repro.models) and must hash to the stored digest."""
    import json

    from safetensors import safe_open
    from safetensors.torch import load_file

    path = runs.artifact(path)  # sha256-checked against its run's manifest; a damaged run is redone
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    config = json.loads(meta["config"])
    partial = "frozen_sha256" in meta  # older checkpoints hold every tensor
    model = _rebuild(config, pretrained=partial)
    state = load_file(str(path))
    if partial:
        frozen = models.frozen_keys(model)
        if frozen_digest(model, frozen) != meta["frozen_sha256"]:
            raise ValueError(f"{path}: the frozen weights rebuilt from {config['model']!r} differ from those it "
                             "was trained with (another weights file or library version); retrain this run")
        wrong = sorted(set(model.state_dict()) - set(frozen) ^ set(state))
        if wrong:
            raise ValueError(f"{path}: checkpoint tensors {wrong[:3]} do not match the model; retrain this run")
    model.load_state_dict(state, strict=not partial)
    return model.to(device or "cpu"), config


def run(dataset: str, profile: str = "paper", store=None, **overrides) -> Path:
    """Train (if not already in the run store) and cache features; returns the run directory."""
    config = default_config(dataset, profile, **overrides)
    return runs.get("erm", config, train, store)
