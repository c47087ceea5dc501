"""Paper-profile rehearsal: the `paper` profile's notebooks run end to end on a CPU with only sizes shrunk.

`repro book --profile paper --rehearse` calls `start` before executing the notebooks: it writes tiny twins of
the four datasets at 224 px in the real file formats, points the notebooks at them, keeps one seed, selects the
paper profile's rehearsal variant as every section's `backbones` (repro.hparams.REHEARSAL: random weights, ERM
runs capped at MAX_STEPS steps, heads at HEAD_EPOCHS epochs, all of them values of the runs' configs) and sends
the runs to a store of their own. It also sets REPRO_REHEARSE=1, which only the pages read: every rehearsed page
shows `banner()`.
"""
from __future__ import annotations

import os
from pathlib import Path

from repro import hparams

ENV = "REPRO_REHEARSE"
DIR = "_build/rehearse"  # under the repository root: data/ (twins) and runs/ (the run store)

# Twins with a few dozen examples per split (each dataset record's twin_scales["rehearse"]: [train, val, test]
# fractions of the real sizes), images at the paper's 224 px.
SCALE = "rehearse"
# At least this many examples per group and split ([train, val, test]):
# - every held-out set holds every group (the group-ratio and balancing methods need each class's groups):
#   Waterbirds holds out 20% of train, the others half of val;
# - every ERM training set meets the smallest group ratio r of PARAMS: a group-ratio subset gives a minority
#   group r / (1 + r) of its class's budget, which is at least the smallest group of the training set
#   (repro.balance.group_ratio_counts), so groups of (1 + r) / r = 6 examples (r = 0.2) are the least that
#   works; 8 leaves room for rounding.
# tests/test_rehearse.py plans every section of the rehearsal (all configs, subsets and head plans, without
# training) and fails on any set that breaks a constraint.
MIN_COUNTS = {"waterbirds": [20, 4, 4]}
DEFAULT_MIN_COUNT = [8, 10, 4]
IMAGE_SIZE = 224
MAX_STEPS = hparams.REHEARSAL_STEPS  # ERM steps per run (a value of every ERM config of the rehearsal)
HEAD_EPOCHS = hparams.REHEARSAL_HEAD_EPOCHS  # last-layer epochs per head (a value of every head config)
# Notebook parameters replaced in a rehearsal (when the template defines them): grids shrink to one seed, two
# group ratios and two AFR temperatures; the sections run the paper profile's rehearsal variant.
PARAMS = {"seeds": [1], "ratios": [0.2, 1.0], "gammas": [0.0, 4.0], "synth_profile": "",
          "backbones": hparams.REHEARSAL, "fixture": True}  # fixture: the companions from repro.fixtures' files

# Every size the rehearsal shrinks (and nothing else): printed by `repro book --rehearse` and on every page.
SHRINKS = {
    "examples per split": "tiny synthetic twins in the real file formats, a few dozen examples per split "
                          f"({IMAGE_SIZE} px JPEGs for the vision datasets); the companions from tiny generated files "
                          "in their real formats (repro.fixtures)",
    "grids": f"one seed ({PARAMS['seeds']}); group ratios {PARAMS['ratios']}; AFR gammas {PARAMS['gammas']}",
    "ERM steps": f"each ERM run stops after max_steps = {MAX_STEPS} SGD steps (its epochs, schedule and "
                 "hyperparameters are the paper's)",
    "last-layer epochs": f"each head trains for at most {HEAD_EPOCHS} epochs (Figure 3: 10x those steps)",
    "weights": "random initialization of the paper's architectures (no pretrained weights are downloaded)",
}


def active() -> bool:
    """True inside a rehearsal (REPRO_REHEARSE=1)."""
    return os.environ.get(ENV, "") not in ("", "0")


def banner() -> str:
    """Markdown admonition shown at the top of every rehearsed page."""
    items = "\n".join(f"- **{k}**: {v}" for k, v in SHRINKS.items())
    return ("```{admonition} Rehearsal: these numbers mean nothing\n:class: danger\n"
            "This page was built by `repro book --profile paper --rehearse`: the paper profile's code path end to "
            "end on a CPU, with only these sizes shrunk. The weights are random, so no number here says anything "
            f"about the paper.\n\n{items}\n```\n")


def write_twins(root) -> None:
    """The rehearsal's twins of every registered dataset under `root` (written once; see SCALE, MIN_COUNTS), and
    the companions from repro.fixtures' files."""
    from repro import companions, datasets, synth

    for name in datasets.names():
        synth.ensure(root, [name], scale=SCALE, image_size=IMAGE_SIZE,
                     min_count=MIN_COUNTS.get(name, DEFAULT_MIN_COUNT))
    companions.ensure(root, fixture=True)


def notebook_params(params: dict, defaults: dict, data_root: str) -> dict:
    """The notebooks' params in a rehearsal: `params` with PARAMS and `data_root` (the twins) replacing the values
    of the names each template defines.

    params / defaults: {notebook: {name: value}} from the params files / the templates' parameters cells."""
    out = {}
    for name, values in params.items():
        out[name] = dict(values)
        out[name].update({k: v for k, v in PARAMS.items() if k in defaults[name]})
        if "data_root" in defaults[name]:
            out[name]["data_root"] = data_root
    return out


def start(root: Path, params: dict, defaults: dict, log=print) -> dict:
    """Enter a rehearsal in this process (and the notebooks and workers it starts): set the environment (the
    pages' banner, the run store), write the twins, and return the notebooks' params (notebook_params)."""
    os.environ[ENV] = "1"
    os.environ.setdefault("REPRO_RUNS", str(Path(root) / DIR / "runs"))
    data_root = f"{DIR}/data"
    write_twins(Path(root) / data_root)
    log("rehearsal of the paper profile; shrunk:")
    for key, value in SHRINKS.items():
        log(f"  {key}: {value}")
    return notebook_params(params, defaults, data_root)
