"""The speed parts of benchmarks/gpu_check.py: ERM runs packed onto one GPU, host syncs in the training loop, the
fast path (bf16, TF32, torch.compile), cached pixels against JPEG files, and the dry run's calibration.

  pack: the same three ERM runs (BERT-base on the rehearsal's MultiNLI twin, `--pack-steps` SGD steps each) with
     1, 2 and 3 runs per GPU (repro.sweep, runs_per_gpu), each into a fresh store, all with deterministic kernels
     (REPRO_DETERMINISTIC=1, which packed workers force); the pool's workers are started before the clock. Wall
     time, SGD steps per second and its ratio to 1 per GPU, and whether every file of every run (config, metrics,
     checkpoint, features) has the bytes of the solo runs;
  syncdebug: one training epoch of several ERM configs (the rehearsal's BERT-base in fp32 and bf16, its
     ResNet-50 through the JPEG DataLoader, the smoke twins' in-memory images, tokens and a text top over cached
     trunk states) under torch.cuda.set_sync_debug_mode("error") from its second step to its last: the first
     operation that waits for the GPU stops it and is reported with where it was called;
  fastpath: BERT-base train-step throughput (benchmarks/erm_throughput.py) plain, with TF32, compiled, and both,
     in fp32; then bf16 plain and compiled; ratios to the plain fp32 setting;
  input: ResNet-50's throughput from cached pixels and from JPEG files, if erm_throughput.py has an `--input`
     option (else skipped, with a note);
  calibrate: `repro bench` of the paper profile's sections but the companions (repro.plan.bench, 60 s) into the
     check's store; the dry run's device-hours at the default rates and at the measured ones, the GPU's memory
     and the runs per GPU that `--runs-per-gpu auto` then packs for each dataset and model.

Without CUDA every part runs a reduced version of itself (the smoke twins and small models, host_reads of
repro.device instead of the CUDA sync-debug mode, a pool of k workers for k runs per GPU, no compilation), so that
its code runs here; its numbers then say nothing about a GPU.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

PARTS = ("pack", "syncdebug", "fastpath", "input", "calibrate")


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _log(*parts) -> None:
    print(*parts, flush=True)


def _where(err: BaseException) -> str:
    """The exception and the innermost frames it came through, on one line."""
    import traceback

    frames = traceback.extract_tb(err.__traceback__)[-4:]
    return f"{type(err).__name__}: {str(err).strip().splitlines()[0]} (at " + \
        " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(frames)) + ")"


def _store_files(store: Path) -> dict:
    """{kind/run_id/file: sha256} of what a run must reproduce (not meta.json, manifest.json, done)."""
    from repro import runs

    return {str(p.relative_to(store)): runs.sha256(p) for p in sorted(store.glob("*/*/*"))
            if p.is_file() and p.name not in ("meta.json", "manifest.json", "done")}


# ------------------------------------------------------------------------------------------------------ pack

def _warm() -> int:
    """A pool worker's start: torch and CUDA up before the clock (a second, so that each worker takes one)."""
    import torch

    if torch.cuda.is_available():
        torch.zeros(1, device="cuda")
    time.sleep(1.0)
    return os.getpid()


def pack_configs(data_root: str, steps: int) -> list[dict]:
    """Three ERM configs: the rehearsal's BERT-base on MultiNLI (GPU), else the smoke CelebA twin for one epoch."""
    from repro import erm, hparams, synth

    if cuda():
        return [erm.default_config("multinli", "paper", backbones=hparams.REHEARSAL, data_root=data_root, seed=s,
                                   balance="none", batch_size=8, min_steps=steps, max_steps=steps) for s in (1, 2, 3)]
    synth.ensure(data_root, ["celeba"], scale="smoke")
    return [erm.default_config("celeba", "smoke", data_root=data_root, seed=s, epochs=1) for s in (1, 2, 3)]


