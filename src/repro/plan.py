"""`repro book --dry-run`: every run the book's sections need under a profile, which are cached, what they cost
(examples, device-hours, disk, accelerator memory: repro.cost, per dataset and model and per section), and what
is missing (data, pretrained weights) with the command that fetches it. Nothing is computed.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro import book, calibration, cost, hparams, runs, sections
from repro.cost import train_size  # noqa: F401  (the sizes a plan is costed at)

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
                rows.append({"section": name, "kind": kind, "run_id": rid,
                             "cached": runs.is_done(runs.run_dir(kind, rid, store)), **_costs(kind, c)})
                if kind == "erm":
                    roots.add((c["dataset"], c["data_root"]))
    table = pd.DataFrame(rows, columns=["section", "kind", "run_id", "cached", *COSTS])
    lines = [f"Plan of the '{profile}' profile ({', '.join(names)}); nothing is computed."]
    if unplanned:
        lines.append(f"  not listed until their data are in place (see Missing): {', '.join(unplanned)}")
    unique = table.drop_duplicates(["kind", "run_id"])
    for kind, part in unique.groupby("kind"):
        lines.append(f"  {kind}: {len(part)} runs, {int(part['cached'].sum())} cached, {int((~part['cached']).sum())} to run")
    per_section = table.groupby("section")["run_id"].nunique()
    lines.append("  runs per section (shared runs count in each): " + ", ".join(f"{k} {v}" for k, v in per_section.items()))
    lines += cost_tables(table)
    todo = unique[~unique["cached"]]
    lines.append(f"  estimated compute for the missing runs: {hours_text(todo['cost'].sum(), commas=False)} device-hours "
                 f"({rates_note(unique)})")
    lines += pixel_cache_lines(unique)
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


def _image_bytes(dataset: str, data_root: str, n: int) -> float | None:
    """Bytes of all `n` images of a dataset decoded at full resolution (uint8 RGB), from the sizes of up to 64 of
    its image files read from their headers (no decoding); None when its images are not in place."""
    from PIL import Image

    from repro import metadata
    try:
        folder = metadata.find_root(dataset, data_root)
        names = metadata.read(dataset, data_root)["input"].to_numpy()
    except FileNotFoundError:
        return None
    sizes = []
    for name in names[np.linspace(0, len(names) - 1, min(64, len(names))).astype(int)]:
        try:
            with Image.open(folder / name) as im:
                sizes.append(im.size[0] * im.size[1] * 3)
        except OSError:
            return None
    return float(np.mean(sizes)) * n


def pixel_cache_lines(unique: pd.DataFrame) -> list[str]:
    """The decoded-pixel caches (repro.pixels) that file-backed image datasets get next to their data: the
    evaluation crops (exact: images x size^2 x 3 bytes) and the full-resolution images (estimated from image
    headers where the images are in place). An execution detail: REPRO_PIXEL_CACHE=0 decodes the files instead."""
    from repro import datasets, inputs, metadata, pixels
    from repro.device import pixel_cache
    erm_rows = unique[unique["kind"] == "erm"]
    if erm_rows.empty:
        return []
    lines = []
    for (dataset, data_root), part in erm_rows.groupby(["dataset", "data_root"]):
        big = sorted({int(s) for s in part["image_size"].dropna() if s > inputs.IN_MEMORY_MAX_SIZE})
        if not big or datasets.get(dataset).kind != "image":
            continue
        try:
            n = len(metadata.read(dataset, data_root))
        except FileNotFoundError:
            try:
                n = len(metadata.read(dataset, book.repo_root() / "data" / "metadata"))  # the bundled official metadata
            except FileNotFoundError:
                continue
        crops = sum(n * s * s * 3 for s in big)
        full = _image_bytes(dataset, data_root, n)
        full_text = f"{cost.size_text(full)} full-resolution" if full is not None else "full-resolution size unknown until the images are in place"
        lines.append(f"  pixel caches, {dataset} ({n:,} images, {'/'.join(map(str, big))} px): {cost.size_text(crops)} of "
                     f"evaluation crops + {full_text}, in {data_root}/.../{pixels.FOLDER}/"
                     + ("" if pixel_cache() else " (off: REPRO_PIXEL_CACHE=0)"))
    return lines


COSTS = ("cost", "train_examples", "eval_examples", "disk", "memory", "rates", "dataset", "model", "pretrained",
         "data_root", "image_size")


def _costs(kind: str, config: dict) -> dict:
    """A run's estimates (repro.cost): seconds, examples, disk and peak memory (bytes), where its rates come from."""
    out = {"cost": cost.cost(kind, config), "train_examples": 0, "eval_examples": 0, "disk": 0.0, "memory": 0.0,
           "rates": "", "dataset": config.get("dataset"), "model": config.get("model"),
           "pretrained": config.get("pretrained"), "data_root": config.get("data_root"),
           "image_size": config.get("image_size")}
    if kind == "erm":
        r = cost.rates(config)
        out.update(zip(("train_examples", "eval_examples"), cost.examples(config)), disk=cost.disk_bytes(config),
                   memory=cost.peak_bytes(config), rates=f"{r.source}: {r.device}")
    return out


