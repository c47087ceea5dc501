"""Measured throughput of the models a plan needs, on this device: `repro bench` writes it, repro.cost reads it.

A workload is what the speed of a training step depends on: the model and its options, the top units trained
(train_blocks), the batch size, the input size (pixels or tokens) and the precision. `measure(configs)` times,
for each distinct workload of some ERM configs, training steps (forward, backward and the optimizer of
repro.erm) and evaluation batches of 256 examples (eval mode, as repro.features.predict), on synthetic
in-memory inputs (random pixels; token rows of full length, a batch's worst case) through models of random
weights (the architecture is what costs time), and on CUDA the peak memory torch allocated. The input
pipeline is not timed: a run that decodes JPEGs every epoch can be slower than its model (on the H200,
ResNet-50 at batch 32 trained at ~800 images/s end to end against 1,399 for the model alone).

Calibrations live in the run store, one JSON file per device: <store>/.calibration/<device>.json, e.g.
runs/.calibration/cuda-nvidia-h200.json, holding {"device", "device_name", "torch", "threads", "measured",
"memory_bytes" (a GPU's, or null), "rates": {workload: {"train", "eval" (examples/s), "peak_bytes" (or null)}}};
a new measurement of a workload replaces the old one. A calibration is an execution detail: it changes estimates, never a run.
"""
from __future__ import annotations

import json
import math
import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from repro import device as devices
from repro import runs

FOLDER = ".calibration"
EVAL_BATCH = 256  # repro.features.predict's batch


def workload(config: dict) -> str:
    """The key of an ERM config's workload, e.g. 'resnet50 {} top0 batch32 224px fp32' (and ' tf32', ' compile'
    when the config sets them)."""
    from repro import models

    size = f"{config['max_length']}tok" if models.is_text(config["model"]) else f"{config['image_size']}px"
    fast = "".join(f" {key}" for key in ("tf32", "compile") if config.get(key))  # absent: as before these keys
    return (f"{config['model']} {runs.canonical_json(config.get('model_kw', {}))} top{config.get('train_blocks', 0)} "
            f"batch{config['batch_size']} {size} {config.get('precision', 'fp32')}{fast}")


def device_slug(device=None) -> str:
    """The file name of a device's calibration: its type and name, and on a CPU the threads of a run (repro.device),
    e.g. 'cuda-nvidia-h200' or 'cpu-x86_64-1-thread'."""
    return re.sub(r"[^a-z0-9_]+", "-", name(devices.describe(device)).lower()).strip("-")


def name(info: dict) -> str:
    """A device's name as estimates cite it, from repro.device.describe() or a stored calibration: 'cuda NVIDIA
    H200', 'cpu x86_64 1 thread'."""
    kind = str(info["device"]).partition(":")[0]
    threads = f" {info['threads']} thread{'s' if info['threads'] != 1 else ''}" if kind == "cpu" else ""
    return f"{kind} {info['device_name']}{threads}"


_SLUGS: dict = {}  # requested device name -> its slug (describing a device can start a subprocess)


def path(device=None, store=None) -> Path:
    """Where the calibration of `device` (default: this process's, repro.device) is stored."""
    if device is None:
        slug = _SLUGS.setdefault(devices.requested(), device_slug())
    else:
        slug = device_slug(device)
    return (store if isinstance(store, runs.Store) else runs.Store(store)).root / FOLDER / f"{slug}.json"


def load(device=None, store=None) -> dict | None:
    """The stored calibration of `device` (default: this process's), or None when there is none or no store."""
    try:
        file = path(device, store)
    except runs.StoreError:
        return None
    if not file.is_file():
        return None
    return _read(str(file), file.stat().st_mtime_ns)


_READ: dict = {}


def _read(name: str, version: int) -> dict:
    if (name, version) not in _READ:
        try:
            data = json.loads(Path(name).read_text())
            ok = isinstance(data, dict) and isinstance(data.get("rates"), dict)
        except (OSError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"{name}: not a calibration written by `repro bench`; delete it and rerun `repro bench`")
        _READ[(name, version)] = data
    return _READ[(name, version)]