def pack(tmp: Path, data_root: str, steps: int, deadline: float) -> dict:
    """1, 2 and 3 runs per GPU of the same runs (see the module's docstring); on a CPU, pools of 1 and 2 workers."""
    import torch

    from repro import device as devices
    from repro import sweep

    configs = pack_configs(data_root if cuda() else str(tmp / "smoke_twins"), steps)
    before = os.environ.get(devices.DETERMINISTIC_ENV)
    os.environ[devices.DETERMINISTIC_ENV] = "1"  # the solo runs too: packed workers run deterministic kernels
    rows, solo = [], None
    try:
        for k in (1, 2, 3) if cuda() else (1, 2):
            if time.time() > deadline:
                rows.append({"runs_per_gpu": k, "skipped": "budget spent"})
                continue
            workers, per_gpu = (1, k) if cuda() else (k, 1)
            if sweep.pool_size(workers, per_gpu) > 1:  # start the workers before the clock
                executor, size = sweep.pool(workers, per_gpu)
                for started in [executor.submit(_warm) for _ in range(size)]:
                    started.result()
            store = tmp / f"pack{k}"
            start = time.perf_counter()
            sweep.run("erm", configs, workers=workers, store=store, runs_per_gpu=per_gpu)
            wall = time.perf_counter() - start
            files = _store_files(store)
            solo = files if solo is None else solo
            differ = sorted(name for name in solo if files.get(name) != solo[name])
            rows.append({"runs_per_gpu": k, "workers": sweep.pool_size(workers, per_gpu), "wall_s": round(wall, 2),
                         "steps_per_s": round(len(configs) * steps / wall, 2) if cuda() else None,
                         "identical_to_solo": not differ and files.keys() == solo.keys(), "differing": differ[:6]})
            if rows[0].get("wall_s"):
                rows[-1]["speedup"] = round(rows[0]["wall_s"] / wall, 2)
            _log("pack", rows[-1])
    finally:
        sweep.shutdown()
        torch.use_deterministic_algorithms(False)
        if before is None:
            os.environ.pop(devices.DETERMINISTIC_ENV, None)
        else:
            os.environ[devices.DETERMINISTIC_ENV] = before
    return {"runs": len(configs), "steps_per_run": steps if cuda() else None, "model": configs[0]["model"],
            "rows": rows}


# ------------------------------------------------------------------------------------------------- syncdebug

def _cuda_watch(batches):
    """The batches, with CUDA's sync-debug mode "error" from the second step to the end of the loop."""
    import torch

    try:
        for i, item in enumerate(batches):
            if i == 1:
                torch.cuda.set_sync_debug_mode("error")
            yield item
    finally:
        torch.cuda.set_sync_debug_mode("default")


def _cpu_watch(batches, log: list):
    """The batches, with repro.device.host_reads recording into `log` from the second step to the end."""
    from repro import device as devices

    it = iter(batches)
    for item in it:
        yield item
        break
    with devices.host_reads(log):
        yield from it


def watched_epoch(config: dict, steps: int) -> dict:
    """Up to `steps` SGD steps of erm.train_one_epoch on this process's device, watched for host syncs from the
    second step on; {"steps", "syncs": [] or what waited, "ok"}."""
    import numpy as np
    import torch

    from repro import device as devices
    from repro import erm

    config = erm.check(dict(config))
    device = devices.resolve()
    erm.check_device(config, device)
    data, inputs, model = erm._setup(config, device)
    order_of, _, weights = erm._sampler(data, erm.splits(data, config)["train"], config)
    if inputs.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = erm.compiled(model, config)
    opt = erm._optimizer(model, config)
    y = torch.tensor(data.y, dtype=torch.long, device=device)
    w = torch.from_numpy(weights).to(device) if weights is not None else None
    log, batches = [], inputs.batches
    inputs.batches = (lambda *a, **kw: _cuda_watch(batches(*a, **kw))) if device.type == "cuda" else \
        (lambda *a, **kw: _cpu_watch(batches(*a, **kw), log))
    order = np.asarray(order_of(1))
    try:
        _, done = erm.train_one_epoch(model, opt, inputs, order, y, w, config=config, epoch=1, epochs=1, step=0,
                                      total_steps=steps, base_lrs=[g["lr"] for g in opt.param_groups],
                                      generator=torch.Generator().manual_seed(config["seed"]), max_steps=steps)
    except RuntimeError as err:
        if device.type == "cuda":
            torch.cuda.set_sync_debug_mode("default")
        return {"steps": None, "syncs": [_where(err)], "ok": False}
    return {"steps": done, "syncs": [f"{op} at {where}" for op, where in log[:5]], "ok": not log}


def sync_configs(tmp: Path, data_root: str) -> dict[str, dict]:
    """{label: ERM config} of the syncdebug part: the rehearsal's paper models on a GPU, the smoke twins always."""
    from repro import erm, hparams, synth

    smoke = str(tmp / "smoke_twins")
    synth.ensure(smoke, ["waterbirds", "civilcomments"], scale="smoke")
    out = {}
    if cuda():
        paper = dict(backbones=hparams.REHEARSAL, data_root=data_root, balance="none", batch_size=4)
        out["bert-base multinli fp32"] = erm.default_config("multinli", "paper", **paper)
        out["bert-base multinli bf16"] = erm.default_config("multinli", "paper", precision="bf16", **paper)
        out["resnet50 waterbirds jpeg"] = erm.default_config("waterbirds", "paper", **paper)
    out["cnn-small waterbirds smoke"] = erm.default_config("waterbirds", "smoke", data_root=smoke, batch_size=8)
    out["bert-micro civilcomments smoke"] = erm.default_config("civilcomments", "smoke", data_root=smoke, batch_size=8)
    out["bert-micro top civilcomments smoke"] = erm.default_config("civilcomments", "smoke", data_root=smoke,
                                                                   batch_size=8, train_blocks=1)
    return out


