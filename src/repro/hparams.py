"""Hyperparameters per profile and dataset: the values the training code reads (paper Table 3 for `paper`).

`erm(dataset, profile)` and `head(dataset, profile)` return plain dicts; the Appendix B notebook renders
exactly these dicts, so the table in the book cannot drift from what the code runs. PROFILES is the one list
of parameter profiles; a dataset's ERM hyperparameters are one entry of ERM[profile].
"""
from __future__ import annotations

from repro import datasets

PROFILES = ("smoke", "cpu", "paper")
TWIN_PROFILES = tuple(p for p in PROFILES if p != "paper")  # run on synthetic twins (repro.synth), sized per record

# Paper, Appendix B.2, Table 3 (ERM finetuning from pretrained weights).
_PAPER_ERM = {
    "waterbirds": dict(model="resnet50", optimizer="adamw", lr=1e-5, schedule="cosine", batch_size=32,
                       weight_decay=1e-4, epochs=100, pretrained=True),
    "celeba": dict(model="resnet50", optimizer="adamw", lr=1e-5, schedule="cosine", batch_size=32,
                   weight_decay=1e-4, epochs=20, pretrained=True),
    "civilcomments": dict(model="bert-base", optimizer="adamw", lr=1e-5, schedule="linear", batch_size=32,
                          weight_decay=1e-4, epochs=20, pretrained=True),
    "multinli": dict(model="bert-base", optimizer="adamw", lr=1e-5, schedule="linear", batch_size=32,
                     weight_decay=1e-4, epochs=20, pretrained=True),
}

# From-scratch CPU models: small networks from random initialization on the synthetic twins (the `smoke`
# profile, and the `cpu` profile with `backbones: scratch`). The learning rate is larger because nothing is
# pretrained; epochs are fewer because the twins are small. One ERM run takes about 7-13 s on one CPU thread.
_TEXT_MICRO = {"hidden": 64, "intermediate": 128}
_SCRATCH_ERM = {
    "waterbirds": dict(model="cnn-small", optimizer="adamw", lr=1e-3, schedule="cosine", batch_size=32,
                       weight_decay=1e-4, epochs=5, pretrained=False, model_kw={}),
    "celeba": dict(model="cnn-small", optimizer="adamw", lr=1e-3, schedule="cosine", batch_size=32,
                   weight_decay=1e-4, epochs=3, pretrained=False, model_kw={"widths": [8, 16, 32, 64]}),
    "civilcomments": dict(model="bert-micro", optimizer="adamw", lr=1e-3, schedule="linear", batch_size=32,
                          weight_decay=1e-4, epochs=4, pretrained=False, model_kw=_TEXT_MICRO),
    "multinli": dict(model="bert-micro", optimizer="adamw", lr=1e-3, schedule="linear", batch_size=32,
                     weight_decay=1e-4, epochs=4, pretrained=False, model_kw=_TEXT_MICRO),
}
# The companion datasets (repro.companions, real files) train as their kind's paper datasets do.
_SCRATCH_ERM["dominoes"] = dict(_SCRATCH_ERM["waterbirds"])
_SCRATCH_ERM["rottentomatoes"] = dict(_SCRATCH_ERM["civilcomments"])

# Pretrained CPU models (the `cpu` profile's default, closer to the paper's pretrained-then-fine-tuned setting):
# ImageNet EfficientNet-Lite0 and all-MiniLM-L6-v2, fine-tuned at the top only (train_blocks: the top units
# trained; the frozen rest is computed once per dataset and cached, repro.trunk). AdamW as in the paper, at
# the usual fine-tuning rates for a pretrained top and a fresh head (1e-4 images, 5e-5 texts; the paper's
# 1e-5 is for all layers over 20-100 epochs). Sized by time (benchmarks/cpu_backbones.py): images train the
# head conv (320 -> 1280, BN, ReLU6) at 32 px; texts train MiniLM's last layer and its [CLS] pooler (the
# features BertForSequenceClassification uses; the last layer then computes the first token only) for 2 epochs
# (the low end of Devlin et al.'s 2-4) on text twins 4x smaller than before (the datasets' twin_scales).
_IMAGE_TOP = dict(model="efficientnet-lite0", optimizer="adamw", lr=1e-4, schedule="cosine", batch_size=32,
                  weight_decay=1e-4, pretrained=True, model_kw={}, train_blocks=1)
_TEXT_TOP = dict(model="minilm", optimizer="adamw", lr=5e-5, schedule="linear", batch_size=32,
                 weight_decay=1e-4, pretrained=True, model_kw={"pool": "pooler"}, train_blocks=1)
