"""Is an ERM run input-bound? Train-step throughput of the paper's models on this machine's device.

    python benchmarks/erm_throughput.py [--device auto] [--precision fp32] [--batch-size 32] [--steps 3]
                                        [--images 96] [--workers N] [--threads N] [--models resnet50 bert-base]
                                        [--input files cache] [--tf32] [--compile] [--concurrent N]

For ResNet-50 at 224 px and BERT-base at 128 tokens it prints three throughputs (examples per second):
  input  the input pipeline alone: JPEGs decoded and augmented by repro.inputs' DataLoader (RandomResizedCrop
         224 + flip), or token rows of the cached tokens, moved to the device;
  model  the model alone: forward, backward and AdamW step on an in-memory batch already on the device;
  both   the two together, as erm.train runs them.
If `both` is close to `input`, the run is input-bound (add loader workers); if close to `model`, compute-bound.
ResNet-50 is measured for each `--input`: `files` decodes the JPEGs in the workers, `cache` reads the decoded
pixels memory-mapped from repro.pixels' caches (built before the timing); `eval` is then the input pipeline's
evaluation batches (Resize + CenterCrop), and a line gives the cache/files ratios. The fast path and
--concurrent below measure ResNet-50 with the last `--input` given (the cache by default).
`--models bert-tiny` measures the paper's small text model (Figures 2 and 3) on the same token rows.
The models are built from random weights (the architectures are what cost time). Text uses the
bert-base-uncased WordPiece vocabulary (MiniLM's copy, which installs offline) and full 128-token rows.
Timings exclude one warm-up step; they are wall-clock seconds on whatever else the machine is doing, so
compare the three numbers of one run, not runs of different days.

The fast path (the ERM config keys of repro.erm): --tf32 (TF32 matrix products) and --compile (torch.compile of
the model; CUDA only) each measure `model` and `both` again with that setting, and with both when both are given,
printed beside the plain setting with their ratios to it. --concurrent N runs the `both` loop in N processes at
once on the device (each its own model and DataLoader, the loader workers shared out; with the fast-path flags
given), after one process alone: throughput per run, in total, and total / alone, i.e. what packing N runs on
one GPU (repro.sweep, REPRO_RUNS_PER_GPU) gains.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from repro import device as devices
from repro import erm, inputs, models, pictures
from repro.datasets import civilcomments, waterbirds
from repro.data import GroupData


def _images(folder: Path, n: int, write: bool = True) -> GroupData:
    """n synthetic 256 px JPEGs (Waterbirds twin style) and their GroupData (write=False: already written)."""
    rng = np.random.default_rng(0)
    y, a = rng.integers(0, 2, n), rng.integers(0, 2, n)
    paths = [folder / f"{i}.jpg" for i in range(n)]
    if write:
        pictures.save_jpegs(pictures.images(waterbirds.backgrounds, waterbirds.shapes, y, a, rng, 256), paths)
    return GroupData("waterbirds", "image", np.array([str(p) for p in paths], dtype=object), y, a, np.zeros(n, int),
                     root=str(folder))


def _texts(n: int, length: int) -> GroupData:
    rng = np.random.default_rng(0)
    words = np.array((civilcomments.NEUTRAL + civilcomments.HOSTILE) * 2)
    texts = np.array([" ".join(rng.choice(words, length)) for _ in range(n)], dtype=object)
    return GroupData("civilcomments", "text", texts, rng.integers(0, 2, n), rng.integers(0, 2, n), np.zeros(n, int),
                     root="memory")


def _rate(fn, n_items: int, repeats: int, ready=None) -> float:
    fn()  # warm-up (cudnn autotuning, worker start, allocator, compilation)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    if ready is not None:
        ready()  # (--concurrent: wait for the other processes)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_items * repeats / (time.perf_counter() - start)


def measure(model_name: str, data: GroupData, config: dict, device, precision: str, steps: int, workers: int,
            tf32: bool = False, compile: bool = False, parts=("input", "model", "both"), ready=None,
            cache: bool | None = None) -> dict:
    """Rates (examples/s) of the loops named in `parts`; with `cache` set (images), also `eval`."""
    bs = config["batch_size"]
    erm.numerics({"tf32": tf32})
    pipe = inputs.Inputs(data, config, device, workers=workers, cache=cache)
    n = min(len(data.y), steps * bs)
    order = np.arange(n)
    model = models.build(model_name, 2, False).to(device)
    if pipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = erm.compiled(model, {"compile": compile})
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, foreach=True)
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    labels = torch.from_numpy(data.y).to(device)

    def step(x, rows):
        with erm.autocast(device, precision):
            loss = F.cross_entropy(model(x).float(), labels[torch.from_numpy(rows).to(device)])
        erm.optimizer_step(opt, loss, scaler)

    def input_only(train=True):
        for _, x in pipe.batches(order, bs, train=train, generator=torch.Generator().manual_seed(0), epoch=1):
            pass

    fixed_rows, fixed = next(pipe.batches(order[:bs], bs, train=True, generator=torch.Generator().manual_seed(0)))

    def model_only():
        for _ in range(n // bs):
            step(fixed, fixed_rows)

    def both():
        for rows, x in pipe.batches(order, bs, train=True, generator=torch.Generator().manual_seed(0), epoch=1):
            step(x, rows)

    loops = {"input": (input_only, n), "model": (model_only, bs * (n // bs)), "both": (both, n),
             "eval": (lambda: input_only(train=False), n)}
    parts = tuple(parts) + (("eval",) if cache is not None and "input" in parts else ())
    return {part: _rate(loops[part][0], loops[part][1], 1, ready if part == "both" else None) for part in parts}


def _workload(name: str, folder: Path, n: int, batch_size: int, write: bool = True) -> tuple[GroupData, dict]:
    """(data, config) of a model's measurement: JPEGs under `folder` for resnet50, token rows for the BERTs."""
    if name == "resnet50":
        config = erm.default_config("waterbirds", "paper", data_root="memory", batch_size=batch_size, image_size=224,
                                    data_fingerprint="benchmark")  # a key for the pixel caches
        return _images(folder, n, write), config
    config = erm.default_config("civilcomments", "paper", data_root="memory", batch_size=batch_size,
                                max_length=128, model="bert-micro")  # bert-micro: the offline tokenizer
    return _texts(n, 160), config  # longer than 128 tokens: every row is a full 128-token sequence


