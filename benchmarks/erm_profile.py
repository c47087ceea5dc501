"""Where one ERM run spends its time: a per-phase table of wall seconds and % of the run, one run per model.

    .venv/bin/python benchmarks/erm_profile.py [--profile cpu] [--model cnn-small bert-micro] [--dataset D ...]
                                               [--runs 2] [--set key=value ...]

For each (model, dataset) -- by default the first dataset of the profile that each of its models trains on --
a fresh Python process trains `--runs` ERM runs (seeds 1, 2, ...) into a temporary run store, the way a sweep
worker does, with REPRO_THREADS threads (default 1). The first run pays for the process start, the imports
and decoding the data; later runs in the same process (a warm pool worker) do not. Phases are timed by
explicit timers wrapped around the functions of repro.erm, repro.inputs, repro.features and repro.runs and
around the model's forward, Tensor.backward and the optimizer's step and zero_grad; each second is counted
once, in the innermost phase running. Nothing of the training code is changed: results are those of a
normal run. The twin is written (repro.synth) before the clock starts.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

PHASES = [  # (key, row label), in table order
    ("start", "process start (interpreter)"),
    ("imports", "imports (torch, repro)"),
    ("data", "data load/decode (files, tokens, images)"),
    ("batch", "batch assembly (index, normalize)"),
    ("augment", "augmentation"),
    ("setup", "model build, optimizer, setup"),
    ("forward", "forward (training)"),
    ("loss", "loss, lr schedule, loop"),
    ("backward", "backward"),
    ("optimizer", "optimizer (step, zero_grad)"),
    ("extract", "evaluation/feature forward (one shared pass)"),
    ("evaluate", "evaluation metrics (per group)"),
    ("nc1", "NC1"),
    ("checkpoint", "checkpoint write"),
    ("features", "feature write"),
    ("store", "run-store bookkeeping (hash, lock, manifest, rename)"),
]


class Clock:
    """Exclusive wall time per phase: a stack of running phases; time goes to the innermost one."""

    def __init__(self):
        self.totals: dict[str, float] = {}
        self.stack: list[str] = []
        self.last = time.perf_counter()

    def _switch(self):
        now = time.perf_counter()
        if self.stack:
            self.totals[self.stack[-1]] = self.totals.get(self.stack[-1], 0.0) + now - self.last
        self.last = now

    def push(self, phase: str):
        self._switch()
        self.stack.append(phase)

    def pop(self):
        self._switch()
        self.stack.pop()

    def wrap(self, phase: str, fn):
        def timed(*args, **kwargs):
            self.push(phase)
            try:
                return fn(*args, **kwargs)
            finally:
                self.pop()
        return timed


def _instrument(clock: Clock) -> None:
    """Wrap the phases' functions (module attributes, so the training code itself is unchanged)."""
    import torch

    from repro import erm, features, inputs, metrics, runs

    erm.load_data = clock.wrap("data", erm.load_data)
    inputs._decode = clock.wrap("data", inputs._decode)
    inputs.cached_tokens = clock.wrap("data", inputs.cached_tokens)
    inputs.Inputs.batch = clock.wrap("batch", inputs.Inputs.batch)
    inputs.augment = clock.wrap("augment", inputs.augment)
    erm._train = clock.wrap("setup", erm._train)
    erm.train_one_epoch = clock.wrap("loss", erm.train_one_epoch)
    erm.evaluate = clock.wrap("evaluate", erm.evaluate)
    features.predict = clock.wrap("extract", features.predict)
    metrics.nc1 = clock.wrap("nc1", metrics.nc1)
    erm.save_checkpoint = clock.wrap("checkpoint", erm.save_checkpoint)
    features.save = clock.wrap("features", features.save)
    runs.get = clock.wrap("store", runs.get)
    torch.Tensor.backward = clock.wrap("backward", torch.Tensor.backward)
    torch.optim.Optimizer.zero_grad = clock.wrap("optimizer", torch.optim.Optimizer.zero_grad)
    from torch.optim.optimizer import register_optimizer_step_post_hook, register_optimizer_step_pre_hook

    register_optimizer_step_pre_hook(lambda *a: clock.push("optimizer"))
    register_optimizer_step_post_hook(lambda *a: clock.pop())

    build = erm.models.build

    def build_timed(*args, **kwargs):  # the training forward (model(x)); the eval pass calls features/head
        model = build(*args, **kwargs)
        model.register_forward_pre_hook(lambda *a: clock.push("forward"))
        model.register_forward_hook(lambda *a: clock.pop())
        return model
    erm.models.build = build_timed