def save(measured: dict, device=None, store=None) -> Path:
    """Merge measured {workload: rates} into the device's calibration file (atomically); returns its path."""
    file = path(device, store)
    old = load(device, store) or {"rates": {}}
    data = {**devices.describe(device), "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "memory_bytes": memory_bytes(device), "rates": {**old["rates"], **measured}}
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_name(f".{file.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    tmp.replace(file)
    return file


def memory_bytes(device=None) -> int | None:
    """The memory of a CUDA device (what repro.cost.runs_per_gpu packs runs into); None on other devices."""
    import torch

    device = devices.resolve(device) if device is None or isinstance(device, str) else torch.device(device)
    return torch.cuda.get_device_properties(device).total_memory if device.type == "cuda" else None


def workloads(configs: list[dict]) -> dict[str, dict]:
    """{workload: the first ERM config of it}, in first-seen order."""
    out: dict[str, dict] = {}
    for config in configs:
        out.setdefault(workload(config), config)
    return out


def measure(configs: list[dict], device=None, seconds: float = 60.0, log=None) -> dict[str, dict]:
    """{workload: {"train", "eval", "peak_bytes"}} of every distinct workload of `configs` on `device` (default:
    this process's), within about `seconds` in all (two thirds training, one third evaluation; at least one
    timed step each, after two warm-up steps)."""
    import torch

    device = devices.resolve(device) if device is None or isinstance(device, str) else device
    devices.configure(device)
    todo = workloads(configs)
    share = seconds / max(len(todo), 1)
    out = {}
    with devices.run_threads():
        for key, config in todo.items():
            if device.type == "cuda":
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(device)
            train, evaluate = _steps(config, device)
            rates = {"train": _rate(train, config["batch_size"], 2 * share / 3, device),
                     "eval": _rate(evaluate, EVAL_BATCH, share / 3, device),
                     "peak_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None}
            del train, evaluate
            out[key] = rates
            if log:
                log(f"{key}: train {rates['train']:,.1f}/s, eval {rates['eval']:,.1f}/s")
    return out


def _rate(step, n: int, seconds: float, device) -> float:
    """Examples per second of `step` (n examples a call): two warm-up calls, one to size the run, then as many
    as fit in `seconds` (at least one)."""
    import torch

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(2):
        step()
    sync()
    start = time.perf_counter()
    step()
    sync()
    once = max(time.perf_counter() - start, 1e-6)
    calls = max(1, min(1000, math.floor(seconds / once)))
    start = time.perf_counter()
    for _ in range(calls):
        step()
    sync()
    return n * calls / (time.perf_counter() - start)


def _inputs(config: dict, n: int, device, generator):
    """n synthetic examples of a workload: (n, 3, S, S) normal pixels or a TokenBatch of full-length rows."""
    import torch

    from repro import models

    if models.is_text(config["model"]):
        length = config["max_length"]
        ids = torch.randint(1000, 30000, (n, length), generator=generator)
        ids[:, 0] = 101  # [CLS]
        tokens = {"input_ids": ids, "attention_mask": torch.ones(n, length, dtype=torch.long),
                  "token_type_ids": torch.zeros(n, length, dtype=torch.long)}
        return models.TokenBatch({k: v.to(device) for k, v in tokens.items()}, length, padded=False)
    size = config["image_size"]
    x = torch.randn(n, 3, size, size, generator=generator).to(device)
    return x.contiguous(memory_format=torch.channels_last) if device.type == "cuda" else x


def _steps(config: dict, device):
    """(train step, evaluation batch) closures of a workload on `device`, from random weights."""
    import torch
    import torch.nn.functional as F

    from repro import datasets, erm, models, trunk

    generator = torch.Generator().manual_seed(0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = models.build(config["model"], datasets.get(config["dataset"]).n_classes, False,
                             **config.get("model_kw", {})).to(device)
    if device.type == "cuda" and not models.is_text(config["model"]):
        model = model.to(memory_format=torch.channels_last)
    erm.check_device(config, device)
    erm.numerics(config)  # the workload's TF32 switches, and compiled below when it asks (as erm.train runs it)
    x, x_eval = (_inputs(config, n, device, generator) for n in (config["batch_size"], EVAL_BATCH))
    blocks = erm.setting(config, "train_blocks")
    if blocks:  # the top trains over trunk states, computed here once (repro.trunk caches them on disk)
        frozen = trunk.depth(model, blocks, config["model"])
        with torch.no_grad():
            x, x_eval = (_state(model.backbone.run(v, 0, frozen)) for v in (x, x_eval))
        model = trunk.freeze(model, frozen)
    y = torch.randint(0, model.head.out_features, (config["batch_size"],), generator=generator).to(device)
    model = erm.compiled(model, config)
    opt = erm._optimizer(model, {**config, "lr": 1e-5})
    precision = erm.setting(config, "precision")
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def train():
        model.train()
        with erm.autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), y)
        erm.optimizer_step(opt, loss, scaler)

    @torch.no_grad()
    def evaluate():
        model.eval()
        with erm.autocast(device, precision):
            model.head(model.features(x_eval))

    return train, evaluate


def _state(state):
    """A trunk state as TrunkInputs gives it: a text state as a TokenBatch, an image state as it is."""
    from repro import models

    if isinstance(state, dict):
        return models.TokenBatch(state, state["attention_mask"].shape[1])
    return state


def describe_rates(rates: dict[str, dict]) -> list[str]:
    """One line per workload: its training and evaluation rates and peak memory."""
    lines = []
    for key, r in rates.items():
        peak = f", peak memory {r['peak_bytes'] / 2**30:.1f} GiB" if r.get("peak_bytes") else ""
        lines.append(f"  {key}: train {r['train']:,.1f}/s, eval {r['eval']:,.1f}/s{peak}")
    return lines
