"""The cost model: estimated seconds of a run, from its config alone (nothing is computed or read).

ERM: examples x epochs x the model's seconds per example (the twins' sizes on twin profiles); other kinds: a
constant per run. repro.sweep orders units by it (longest first) and scales it into an ETA by the runs already
finished; repro.plan sums it for `repro book --dry-run`. A guide, not a measurement.
"""
from __future__ import annotations

import functools

from repro import datasets, hparams, runs

# Rough seconds per training example and epoch (forward + backward + evaluation) on one 24 GB GPU of the
# paper's kind (RTX A5000); CPU models on one core. An order-of-magnitude guide, not a measurement.
SECONDS_PER_EXAMPLE = {"resnet50": 6e-3, "resnet18": 2.5e-3, "bert-base": 9e-3, "bert-tiny": 5e-4,
                       "minilm": 2e-3, "cnn-small": 6e-4, "bert-micro": 8e-4, "efficientnet-lite0": 4e-3}
# (model, train_blocks) -> the same when only the top units train over a cached trunk (repro.trunk), one CPU
# thread, from benchmarks/cpu_backbones.py scaled to an idle core (its runs of cnn-small give the load factor);
# minilm from benchmarks/erm_profile.py with the cpu profile's [CLS] pooler (its last layer computes the first
# token only: 3.5 s per warm MultiNLI run; a mean pool needs every token's output and costs ~4x).
TOP_SECONDS_PER_EXAMPLE = {("efficientnet-lite0", 1): 1.2e-4, ("efficientnet-lite0", 2): 4e-4, ("minilm", 1): 9e-4}


def train_size(dataset: str, profile: str) -> int:
    """Training examples of `dataset` under `profile`: the synthetic twin's for smoke/cpu (from its scale,
    nothing is written), the real dataset's (Table 2, from its record) for paper and for a companion."""
    from repro import synth

    if profile in hparams.TWIN_PROFILES and not datasets.get(dataset).companion:
        return int(synth.counts(dataset, profile)[0].sum())
    return datasets.get(dataset).n_train


def _erm_seconds(config: dict) -> float:
    n = _train_size(config["dataset"], config.get("profile", "paper"))
    n *= 1.25 if config["train_set"] == "train+heldout" else 1.0
    if config["group_ratio"] is not None and config["group_ratio_method"] == "subsetting":
        n *= 0.1  # class-balanced subsets at twice the smallest group count are small
    examples = max(n * config["epochs"], config.get("min_steps", 0) * config["batch_size"])  # steps-matched subsets
    top = TOP_SECONDS_PER_EXAMPLE.get((config["model"], config.get("train_blocks", 0)))
    return (top or SECONDS_PER_EXAMPLE.get(config["model"], 5e-3)) * examples


@functools.lru_cache(maxsize=None)
def _train_size(dataset: str, profile: str) -> int:
    return train_size(dataset, profile)


# Seconds of one run of the other kinds, on the same scale: a head trained with the others of its ERM run in one
# vectorized call (repro.heads.fit_batch), an SVM direction path. From the smoke book on 2 cores (104 heads in
# ~9 s, 3 SVM paths in ~1 s, against 64 ERM runs estimated at ~30 s and taking ~80 s).
SECONDS_PER_RUN = {"heads": 0.03, "svm": 0.15}

# Compute that `repro book` or `repro run` starts only with --yes: far above the paper profile's whole plan
# (~1,300 GPU-hours by this model).
HOURS_MAX = 20_000


def check_hours(seconds: float, what: str) -> None:
    """ValueError when `what` is estimated at more than HOURS_MAX hours (the caller skips this with --yes)."""
    if seconds > HOURS_MAX * 3600:
        raise ValueError(f"{what} {'is' if what.endswith('run') else 'are'} estimated at {seconds / 3600:,.0f} "
                         f"hours of compute (repro.cost), more than {HOURS_MAX:,}; check the epochs and grids, or "
                         f"pass --yes to start anyway")


def cost(kind: str, config: dict) -> float:
    """Estimated seconds of one run: for ERM, examples x epochs x the model's SECONDS_PER_EXAMPLE (the twin's
    size on the twin profiles), for other kinds SECONDS_PER_RUN (else the kind's rough_seconds). A guide: the
    sweep orders units by it and repro.sweep.Progress scales it by the runs already finished."""
    if kind == "erm":
        return _erm_seconds(config)
    return SECONDS_PER_RUN.get(kind, runs.KINDS[kind].rough_seconds if kind in runs.KINDS else 1.0)
