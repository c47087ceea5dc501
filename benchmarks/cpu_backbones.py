"""How long does one cpu-profile ERM run take, per backbone and setting? Side by side, in one process.

    python benchmarks/cpu_backbones.py [--root DATA] [--threads 1] [--only waterbirds civilcomments ...]

Writes the cpu twins under --root (default: a temporary folder), then for each candidate setting runs one
complete ERM run (erm.train: training, evaluations, NC1, feature extraction, checkpoint and feature writes)
and prints its wall-clock seconds. The frozen trunk of a pretrained candidate is computed once per dataset
before its first run; the first run (a 1-epoch run that also fills the cache, "first s") is printed apart, and the run time is measured with the cache warm,
as the book's runs see it. The from-scratch models of the `scratch` switch run beside them. Timings are
wall-clock on whatever else the machine does: compare the rows of one run, and read `uptime` with them.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import torch

from repro import erm, hparams, synth

# (dataset, label, ERM overrides on top of the dataset's hparams under the `backbones` switch)
CANDIDATES = [
    ("waterbirds", "scratch", "scratch", {}),
    ("waterbirds", "pretrained", "pretrained", {}),
    ("waterbirds", "pretrained, train_blocks 2", "pretrained", {"train_blocks": 2}),
    ("celeba", "scratch", "scratch", {}),
    ("celeba", "pretrained", "pretrained", {}),
    ("civilcomments", "scratch", "scratch", {}),
    ("civilcomments", "pretrained", "pretrained", {}),
    ("civilcomments", "pretrained, 4 epochs", "pretrained", {"epochs": 4}),
    ("multinli", "scratch", "scratch", {}),
    ("multinli", "pretrained", "pretrained", {}),
    ("multinli", "pretrained, mean pool", "pretrained", {"model_kw": {"pool": "mean"}}),  # every token's output
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default=None, help="data root for the cpu twins (default: a temporary folder)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", nargs="*", default=None, help="datasets to run (default: all)")
    args = ap.parse_args()
    os.environ["REPRO_THREADS"] = str(args.threads)
    root = args.root or tempfile.mkdtemp(prefix="cpu-backbones-")
    names = sorted({c[0] for c in CANDIDATES if not args.only or c[0] in args.only})
    synth.ensure(root, names, scale="cpu")
    print(f"load average {os.getloadavg()[0]:.2f}, {args.threads} thread(s), torch {torch.__version__}")
    print(f"{'dataset':14} {'setting':28} {'model':19} {'k':>2} {'ep':>3} {'first s':>8} {'run s':>7} {'train acc':>9}")
    for dataset, label, backbones, over in CANDIDATES:
        if args.only and dataset not in args.only:
            continue
        config = erm.default_config(dataset, "cpu", backbones, data_root=root, **over)
        trunk = 0.0
        if erm.setting(config, "train_blocks"):  # warm the trunk cache (on disk and in this process)
            t = time.perf_counter()
            with tempfile.TemporaryDirectory() as d:
                erm.train({**config, "epochs": 1, "save_epochs": [1]}, d)
            trunk = time.perf_counter() - t
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            metrics = erm.train(config, d)
            seconds = time.perf_counter() - t
        print(f"{dataset:14} {label:28} {config['model']:19} {erm.setting(config, 'train_blocks'):>2} "
              f"{config['epochs']:>3} {trunk:8.1f} {seconds:7.2f} {metrics['train_acc_avg']:9.3f}", flush=True)
    print(f"load average {os.getloadavg()[0]:.2f}; cpu hparams: "
          f"{ {d: hparams.erm(d, 'cpu')['lr'] for d in names} }")


if __name__ == "__main__":
    main()
