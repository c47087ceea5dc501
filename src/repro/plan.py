"""`repro book --dry-run`: every run the book's sections need under a profile, which are cached, a rough
compute estimate, and what is missing (data, pretrained weights) with the command that fetches it.
Nothing is computed.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from repro import book, hparams, runs, sections
from repro.cost import (SECONDS_PER_EXAMPLE, SECONDS_PER_RUN, TOP_SECONDS_PER_EXAMPLE,  # noqa: F401
                        cost, train_size)

WEIGHTS = {  # model -> (file in the torch hub cache or Hugging Face repo id, how to get it)
    "resnet50": ("resnet50-0676ba61.pth",
                 "python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\" on a networked machine"),
    "resnet18": ("resnet18-f37072fd.pth",
                 "python -c \"import torchvision; torchvision.models.resnet18(weights='IMAGENET1K_V1')\" on a networked machine"),
    # `hf` is huggingface_hub's command line (it replaced huggingface-cli); it fills the cache that
    # _weights_location looks in
    "bert-base": ("bert-base-uncased", "hf download bert-base-uncased"),
    "bert-tiny": ("google/bert_uncased_L-2_H-128_A-2", "hf download google/bert_uncased_L-2_H-128_A-2"),
}


def section_configs(name: str, profile: str, root: Path, yes: bool = False) -> dict:
    """{kind: [configs]} of one section notebook under `profile` (template defaults + params file; a grid larger
    than book.GRID_MAX only with `yes`)."""
    values = {**book.template_parameters(root / "book" / f"{name}.ipynb"), **book.load_params(root, name, profile, yes)}
    section = sections.SECTIONS[name]
    return section.configs(profile=profile, **{k: values[k] for k in section.params})


def _weights_location(model: str) -> tuple[str, bool]:
    """(where the weights of `model` are looked for, whether they are there), without any network access."""
    name = WEIGHTS[model][0]
    if name.endswith(".pth"):
        import torch

        path = Path(torch.hub.get_dir()) / "checkpoints" / name
        return str(path), path.is_file()
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "config.json")
    return f"the Hugging Face cache ({name})", isinstance(found, str)


def book_plan(profile: str = "paper", only: list[str] | None = None, root: Path | None = None, yes: bool = False) -> str:
    """The dry-run report (text)."""
    root = root or book.repo_root()
    names = [n for n in book.notebooks(root) if n in sections.SECTIONS and (not only or n in only)]
    store = runs.Store()
    rows, roots, unplanned = [], set(), []
    for name in names:
        try:
            planned = section_configs(name, profile, root, yes)
        except FileNotFoundError:  # its run list reads the data (e.g. steps-matched group ratios): list what is missing
            values = {**book.template_parameters(root / "book" / f"{name}.ipynb"), **book.load_params(root, name, profile, yes)}
            roots |= {(d, values["data_root"]) for d in values.get("datasets", [])}
            unplanned.append(name)
            continue
        for kind, configs in planned.items():
            for c in configs:
                rid = runs.run_id(kind, c)
                rows.append({"section": name, "kind": kind, "run_id": rid, "cost": cost(kind, c),
                             "cached": runs.is_done(runs.run_dir(kind, rid, store)),
                             "dataset": c.get("dataset"), "model": c.get("model"),
                             "pretrained": c.get("pretrained"), "data_root": c.get("data_root")})
                if kind == "erm":
                    roots.add((c["dataset"], c["data_root"]))
    table = pd.DataFrame(rows, columns=["section", "kind", "run_id", "cost", "cached", "dataset", "model",
                                        "pretrained", "data_root"])
    lines = [f"Plan of the '{profile}' profile ({', '.join(names)}); nothing is computed."]
    if unplanned:
        lines.append(f"  not listed until their data are in place (see Missing): {', '.join(unplanned)}")
    unique = table.drop_duplicates(["kind", "run_id"])
    for kind, part in unique.groupby("kind"):
        lines.append(f"  {kind}: {len(part)} runs, {int(part['cached'].sum())} cached, {int((~part['cached']).sum())} to run")
    per_section = table.groupby("section")["run_id"].nunique()
    lines.append("  runs per section (shared runs count in each): " + ", ".join(f"{k} {v}" for k, v in per_section.items()))
    todo = unique[~unique["cached"]]
    unit = "GPU-hours" if profile == "paper" else "CPU-hours (one core)"
    lines.append(f"  estimated compute for the missing runs: {todo['cost'].sum() / 3600:.1f} {unit} (rough, see repro.plan)")
    problems = []
    from repro import metadata

    for dataset, data_root in sorted(roots):
        try:
            metadata.find_root(dataset, data_root)
        except FileNotFoundError:
            if profile in hparams.TWIN_PROFILES:
                problems.append(f"  data: the {dataset} twin is not yet under {data_root}; the notebooks write it on "
                                f"first use, or: repro data synth {dataset} --root {data_root} --scale {profile}")
            else:
                problems.append(f"  data: {dataset} not found under {data_root}; fetch it with: "
                                f"repro data download {dataset} --root {data_root}")
    if profile == "paper":
        for model in sorted(set(unique.loc[unique["kind"] == "erm", "model"].dropna())):
            if model in WEIGHTS:
                where, present = _weights_location(model)
                if not present:
                    problems.append(f"  weights: pretrained {model} not found at {where}; get it with: {WEIGHTS[model][1]}")
    lines.append("Missing:" if problems else "Missing: nothing; every dataset and pretrained weight is in place.")
    lines += problems
    return "\n".join(lines)