def syncdebug(tmp: Path, data_root: str, steps: int, deadline: float) -> dict:
    out = {"mode": "torch.cuda.set_sync_debug_mode('error')" if cuda() else "repro.device.host_reads (no CUDA)"}
    for label, config in sync_configs(tmp, data_root).items():
        if time.time() > deadline:
            out[label] = {"skipped": "budget spent"}
            continue
        try:
            out[label] = watched_epoch(config, steps)
        except Exception as err:  # one failing config must not hide the others
            out[label] = {"error": _where(err), "ok": False}
        _log("syncdebug", label, out[label])
    return out


# -------------------------------------------------------------------------------- fastpath, input, calibrate

def _throughput(args: list[str]) -> dict:
    import erm_throughput  # benchmarks/ is on sys.path (gpu_check puts it there)

    return erm_throughput.main(args)


def fastpath(deadline: float) -> dict:
    """BERT-base throughput plain, TF32, compiled, both (fp32), then bf16 plain and compiled; ratios to plain fp32.
    Without CUDA: bert-tiny at batch 4 on the CPU, TF32 only (compile is CUDA's)."""
    if cuda():
        base = ["--models", "bert-base", "--steps", "20", "--workers", "0"]
        runs = {"fp32": base + ["--tf32", "--compile"], "bf16": base + ["--precision", "bf16", "--compile"]}
    else:
        base = ["--models", "bert-tiny", "--batch-size", "4", "--steps", "2", "--workers", "0"]
        runs = {"fp32": base + ["--tf32"], "bf16": base + ["--precision", "bf16"]}
    out = {}
    for precision, args in runs.items():
        if time.time() > deadline:
            out[precision] = {"skipped": "budget spent"}
            continue
        out[precision] = _throughput(args)
    model = "bert-base" if cuda() else "bert-tiny"
    if all(model in out.get(p, {}) for p in runs):
        plain = out["fp32"][model]
        table = {"fp32": 1.0, **{f"fp32 {k}": v["model_ratio"] for k, v in plain.get("fast", {}).items()},
                 "bf16": out["bf16"][model]["model"] / plain["model"],
                 **{f"bf16 {k}": v["model"] / plain["model"] for k, v in out["bf16"][model].get("fast", {}).items()}}
        out["model_ratio_to_fp32"] = {k: round(v, 3) for k, v in table.items()}
        _log("fastpath", "model step throughput / plain fp32:", out["model_ratio_to_fp32"])
    return out


def input_part(deadline: float) -> dict:
    """ResNet-50 throughput reading JPEG files and reading the decoded-pixel caches, side by side in one process."""
    base = ["--models", "resnet50"] + (["--steps", "20", "--workers", "8"] if cuda() else
                                       ["--batch-size", "2", "--steps", "1", "--workers", "0"])
    if time.time() > deadline:
        return {"skipped": "budget spent"}
    rates = _throughput(base + ["--input", "files", "cache"])
    files_, cache_ = rates["resnet50 files"], rates["resnet50 cache"]
    return {"files": files_, "cache": cache_, **{f"{part}_ratio_cache_to_files": round(cache_[part] / files_[part], 3)
                                                  for part in ("input", "eval", "both")}}


def calibrate(seconds: float) -> dict:
    """`repro bench` of the paper profile (smoke's margins without CUDA) into $REPRO_RUNS, and what it changes:
    the dry run's device-hours, and the runs per GPU that `auto` packs per dataset and model."""
    from repro import calibration, cost, plan, runs

    from repro import sections

    # the paper's models (the companions train the cpu profile's, whose weights a bare GPU machine may lack)
    profile, only = ("paper", [n for n in sections.SECTIONS if n != "companions"]) if cuda() else ("smoke", ["margins"])
    configs = list({runs.run_id("erm", c): c for c in plan.erm_configs(profile, only)}.values())
    hours = lambda: float(f"{sum(cost.cost('erm', c) for c in configs) / 3600:.4g}")  # noqa: E731
    before = hours()
    start = time.perf_counter()
    report = plan.bench(profile, only, seconds, log=lambda line: _log("calibrate", line))
    stored = calibration.load()
    groups: dict[str, list] = {}
    for c in configs:
        groups.setdefault(f"{c['dataset']} {c['model']}", []).append(c)
    return {"profile": profile, "seconds": round(time.perf_counter() - start, 1), "report": report,
            "erm_runs": len(configs), "device_hours_default": before, "device_hours_measured": hours(),
            "memory_gib": round(stored["memory_bytes"] / 2**30, 1) if stored.get("memory_bytes") else None,
            "workloads": {k: {"train": round(r["train"], 1), "eval": round(r["eval"], 1),
                              "peak_gib": round(r["peak_bytes"] / 2**30, 2) if r.get("peak_bytes") else None}
                          for k, r in stored["rates"].items()},
            "auto_runs_per_gpu": {k: cost.runs_per_gpu(v) for k, v in groups.items()}}
