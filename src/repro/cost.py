"""The cost model: a run's examples, device-seconds, disk and accelerator memory, from its config alone.

ERM (repro.erm): the examples trained (the ERM training set after its balancing, by repro.balance's own
functions on the split's group counts, times the epochs run: erm.schedule) and evaluated (the splits of every
evaluated epoch: erm.evaluated_splits), each at the throughput of the run's workload (repro.calibration):
measured on this device by `repro bench` where stored, else DEFAULT_RATES, whose device is named. Split sizes
are the real dataset's (Table 2) on the paper profile and the twin's on smoke and cpu; nothing is read, and a
randomly drawn held-out set counts with its expected group counts. Other kinds: SECONDS_PER_RUN.
repro.sweep orders units by `cost` and scales it into an ETA; repro.plan adds `disk_bytes` and `peak_bytes`
(which build the model once, from random weights, on the CPU). Estimates, not measurements, except the rates.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, replace

import numpy as np

from repro import balance, calibration, datasets, hparams, runs

H200, CPU_THREAD = "NVIDIA H200", "one CPU thread"
# Examples per second of a training step and of evaluation, fp32 at batch 32, at the input size given (pixels or
# tokens; another size scales the rates by the ratio of pixels or tokens). The paper's models: one H200
# (book/manual_gpus.md, measured 2026-11-29 with benchmarks/erm_throughput.py; the constants before these were
# guesses for the paper's RTX A5000, never measured). ResNet-50: 795 images/s end to end with the JPEG
# DataLoader of 8 workers (the model alone 1,399, the decoding alone 1,210), so evaluation, which decodes as
# much, is put at the decoding rate. ResNet-18 (not measured): the same decoding bounds it. BERT-base: 509
# sequences/s at 128 tokens end to end (bf16: 658); evaluation, one forward pass, ~3x (not measured).
# BERT-tiny (not measured): 2 layers of width 128, bounded by kernel launches (~5 ms a step), not arithmetic.
# The CPU models: one idle thread, from benchmarks/cpu_backbones.py and erm_profile.py at the twins' sizes;
# evaluation ~4x (repro bench on a CPU thread measures 3-5x).
DEFAULT_RATES = {
    "resnet50": (H200, 795.0, 1210.0, 224), "resnet18": (H200, 1210.0, 1210.0, 224),
    "bert-base": (H200, 509.0, 1527.0, 128), "bert-tiny": (H200, 6400.0, 19200.0, 128),
    "cnn-small": (CPU_THREAD, 1667.0, 6667.0, 32), "bert-micro": (CPU_THREAD, 1250.0, 5000.0, 64),
    "efficientnet-lite0": (CPU_THREAD, 250.0, 1000.0, 32), "minilm": (CPU_THREAD, 500.0, 2000.0, 64),
}
# (model, train_blocks) -> the same for a top trained over cached trunk states (repro.trunk); minilm with the
# cpu profile's [CLS] pooler (its last layer computes the first token only).
TOP_RATES = {("efficientnet-lite0", 1): (CPU_THREAD, 8333.0, 33333.0, 32),
             ("efficientnet-lite0", 2): (CPU_THREAD, 2500.0, 10000.0, 32), ("minilm", 1): (CPU_THREAD, 1111.0, 4444.0, 64)}
FALLBACK_RATES = ("a guess", 200.0, 800.0, None)

# Seconds of one run of the other kinds: a head trained with the others of its ERM run in one vectorized call
# (repro.heads.fit_batch), an SVM direction path. From the smoke book on 2 cores (104 heads in ~9 s, 3 SVM
# paths in ~1 s).
SECONDS_PER_RUN = {"heads": 0.03, "svm": 0.15}

# Compute that `repro book` or `repro run` starts only with --yes: far above the paper profile's whole plan.
HOURS_MAX = 20_000


@dataclass(frozen=True)
class Rates:
    """Throughput of a workload: training and evaluation examples per second, where the numbers come from
    (device, and "measured" or "default"), and the peak memory measured with them (bytes; None if not)."""
    train: float
    eval: float
    device: str
    source: str
    peak_bytes: float | None = None


def rates(config: dict) -> Rates:
    """The rates of an ERM config's workload: this device's calibration, else DEFAULT_RATES (scaled to its size)."""
    stored = calibration.load()
    if stored and calibration.workload(config) in stored["rates"]:
        r = stored["rates"][calibration.workload(config)]
        return Rates(r["train"], r["eval"], calibration.name(stored), "measured", r.get("peak_bytes"))
    from repro import models

    device, train, evaluate, size = TOP_RATES.get((config["model"], config.get("train_blocks", 0))) or \
        DEFAULT_RATES.get(config["model"], FALLBACK_RATES)
    scale = 1.0  # a row costs in proportion to its tokens, an image to its pixels
    if size:
        scale = size / config["max_length"] if models.is_text(config["model"]) else (size / config["image_size"]) ** 2
    return Rates(train * scale, evaluate * scale, device, "default")


# --------------------------------------------------------------------------------------------- split sizes

def train_size(dataset: str, profile: str) -> int:
    """Training examples of `dataset` under `profile`: the synthetic twin's for smoke/cpu (from its scale,
    nothing is written), the real dataset's (Table 2, from its record) for paper and for a companion."""
    return int(_counts(dataset, profile)[0].sum())