def child(args) -> None:
    """Train the runs in this process and print one JSON line per run: {phase: seconds, "total": seconds}."""
    t_main = time.time()
    try:  # psutil comes with ipykernel (the test extra); without it the start row is left out
        import psutil
        started = psutil.Process().create_time()
    except ImportError:
        started = None
    t0 = time.perf_counter()
    import torch  # noqa: F401

    from repro import erm, hparams, runs, sweep
    imports = time.perf_counter() - t0
    sweep._init_worker()  # the thread settings of a pool worker
    store = runs.Store(args.store)
    clock = Clock()
    _instrument(clock)
    for k in range(args.runs):
        overrides = dict(seed=args.seed + k)
        if args.model[0] != hparams.erm(args.dataset[0], args.profile)["model"]:  # another model: its own defaults
            overrides.update(model=args.model[0], model_kw={})
        config = erm.default_config(args.dataset[0], args.profile, data_root=args.data_root,
                                    **{**overrides, **args.overrides})
        clock.totals, clock.stack = {}, []
        t = clock.last = time.perf_counter()
        runs.get("erm", config, erm.train, store)
        row = dict(clock.totals, total=time.perf_counter() - t)
        if k == 0:
            row["imports"] = imports
            if started is not None:
                row["start"] = t_main - started
            row["total"] += row.get("start", 0.0) + row["imports"]
        print("ROW " + json.dumps({"run": k + 1, **row}), flush=True)


def default_pairs(profile: str, models: list[str] | None, datasets: list[str] | None) -> list[tuple[str, str]]:
    """(model, dataset) pairs: each dataset with its profile model (or each model given, on its first dataset)."""
    from repro import hparams

    names = datasets or list(hparams.ERM[profile])
    own = {d: hparams.erm(d, profile)["model"] for d in names}
    if datasets:
        return [(m, d) for d in names for m in (models or [own[d]])]
    wanted = models or list(dict.fromkeys(own.values()))
    pairs = []
    for m in wanted:
        match = [d for d in names if own[d] == m] or names[:1]
        pairs.append((m, match[0]))
    return pairs


def table(model: str, dataset: str, rows: list[dict]) -> str:
    lines = []
    for row in rows:
        total = row["total"]
        title = f"{model} on {dataset}, run {row['run']}" + (" (fresh process)" if row["run"] == 1 else
                                                                " (same process: warm worker)")
        lines += [f"\n{title}: {total:.2f} s", f"| phase | s | % of run |", "|---|---:|---:|"]
        counted = 0.0
        for key, label in PHASES:
            if key in row and row[key] >= 0.0005:
                counted += row[key]
                lines.append(f"| {label} | {row[key]:.2f} | {100 * row[key] / total:.1f} |")
        rest = total - counted
        lines.append(f"| other (untimed) | {rest:.2f} | {100 * rest / total:.1f} |")
    return "\n".join(lines)


def _parse_sets(pairs: list[str]) -> dict:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            sys.exit(f"--set {pair!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--profile", default="cpu", choices=("smoke", "cpu", "paper"))
    p.add_argument("--model", nargs="+", help="models to profile (default: every model of the profile)")
    p.add_argument("--dataset", nargs="+", help="datasets (default: the first dataset of each model)")
    p.add_argument("--runs", type=int, default=2, help="runs per process (seeds 1, 2, ...): the second shows a warm worker")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="ERM config overrides")
    p.add_argument("--data-root", help="data root (default: a temporary folder; the twin is written there)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=1, help="seed of the first run")
    args = p.parse_args(argv)
    args.overrides = _parse_sets(args.set)
    if args.child:
        child(args)
        return 0
    from repro import hparams, synth

    if args.profile not in hparams.TWIN_PROFILES and not args.data_root:
        sys.exit(f"--profile {args.profile} reads real data: give --data-root")
    pairs = default_pairs(args.profile, args.model, args.dataset)
    with tempfile.TemporaryDirectory(prefix="erm-profile-") as tmp:
        data_root = args.data_root or os.path.join(tmp, "data")
        if args.profile in hparams.TWIN_PROFILES:
            synth.ensure(data_root, sorted({d for _, d in pairs}), scale=args.profile)
        print(f"profile {args.profile}, REPRO_THREADS={os.environ.get('REPRO_THREADS', '1')}, "
              f"load average {os.getloadavg()[0]:.2f}", flush=True)
        for model, dataset in pairs:
            cmd = [sys.executable, os.path.abspath(__file__), "--child", "--profile", args.profile, "--model", model,
                   "--dataset", dataset, "--runs", str(args.runs), "--seed", str(args.seed), "--data-root", data_root,
                   "--store", os.path.join(tmp, f"runs-{model}-{dataset}"), "--set", *args.set]
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "REPRO_PROGRESS": "0"})
            if proc.returncode != 0:
                sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
                return proc.returncode
            rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
            print(table(model, dataset, rows), flush=True)
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