def _millions(n: float) -> str:
    return f"{n / 1e6:,.1f} M" if n >= 1e6 else f"{n:,.0f}"


def _summary(part: pd.DataFrame) -> dict:
    erm = part[part["kind"] == "erm"]
    return {"runs": len(part), "training examples": _millions(erm["train_examples"].sum()),
            "evaluation examples": _millions(erm["eval_examples"].sum()),
            "device-hours": hours_text(part["cost"].sum()), "disk": cost.size_text(erm["disk"].sum())}


def _peak(part: pd.DataFrame) -> dict:
    """The largest peak accelerator memory of a part's ERM runs (one run; heads and SVM paths need little)."""
    erm = part[part["kind"] == "erm"]
    return {"peak memory (est.)": cost.size_text(erm["memory"].max()) if len(erm) else "-"}


def hours_text(seconds: float, commas: bool = True) -> str:
    """Hours with the digits that matter: '1,234', '12.3', '0.042'."""
    h = seconds / 3600
    text = f"{h:,.0f}" if h >= 100 else f"{h:.1f}" if h >= 1 else f"{h:.3f}"
    return text if commas else text.replace(",", "")


def cost_tables(table: pd.DataFrame) -> list[str]:
    """The plan's cost per dataset and model (ERM runs) and per section (every kind; a run shared by sections
    counts in each), as text tables, with a total of the distinct runs."""
    unique = table.drop_duplicates(["kind", "run_id"])
    erm = unique[unique["kind"] == "erm"]
    rows = [{"dataset · model": f"{d} · {m}", **_summary(part), **_peak(part), "rates": part["rates"].iloc[0]}
            for (d, m), part in erm.groupby(["dataset", "model"], sort=False)]
    if rows:
        rows.append({"dataset · model": "all ERM runs", **_summary(erm), **_peak(erm), "rates": ""})
    sections_ = [{"section": name, **_summary(part.drop_duplicates(["kind", "run_id"])), **_peak(part)}
                 for name, part in table.groupby("section", sort=False)]
    sections_.append({"section": "all (distinct runs)", **_summary(unique), **_peak(unique)})
    lines = ["", "ERM runs by dataset and model (device-hours: training and evaluation at the rates named; disk: "
             "checkpoints and feature caches; peak memory: an estimate from parameters, batch and activations, "
             "unless measured by `repro bench`):", ""]
    lines += _markdown(pd.DataFrame(rows)) if rows else ["(none)"]
    lines += ["", "By section (every kind of run; a run shared by sections counts in each; heads and SVM paths are "
              "costed by repro.cost.SECONDS_PER_RUN, their files are kilobytes; peak memory: of one ERM run, as "
              "above):", ""]
    lines += _markdown(pd.DataFrame(sections_))
    return ["  " + line if line else "" for line in lines] + [""]


def _markdown(frame: pd.DataFrame) -> list[str]:
    """A table's lines, names and sources left-aligned, numbers right-aligned."""
    align = ["left" if c in ("dataset · model", "section", "rates") else "right" for c in frame.columns]
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align).splitlines()


def rates_note(unique: pd.DataFrame) -> str:
    """Where the rates come from: the calibration of this device, or which device the defaults belong to."""
    sources = sorted(set(unique.loc[unique["kind"] == "erm", "rates"]))
    stored = calibration.load()
    where = calibration.path()
    if stored:
        note = f"this device's calibration {where} ({calibration.name(stored)}, measured {stored['measured']})"
        if any(s.startswith("default") for s in sources):
            note += "; workloads it lacks at repro.cost.DEFAULT_RATES"
    else:
        note = (f"at repro.cost.DEFAULT_RATES of {', '.join(s.removeprefix('default: ') for s in sources) or 'none'}; "
                f"no calibration of this device in {where.parent}: `repro bench` measures one")
    return note


def erm_configs(profile: str, only: list[str] | None = None, root: Path | None = None, yes: bool = False) -> list[dict]:
    """The ERM configs of the book's sections under `profile` (those whose run lists need data that are missing
    are left out: their models are the other sections' models)."""
    root = root or book.repo_root()
    out = []
    for name in [n for n in book.notebooks(root) if n in sections.SECTIONS and (not only or n in only)]:
        try:
            out += section_configs(name, profile, root, yes).get("erm", [])
        except FileNotFoundError:
            continue
    return out


def bench(profile: str, only: list[str] | None = None, seconds: float = 60.0, store=None, log=print) -> str:
    """Measure the throughput of every workload (model, batch, input size, precision) the profile's ERM runs
    need on this device (repro.calibration), store it for the dry run and the sweeps' ETA; returns a report."""
    configs = erm_configs(profile, only)
    if not configs:
        raise ValueError(f"the '{profile}' profile plans no ERM run{' in ' + ', '.join(only) if only else ''}; "
                         "nothing to measure")
    keys = calibration.workloads(configs)
    log(f"measuring {len(keys)} workloads of the '{profile}' profile on {calibration.device_slug()} "
        f"(about {seconds:.0f} s)")
    measured = calibration.measure(configs, seconds=seconds, log=lambda line: log("  " + line))
    path = calibration.save(measured, store=store)
    return f"{path}: {len(measured)} workloads; `repro book --profile {profile} --dry-run` now costs them at these rates"