@functools.lru_cache(maxsize=None)
def _counts(dataset: str, profile: str) -> np.ndarray:
    """(3, n_groups) example counts per split and group g = y * n_attrs + a."""
    from repro import synth

    if profile in hparams.TWIN_PROFILES and not datasets.get(dataset).companion:
        return synth.counts(dataset, profile).reshape(3, -1)
    return datasets.get(dataset).paper_counts().reshape(3, -1)  # a companion's: its construction's counts


def _apportion(counts: np.ndarray, total: int) -> np.ndarray:
    """Integer counts proportional to `counts` that sum to `total` (largest remainders): the expected group
    counts of `total` examples drawn at random from `counts`."""
    exact = counts * total / max(counts.sum(), 1)
    out = np.floor(exact).astype(np.int64)
    out[np.argsort(out - exact, kind="stable")[: total - out.sum()]] += 1
    return out


@functools.lru_cache(maxsize=None)
def split_counts(dataset: str, profile: str, train_set: str = "train", heldout_source: str = "val") -> dict:
    """{"train", "heldout", "test"}: (n_groups,) counts of an ERM run's splits as repro.split.heldout draws them
    (expected counts where it draws at random), and "nested": whether the held-out set is inside "train"."""
    counts = _counts(dataset, profile)
    pct = datasets.get(dataset).erm_train_pct
    if pct is not None:  # Waterbirds: ERM trains on pct% of train, the rest is held out
        train = _apportion(counts[0], int(counts[0].sum()) * pct // 100)
        held = counts[0] - train
    else:  # half of val is held out
        train, held = counts[0], _apportion(counts[1], int(0.5 * counts[1].sum()))
    nested = heldout_source == "train" or train_set == "train+heldout"
    if heldout_source == "train":
        held = _apportion(train, int(held.sum()))
    elif train_set == "train+heldout":
        train = train + held
    return {"train": train, "heldout": held, "test": counts[2], "nested": nested}


def epoch_size(config: dict) -> int:
    """Examples of one training epoch: the ERM training set after its balancing (repro.erm._sampler)."""
    counts = split_counts(config["dataset"], config.get("profile", "paper"), config["train_set"], config["heldout_source"])
    record = datasets.get(config["dataset"])
    ratio, method = config["group_ratio"], config["group_ratio_method"]
    return _balanced(tuple(int(c) for c in counts["train"]), record.n_attrs, ratio, method, config["balance"],
                     config["balance_by"], tuple(record.paper_minority))


@functools.lru_cache(maxsize=None)
def _balanced(train: tuple, n_attrs: int, ratio, method: str, how: str, by: str, minority: tuple) -> int:
    g = np.repeat(np.arange(len(train)), train)
    y = g // n_attrs
    if ratio is not None:
        if method == "upsampling":
            return len(g)
        return sum(balance.group_ratio_counts(y, g, ratio, minority or None).values())
    if how == "subsetting":
        return len(balance.subsample(y if by == "class" else g, 0))
    return len(g)


def examples(config: dict) -> tuple[int, int]:
    """(training examples, evaluation examples) of an ERM run: the epochs run (erm.schedule, capped by
    max_steps) and the splits of every evaluated epoch (erm.evaluated_splits; a split nested in another counts once)."""
    from repro import erm

    n = epoch_size(config)
    epochs, last, save = erm.schedule(config, n)
    train = last * n
    if erm.setting(config, "max_steps"):
        train = min(train, erm.setting(config, "max_steps") * config["batch_size"])
    counts = split_counts(config["dataset"], config.get("profile", "paper"), config["train_set"], config["heldout_source"])
    size = {s: int(counts[s].sum()) for s in erm.SPLITS}
    def cost_of(splits):
        nested = counts["nested"] and "train" in splits
        return sum(size[s] for s in splits if not (s == "heldout" and nested))

    # The splits of an epoch depend only on whether it is the last or a saved one and on whether eval_every and
    # nc1_every divide it: the special epochs one by one, the others counted per class (no loop over epochs, so
    # a config of 2^31 epochs is costed at once and refused by check_hours).
    special = {e for e in save | {last} if 1 <= e <= last}
    every, nc1 = config["eval_every"], config["nc1_every"]
    evaluated = sum(cost_of(erm.evaluated_splits(config, e, last, save)) for e in special)
    multiples = lambda k: last // k if k > 0 else 0  # noqa: E731
    both = multiples(every * nc1 // math.gcd(every, nc1)) if every > 0 and nc1 > 0 else 0
    for is_eval, is_nc1, n in ((True, True, both), (True, False, multiples(every) - both),
                               (False, True, multiples(nc1) - both)):
        n -= sum(1 for e in special if (every > 0 and e % every == 0) == is_eval and (nc1 > 0 and e % nc1 == 0) == is_nc1)
        if n > 0:
            rep = (every if is_eval else 1) * (nc1 if is_nc1 else 1) or 1  # an epoch of the class, not special
            splits = erm.evaluated_splits(dict(config, eval_every=every if is_eval else 0,
                                               nc1_every=nc1 if is_nc1 else 0), rep, -1, set())
            evaluated += n * cost_of(splits)
    return train, evaluated


def _erm_seconds(config: dict) -> float:
    train, evaluated = examples(config)
    r = rates(config)
    return train / r.train + evaluated / r.eval


def cost(kind: str, config: dict) -> float:
    """Estimated seconds of one run: for ERM, its training and evaluation examples at its workload's rates
    (`rates`), for other kinds SECONDS_PER_RUN (else the kind's rough_seconds). The sweep orders units by it
    and repro.sweep.Progress scales it by the runs already finished."""
    if kind == "erm":
        return _erm_seconds(config)
    return SECONDS_PER_RUN.get(kind, runs.KINDS[kind].rough_seconds if kind in runs.KINDS else 1.0)


def check_hours(seconds: float, what: str) -> None:
    """ValueError when `what` is estimated at more than HOURS_MAX hours (the caller skips this with --yes)."""
    if seconds > HOURS_MAX * 3600:
        raise ValueError(f"{what} {'is' if what.endswith('run') else 'are'} estimated at {seconds / 3600:,.0f} "
                         f"hours of compute (repro.cost), more than {HOURS_MAX:,}; check the epochs and grids, or "
                         f"pass --yes to start anyway")


# ---------------------------------------------------------------------------------------- disk and memory

@dataclass(frozen=True)
class Anatomy:
    """What a model's disk and memory need: feature dim, bytes of its whole state and of the trained part (and
    how many tensors that part has), trained parameters, and per example the bytes of every module's output
    in a training forward pass (what backward keeps) and of the largest one (what evaluation holds)."""
    dim: int
    state_bytes: int
    trained_bytes: int
    trained_tensors: int
    trained_params: int
    activation_bytes: int
    largest_bytes: int


def anatomy(config: dict) -> Anatomy:
    """The Anatomy of an ERM config's model (built once per workload from random weights, on the CPU)."""
    from repro import models

    text = models.is_text(config["model"])
    a = _anatomy(config["model"], runs.canonical_json(config.get("model_kw", {})), config.get("train_blocks", 0),
                 min(config["max_length"], 16) if text else config["image_size"])
    head = 4 * (datasets.get(config["dataset"]).n_classes - 2) * (a.dim + 1)  # it was built with a 2-class head
    per_token = config["max_length"] / min(config["max_length"], 16) if text else 1  # module outputs grow with length
    return replace(a, state_bytes=a.state_bytes + head, trained_bytes=a.trained_bytes + head,
                   trained_params=a.trained_params + head // 4, activation_bytes=int(a.activation_bytes * per_token),
                   largest_bytes=int(a.largest_bytes * per_token))


@functools.lru_cache(maxsize=None)
def _anatomy(name: str, model_kw: str, blocks: int, size: int) -> Anatomy:
    import torch

    from repro import models, trunk

    with torch.random.fork_rng(devices=[]):
        model = models.build(name, 2, False, **json.loads(model_kw))
    n = 1 if models.is_text(name) else 2  # two images: BatchNorm in train mode needs more than one value
    x = (models.TokenBatch({"input_ids": torch.full((n, size), 1000), "token_type_ids": torch.zeros(n, size, dtype=torch.long),
                            "attention_mask": torch.ones(n, size, dtype=torch.long)}, size)
         if n == 1 else torch.rand(n, 3, size, size))
    with torch.no_grad():
        if blocks:
            frozen = trunk.depth(model, blocks, name)
            x = model.backbone.run(x, 0, frozen)
            model = trunk.freeze(model, frozen)
        sizes = _output_bytes(model.train(), x)
    state, frozen_keys = model.state_dict(), set(models.frozen_keys(model))
    trained = [v for k, v in state.items() if k not in frozen_keys]
    return Anatomy(model.head.in_features, sum(v.numel() * v.element_size() for v in state.values()),
                   sum(v.numel() * v.element_size() for v in trained), len(trained),
                   sum(p.numel() for p in model.parameters() if p.requires_grad), sum(sizes) // n, max(sizes) // n)


def _output_bytes(model, x) -> list[int]:
    """Bytes of the output of every leaf module in one forward pass of `model` on `x`."""
    import torch

    sizes = []

    def hook(module, args, out):
        outs = out if isinstance(out, (tuple, list)) else (out,)
        sizes.append(sum(t.numel() * t.element_size() for t in outs if isinstance(t, torch.Tensor)))

    handles = [m.register_forward_hook(hook) for m in model.modules() if not list(m.children())]
    try:
        model(x)
    finally:
        for h in handles:
            h.remove()
    return sizes or [0]


def disk_bytes(config: dict) -> int:
    """Bytes an ERM run writes: per saved epoch a checkpoint (the trained state, fp32) and a feature cache
    (features, logits, labels, groups and indices of every split, and the head), plus its JSON files."""
    from repro import erm

    a, n_classes = anatomy(config), datasets.get(config["dataset"]).n_classes
    counts = split_counts(config["dataset"], config.get("profile", "paper"), config["train_set"], config["heldout_source"])
    rows = sum(int(counts[s].sum()) for s in erm.SPLITS)
    meta = len(json.dumps(runs.canonical_json(config)))  # the config in each file's header
    checkpoint = a.trained_bytes + 80 * a.trained_tensors + meta + 200
    features = rows * (4 * a.dim + 4 * n_classes + 3 * 8) + 4 * (n_classes * a.dim + n_classes) + 1400 + meta
    if config.get("profile") in hparams.TWIN_PROFILES:
        features += 8 * len(counts["test"])  # a twin's test weights
    _, _, save = erm.schedule(config, epoch_size(config))
    return len(save) * (checkpoint + features) + 4000 + 600 * config["epochs"]  # config, metrics (history), manifest


def peak_bytes(config: dict, measured: bool = True) -> float:
    """Peak accelerator memory of an ERM run, an estimate: the weights (fp32), the gradients and AdamW's two
    moments of the trained parameters, and the larger of the batch's module outputs (kept for backward) and an
    evaluation batch of 256 with the evaluated features kept on the device (repro.erm.evaluate). The CUDA
    context (~0.5 GB) comes on top. A measured calibration's peak (`repro bench`) replaces it, unless
    measured=False."""
    peak = rates(config).peak_bytes if measured else None
    if peak:
        return float(peak)
    a, n_classes = anatomy(config), datasets.get(config["dataset"]).n_classes
    counts = split_counts(config["dataset"], config.get("profile", "paper"), config["train_set"], config["heldout_source"])
    rows = sum(int(counts[s].sum()) for s in ("train", "test")) + (0 if counts["nested"] else int(counts["heldout"].sum()))
    moments = 8 if config["optimizer"] == "adamw" else 0
    training = config["batch_size"] * a.activation_bytes
    evaluation = calibration.EVAL_BATCH * 3 * a.largest_bytes + rows * 4 * (a.dim + n_classes)
    return a.state_bytes + (4 + moments) * a.trained_params + max(training, evaluation)


def size_text(n: float) -> str:
    """Bytes as '12.3 GB' (decimal units, as disks are sold)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{math.ceil(n)} B"


# Runs per GPU of `repro.sweep.packing(..., "auto")`: packed runs may fill this share of a GPU's memory, each with
# a CUDA context and cuBLAS/cuDNN workspaces beside torch's own peak, and at most PACK_MAX of them
# (benchmarks/gpu_check.py measures 1 to 3 runs per GPU).
PACK_MEMORY, CONTEXT_BYTES, PACK_MAX = 0.8, 0.75 * 2**30, 3


def runs_per_gpu(configs: list[dict]) -> int:
    """How many of these ERM runs fit on one GPU at once: PACK_MEMORY of the GPU's memory over the largest
    run's peak (the measured peak of its workload or the estimate of `peak_bytes`, whichever is larger: the
    measurement leaves out the evaluated features a run keeps) plus CONTEXT_BYTES, in 1..PACK_MAX. 1 unless this
    device's calibration (`repro bench` on a GPU) holds the GPU's memory and a measured peak of every workload."""
    stored = calibration.load()
    memory = (stored or {}).get("memory_bytes")
    if not memory or not configs:
        return 1
    measured = [stored["rates"].get(calibration.workload(c), {}).get("peak_bytes") for c in configs]
    if not all(measured):
        return 1
    peak = max(max(m, peak_bytes(c, measured=False)) for m, c in zip(measured, configs))
    return max(1, min(PACK_MAX, int(PACK_MEMORY * memory // (peak + CONTEXT_BYTES))))