def variants(args) -> list[tuple[str, bool, bool]]:
    """(label, tf32, compile) of the fast-path settings asked for: each flag alone, then both together."""
    flags = [flag for flag in ("tf32", "compile") if getattr(args, flag)]
    out = [(flag, flag == "tf32", flag == "compile") for flag in flags]
    return out + ([("tf32+compile", True, True)] if len(flags) > 1 else [])


def fast_path(name, data, config, device, args, workers, plain: dict, cache: bool | None = None) -> dict:
    """`model` and `both` of each fast-path variant, and their ratios to the plain setting's."""
    out = {}
    for label, tf32, compile in variants(args):
        rates = measure(name, data, config, device, args.precision, args.steps, workers, tf32, compile,
                        ("model", "both"), cache=cache)
        out[label] = {**rates, **{f"{k}_ratio": rates[k] / plain[k] for k in ("model", "both")}}
    erm.numerics({})  # back to the defaults
    return out


def _one_process(name: str, folder: str, spec: dict, barrier, results) -> None:
    """One of the --concurrent processes: the `both` rate of its own model and pipeline, timed from the barrier."""
    try:
        torch.set_num_threads(spec["threads"])
        device = devices.resolve(spec["device"])
        data, config = _workload(name, Path(folder), spec["n"], spec["batch_size"], write=False)
        rate = measure(name, data, config, device, spec["precision"], spec["steps"], spec["workers"], spec["tf32"],
                       spec["compile"], ("both",), ready=barrier.wait, cache=spec["cache"])["both"]
        results.put((os.getpid(), rate, None))
    except Exception as err:  # reported by the parent, which would otherwise wait for it
        barrier.abort()
        results.put((os.getpid(), None, f"{type(err).__name__}: {err}"))


