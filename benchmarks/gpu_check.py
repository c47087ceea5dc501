"""Does the paper profile's code path work on this machine's GPU? A check of a few minutes.

    python benchmarks/gpu_check.py [--out DIR] [--sections margins neural_collapse class_balance]
                                   [--budget-s 300] [--steps 20]

It runs, on the device repro.device selects (CUDA where there is one), and prints one line per result:
  1. ERM of each paper model family through erm.run in a rehearsal (random weights, tiny 224 px JPEG twins in
     the real formats; see repro.rehearse): ResNet-50 on the Waterbirds twin (DataLoader, workers) and
     BERT-base on the MultiNLI twin (cached tokens), in fp32, bf16 and fp16, `--steps` steps each; checks that
     meta.json names the device, the metrics are finite and the features were written;
  2. determinism: one config twice, each in a fresh store, with REPRO_DETERMINISTIC=1 (cuDNN's deterministic
     kernels): are metrics.json and the feature files the same bytes? and once more without it (cuDNN autotuning);
  3. whole sections of the rehearsed paper book (ERM, heads, SVM and their tables) through the same functions
     the notebooks call, with a 2-worker pool (one worker per GPU: with one GPU, one worker);
  4. train-step throughput of ResNet-50 at 224 px and BERT-base at 128 tokens (benchmarks/erm_throughput.py)
     in fp32 and bf16.
Everything is written under a temporary folder; --out also keeps a JSON summary. Parts stop being started
once --budget-s seconds have passed, so the script ends within a device lease.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def _log(*parts) -> None:
    print(*parts, flush=True)


def _template_parameters(path: Path) -> dict:
    """The parameters cell of a notebook template, read without papermill (which a bare GPU box may lack)."""
    cells = json.loads(path.read_text())["cells"]
    cell = next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    return {node.targets[0].id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)}


def _not_finite(obj) -> int:
    """How many NaN or infinite numbers `obj` (nested dicts and lists) holds."""
    if isinstance(obj, dict):
        return sum(_not_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return sum(_not_finite(v) for v in obj)
    return int(isinstance(obj, float) and not math.isfinite(obj))


def erm_runs(data_root: str, store: Path, steps: int) -> list[dict]:
    import torch

    from repro import erm, runs

    rows = []
    for dataset in ("waterbirds", "multinli"):
        for precision in ("fp32", "bf16", "fp16"):
            start = time.perf_counter()
            path = erm.run(dataset, "paper", store=store, data_root=data_root, seed=1, precision=precision,
                           max_steps=steps, balance="none")
            seconds = time.perf_counter() - start
            meta = json.loads((path / "meta.json").read_text())
            metrics = runs.read_metrics("erm", path.name, store)
            feats = sorted(p.name for p in path.glob("features*"))
            rows.append({"dataset": dataset, "model": json.loads((path / "config.json").read_text())["model"],
                         "precision": precision, "seconds": round(seconds, 2),
                         "device": meta.get("device", {}).get("device"), "not_finite": _not_finite(metrics),
                         "features": feats, "test_acc_avg": metrics.get("test_acc_avg"),
                         "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
                         if torch.cuda.is_available() else None})
            _log("erm", json.dumps(rows[-1]))
    return rows


def _bytes(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name.startswith(("metrics", "features"))}


def determinism(data_root: str, base: Path, steps: int) -> dict:
    from repro import erm

    out = {}
    for label, flag in (("deterministic", "1"), ("autotuned", "0")):
        os.environ["REPRO_DETERMINISTIC"] = flag
        files = []
        for i in range(2):
            path = erm.run("waterbirds", "paper", store=base / f"{label}{i}", data_root=data_root, seed=2,
                           max_steps=steps, balance="none")
            files.append(_bytes(path))
        same = files[0] == files[1]
        differ = sorted(k for k in files[0] if files[0][k] != files[1].get(k))
        out[label] = {"identical": same, "differing_files": differ}
        _log("determinism", label, json.dumps(out[label]))
    os.environ.pop("REPRO_DETERMINISTIC", None)
    return out


def sections_run(names: list[str], data_root: str, deadline: float) -> list[dict]:
    import yaml

    from repro import rehearse, sections

    rows = []
    for name in names:
        if time.time() > deadline:
            _log("section", name, "skipped: budget spent")
            continue
        params = ROOT / "params" / "paper" / f"{name}.yml"  # read directly: book.load_params needs papermill
        values = {**_template_parameters(ROOT / "book" / f"{name}.ipynb"),
                  **(yaml.safe_load(params.read_text()) or {} if params.exists() else {})}
        values.update({k: v for k, v in rehearse.PARAMS.items() if k in values})
        values["data_root"] = data_root
        section = sections.SECTIONS[name]
        kwargs = {k: values[k] for k in section.params}
        start = time.perf_counter()
        result = section.compute(profile="paper", workers=2, **kwargs)
        frames = result if isinstance(result, tuple) else (result,)
        rows.append({"section": name, "seconds": round(time.perf_counter() - start, 1),
                     "frames": [len(f) for f in frames if hasattr(f, "__len__")]})
        _log("section", json.dumps(rows[-1]))
    return rows


def throughput(deadline: float) -> dict:
    import erm_throughput

    out = {}
    for precision in ("fp32", "bf16"):
        if time.time() > deadline:
            _log("throughput", precision, "skipped: budget spent")
            continue
        out[precision] = erm_throughput.main(["--precision", precision, "--steps", "20", "--workers", "8"])
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="folder for gpu_check.json")
    p.add_argument("--sections", nargs="*", default=["margins", "neural_collapse", "class_balance"])
    p.add_argument("--budget-s", type=float, default=300.0)
    p.add_argument("--steps", type=int, default=20, help="ERM steps per run in parts 1 and 2")
    p.add_argument("--parts", nargs="*", default=["erm", "determinism", "sections", "throughput"])
    args = p.parse_args(argv)
    deadline = time.time() + args.budget_s

    import torch

    from repro import device as devices
    from repro import rehearse

    info = devices.describe(devices.resolve(devices.select(None)))
    _log("device", json.dumps(info), "cpus", os.cpu_count())
    summary = {"device": info}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ[rehearse.ENV] = "1"
        os.environ["REPRO_RUNS"] = str(tmp / "runs")
        start = time.perf_counter()
        rehearse.write_twins(tmp / "data")
        _log("twins", f"{time.perf_counter() - start:.1f} s")
        data_root = str(tmp / "data")
        if "erm" in args.parts:
            summary["erm"] = erm_runs(data_root, tmp / "erm", args.steps)
        if "determinism" in args.parts:
            summary["determinism"] = determinism(data_root, tmp / "det", args.steps)
        if "sections" in args.parts:
            summary["sections"] = sections_run(args.sections, data_root, deadline)
        os.environ.pop(rehearse.ENV)
        if "throughput" in args.parts:
            summary["throughput"] = throughput(deadline + 120)
        summary["max_memory_gib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                     if torch.cuda.is_available() else None)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


if __name__ == "__main__":
    main(sys.argv[1:])
