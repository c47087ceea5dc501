"""Is an ERM run input-bound? Train-step throughput of the paper's models on this machine's device.

    python benchmarks/erm_throughput.py [--device auto] [--precision fp32] [--batch-size 32] [--steps 3]
                                        [--images 96] [--workers N] [--threads N] [--models resnet50 bert-base]
                                        [--input files cache]

For ResNet-50 at 224 px and BERT-base at 128 tokens it prints three throughputs (examples per second):
  input  the input pipeline alone: JPEGs decoded and augmented by repro.inputs' DataLoader (RandomResizedCrop
         224 + flip), or token rows of the cached tokens, moved to the device;
  model  the model alone: forward, backward and AdamW step on an in-memory batch already on the device;
  both   the two together, as erm.train runs them.
If `both` is close to `input`, the run is input-bound (add loader workers); if close to `model`, compute-bound.
ResNet-50 is measured for each `--input`: `files` decodes the JPEGs in the workers, `cache` reads the decoded
pixels memory-mapped from repro.pixels' caches (built before the timing); `eval` is then the input pipeline's
evaluation batches (Resize + CenterCrop), and a last line gives the cache/files ratios.
The models are built from random weights (the architectures are what cost time). Text uses the
bert-base-uncased WordPiece vocabulary (MiniLM's copy, which installs offline) and full 128-token rows.
Timings exclude one warm-up step; they are wall-clock seconds on whatever else the machine is doing, so
compare the three numbers of one run, not runs of different days.
"""
from __future__ import annotations

import argparse
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


def _images(folder: Path, n: int) -> GroupData:
    """n synthetic 256 px JPEGs (Waterbirds twin style) and their GroupData."""
    rng = np.random.default_rng(0)
    y, a = rng.integers(0, 2, n), rng.integers(0, 2, n)
    paths = [folder / f"{i}.jpg" for i in range(n)]
    pictures.save_jpegs(pictures.images(waterbirds.backgrounds, waterbirds.shapes, y, a, rng, 256), paths)
    return GroupData("waterbirds", "image", np.array([str(p) for p in paths], dtype=object), y, a, np.zeros(n, int),
                     root=str(folder))


def _texts(n: int, length: int) -> GroupData:
    rng = np.random.default_rng(0)
    words = np.array((civilcomments.NEUTRAL + civilcomments.HOSTILE) * 2)
    texts = np.array([" ".join(rng.choice(words, length)) for _ in range(n)], dtype=object)
    return GroupData("civilcomments", "text", texts, rng.integers(0, 2, n), rng.integers(0, 2, n), np.zeros(n, int),
                     root="memory")


def _rate(fn, n_items: int, repeats: int) -> float:
    fn()  # warm-up (cudnn autotuning, worker start, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return n_items * repeats / (time.perf_counter() - start)


def measure(model_name: str, data: GroupData, config: dict, device, precision: str, steps: int, workers: int,
            cache: bool | None = None) -> dict:
    bs = config["batch_size"]
    pipe = inputs.Inputs(data, config, device, workers=workers, cache=cache)
    n = min(len(data.y), steps * bs)
    order = np.arange(n)
    model = models.build(model_name, 2, False).to(device)
    if pipe.channels_last:
        model = model.to(memory_format=torch.channels_last)
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

    rates = {"input": _rate(input_only, n, 1), "model": _rate(model_only, bs * (n // bs), 1),
             "both": _rate(both, n, 1)}
    if cache is not None:
        rates["eval"] = _rate(lambda: input_only(train=False), n, 1)
    return rates


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default=None)
    p.add_argument("--precision", default="fp32", choices=tuple(erm.PRECISIONS))
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--steps", type=int, default=3, help="timed train steps per measurement")
    p.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: repro.inputs.loader_workers())")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--models", nargs="+", default=["resnet50", "bert-base"], choices=["resnet50", "bert-base"])
    p.add_argument("--input", nargs="+", default=["files", "cache"], choices=["files", "cache"],
                   help="ResNet-50's images: decoded from the files, or read from the decoded-pixel caches")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = devices.resolve(devices.select(args.device))
    workers = inputs.loader_workers() if args.workers is None else args.workers
    info = devices.describe(device)
    print(f"device {info['device']} ({info['device_name']}), torch {info['torch']}, CUDA {info['cuda']}, "
          f"precision {args.precision}, batch {args.batch_size}, {args.steps} timed steps, "
          f"{workers} loader workers, {torch.get_num_threads()} CPU threads, load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    n = (args.steps + 1) * args.batch_size
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            if name == "resnet50":
                data = _images(Path(tmp), n)
                config = erm.default_config("waterbirds", "paper", data_root="memory", batch_size=args.batch_size,
                                            image_size=224, data_fingerprint="benchmark")  # a key for the caches
            else:
                data = _texts(n, 160)  # longer than 128 tokens: every row is a full 128-token sequence
                config = erm.default_config("civilcomments", "paper", data_root="memory", batch_size=args.batch_size,
                                            max_length=128, model="bert-micro")  # bert-micro: the offline tokenizer
            sources = args.input if name == "resnet50" else [None]
            for source in sources:
                rates = measure(name, data, config, device, args.precision, args.steps, workers,
                                None if source is None else source == "cache")
                unit = "img/s" if name == "resnet50" else "seq/s"
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
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
