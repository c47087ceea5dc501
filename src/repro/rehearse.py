"""Paper-profile rehearsal: the `paper` profile's notebooks run end to end on a CPU with only sizes shrunk.

`repro book --profile paper --rehearse` sets REPRO_REHEARSE=1 for the notebooks it executes; the code that
builds configs reads `active()` and applies `SHRINKS`; every rehearsed page shows `banner()`.
"""
from __future__ import annotations

import os

ENV = "REPRO_REHEARSE"

# Every size the rehearsal shrinks (and nothing else): printed by `repro book --rehearse` and on every page.
SHRINKS = {
    "examples per split": "a synthetic twin with a few dozen examples per split (224 px JPEGs, real file formats)",
    "seeds": "one seed ([1])",
    "ERM steps": "each ERM run stops after max_steps = 4 SGD steps (its epochs and schedule are the paper's)",
    "last-layer epochs": "each head trains for at most 2 epochs; Figure 3 records at most 8 SGD steps",
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