_PRETRAINED_ERM = {
    "waterbirds": dict(_IMAGE_TOP, epochs=5),
    "celeba": dict(_IMAGE_TOP, epochs=3),
    "civilcomments": dict(_TEXT_TOP, epochs=2),  # 2-4 epochs: Devlin et al.'s fine-tuning range; 2 by time
    "multinli": dict(_TEXT_TOP, epochs=2),
    # companions: the 56-px Dominoes at 64 px (each 28-px half is not shrunk, as it would be at the profile's 32)
    "dominoes": dict(_IMAGE_TOP, epochs=5, image_size=64),
    "rottentomatoes": dict(_TEXT_TOP, epochs=2),
}
_CPU_ERM = _PRETRAINED_ERM

_SMOKE_ERM = {name: {**hp, "epochs": 2} for name, hp in _SCRATCH_ERM.items()}


# The companions are CPU-sized: the paper profile trains them with the cpu profile's models (and LLR epochs).
_PAPER_ERM.update({name: dict(_PRETRAINED_ERM[name]) for name in datasets.companions()})

# The paper profile's rehearsal (repro.rehearse: `repro book --profile paper --rehearse` selects it as the
# `backbones` of every section): the paper's architectures and Table 3 hyperparameters from random weights (no
# download), every ERM run stopped after REHEARSAL_STEPS SGD steps and every head after REHEARSAL_HEAD_EPOCHS
# epochs. These are values of the runs' configs like any other hyperparameter.
REHEARSAL = "rehearsal"
REHEARSAL_STEPS = 2
REHEARSAL_HEAD_EPOCHS = 2
_REHEARSAL_ERM = {name: {**hp, "pretrained": False, "max_steps": REHEARSAL_STEPS} for name, hp in _PAPER_ERM.items()}

ERM = {"paper": _PAPER_ERM, "cpu": _CPU_ERM, "smoke": _SMOKE_ERM}
# The `backbones` switch of the params files: "" is the profile's own models (ERM above); the cpu profile can
# also run the from-scratch models of its earlier versions; the paper profile's rehearsal is its own variant.
BACKBONES = {"cpu": {"pretrained": _PRETRAINED_ERM, "scratch": _SCRATCH_ERM}, "paper": {REHEARSAL: _REHEARSAL_ERM}}

# Appendix B.2: LLR is SGD, lr 1e-2, no weight decay, no schedule, batch 32, as many epochs as ERM.
# The CPU profiles' ERM runs 2-5 epochs, after which a re-initialized head has taken too few SGD steps (DFR by
# subsetting keeps (groups) x (smallest held-out group) examples: a few batches per epoch), so the CPU
# profiles fix LLR's epochs instead (a deviation listed in the book).
_LLR = dict(optimizer="sgd", lr=1e-2, momentum=0.0, weight_decay=0.0, schedule="constant", batch_size=32)
_LLR_EPOCHS = {"cpu": 100, "smoke": 20}


def _check(dataset: str, profile: str) -> None:
    datasets.get(dataset)  # a registered dataset
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    if dataset not in ERM[profile]:
        raise ValueError(f"no {profile} hyperparameters for dataset {dataset!r}; add them to repro.hparams.ERM")


def _table(profile: str, backbones: str = "") -> dict:
    if not backbones:
        return ERM[profile]
    if backbones not in BACKBONES.get(profile, {}):
        valid = ", ".join(BACKBONES[profile]) if profile in BACKBONES else "none (leave it empty)"
        raise ValueError(f"backbones {backbones!r} is not available in the {profile} profile; choose {valid}")
    return BACKBONES[profile][backbones]


def erm(dataset: str, profile: str = "paper", backbones: str = "") -> dict:
    """ERM finetuning hyperparameters of `dataset` under `profile` (a fresh dict); `backbones` picks a variant
    of BACKBONES (empty: the profile's own)."""
    _check(dataset, profile)
    return dict(_table(profile, backbones)[dataset])


def head(dataset: str, profile: str = "paper", backbones: str = "") -> dict:
    """Hyperparameters of a last-layer head (LLR and every method of repro.last_layer): SGD at lr 1e-2, as many
    epochs as ERM (paper profile; the rehearsal's variant at most REHEARSAL_HEAD_EPOCHS)."""
    _check(dataset, profile)
    _table(profile, backbones)  # a variant of the profile
    epochs = _LLR_EPOCHS.get("cpu" if datasets.get(dataset).companion and profile == "paper" else profile,
                             ERM[profile][dataset]["epochs"])
    if backbones == REHEARSAL:
        epochs = min(epochs, REHEARSAL_HEAD_EPOCHS)
    return {**_LLR, "epochs": epochs}


def table(profile: str = "paper", backbones: str = "") -> list[dict]:
    """One row per dataset of ERM and LLR settings, as rendered in the book's Table 3."""
    return [{"dataset": name, **erm(name, profile, backbones), "llr": head(name, profile, backbones)}
            for name in datasets.names() if name in ERM[profile]]