def processes(name: str, folder: Path, spec: dict, n: int) -> list[float]:
    """The `both` rates of n processes measuring at once (spawned; loader workers shared out among them)."""
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    share = {**spec, "workers": spec["workers"] // n if spec["workers"] else 0}
    procs = [ctx.Process(target=_one_process, args=(name, str(folder), share, barrier, results)) for _ in range(n)]
    for proc in procs:
        proc.start()
    got = [results.get(timeout=1800) for _ in procs]
    for proc in procs:
        proc.join()
    errors = [err for _, _, err in got if err]
    if errors:
        raise RuntimeError(f"a --concurrent process failed: {errors[0]}")
    return [rate for _, rate, _ in got]


def concurrent(name: str, folder: Path, spec: dict, n: int) -> dict:
    """Throughput of the `both` loop of one process alone and of n at once: per run, total, total / alone."""
    alone = processes(name, folder, spec, 1)[0]
    together = processes(name, folder, spec, n)
    return {"runs": n, "alone": alone, "per_run": together, "total": sum(together), "ratio": sum(together) / alone}


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="fp32", choices=tuple(erm.PRECISIONS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed train steps per measurement")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: repro.inputs.loader_workers())")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--models", nargs="+", default=["resnet50", "bert-base"],
                   choices=["resnet50", "bert-base", "bert-tiny"])
    p.add_argument("--input", nargs="+", default=["files", "cache"], choices=["files", "cache"],
                   help="ResNet-50's images: decoded from the files, or read from the decoded-pixel caches")
    p.add_argument("--tf32", action="store_true", help="also measure with TF32 matrix products (ERM key tf32)")
    p.add_argument("--compile", action="store_true",
                   help="also measure the model torch.compiled (ERM key compile; CUDA only)")
    p.add_argument("--concurrent", type=int, default=0, metavar="N", help="also run N measurements at once")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve(devices.select(args.device))
    workers = inputs.loader_workers() if args.workers is None else args.workers
    if args.compile and device.type != "cuda":
        p.error(f"--compile is used on CUDA GPUs only (as the ERM key compile), and the device is {device}")
    if args.concurrent < 0:
        p.error("--concurrent takes a number of processes >= 1")
    info = devices.describe(device)
    print(f"device {info['device']} ({info['device_name']}), torch {info['torch']}, CUDA {info['cuda']}, "
          f"precision {args.precision}, batch {args.batch_size}, {args.steps} timed steps, "
          f"{workers} loader workers, {torch.get_num_threads()} CPU threads, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    n = (args.steps + 1) * args.batch_size
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            data, config = _workload(name, Path(tmp), n, args.batch_size)
            unit = "img/s" if name == "resnet50" else "seq/s"
            sources = args.input if name == "resnet50" else [None]
            for source in sources:
                cache = None if source is None else source == "cache"
                rates = measure(name, data, config, device, args.precision, args.steps, workers, cache=cache)
                bound = "input-bound" if rates["both"] < 0.6 * rates["model"] else "compute-bound"
                label = name if source is None else f"{name} {source}"
                extra = f"   eval {rates['eval']:7.1f} {unit}" if "eval" in rates else ""
                print(f"{label:15s}  input {rates['input']:8.1f} {unit}   model {rates['model']:7.1f} {unit}   "
                      f"both {rates['both']:7.1f} {unit}{extra}   ({bound})", flush=True)
                results[label] = rates
            if len(sources) == 2:
                files_, cache_ = results[f"{name} files"], results[f"{name} cache"]
                print(f"{name:15s}  cache/files: input {cache_['input'] / files_['input']:.2f}x   "
                      f"eval {cache_['eval'] / files_['eval']:.2f}x   both {cache_['both'] / files_['both']:.2f}x",
                      flush=True)
            last = results[label]  # the fast path and --concurrent use the last --input given
            if variants(args):
                last["fast"] = fast_path(name, data, config, device, args, workers, last, cache)
                for variant, r in last["fast"].items():
                    print(f"  {variant:12s} model {r['model']:7.1f} {unit} ({r['model_ratio']:.2f}x)   both "
                          f"{r['both']:7.1f} {unit} ({r['both_ratio']:.2f}x)", flush=True)
            if args.concurrent:
                spec = {"device": str(device), "n": n, "batch_size": args.batch_size, "precision": args.precision,
                        "steps": args.steps, "workers": workers, "tf32": args.tf32, "compile": args.compile,
                        "threads": torch.get_num_threads(), "cache": cache}
                c = last["concurrent"] = concurrent(name, Path(tmp), spec, args.concurrent)
                print(f"  {c['runs']} at once: both per run " + " ".join(f"{r:.1f}" for r in c["per_run"])
                      + f" {unit}, total {c['total']:.1f} {unit}; alone {c['alone']:.1f} {unit} ({c['ratio']:.2f}x)",
                      flush=True)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
