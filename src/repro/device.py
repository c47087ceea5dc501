"""The torch device of this process: `auto` (CUDA, then MPS, else CPU), chosen by REPRO_DEVICE, `--device` or a
section's `device` parameter. An execution detail: it never enters a run's config or id, but every run records
`describe()` in its meta.json and every page shows it.
"""
from __future__ import annotations

import contextlib
import os
import platform

from repro import files

ENV = "REPRO_DEVICE"
THREADS_ENV = "REPRO_THREADS"  # CPU threads of one run (default 1: parallelism comes from sweep workers)
LOADER_WORKERS_ENV = "REPRO_LOADER_WORKERS"  # DataLoader worker processes of a run reading image files
PIXEL_CACHE_ENV = "REPRO_PIXEL_CACHE"  # 0: DataLoader workers decode image files instead of reading cached pixels
DETERMINISTIC_ENV = "REPRO_DETERMINISTIC"  # 1: deterministic CUDA kernels, cudnn.benchmark off
RUNS_PER_GPU_ENV = "REPRO_RUNS_PER_GPU"  # k: a local pool puts k runs at once on each GPU (repro.sweep.pool)
CHOICES = ("auto", "cpu", "cuda", "mps")  # and "cuda:N"


def check(name: str) -> str:
    """The device name, lower case; ValueError unless it is one of CHOICES or cuda:N."""
    name = str(name).strip().lower()
    base, _, index = name.partition(":")
    if base not in CHOICES or (index and (base != "cuda" or not (index.isascii() and index.isdigit()))):
        raise ValueError(f"unknown device {files.quote(name)}; choose one of {', '.join(CHOICES)} or cuda:N "
                         f"(set by --device, the {ENV} variable or a section's `device` parameter)")
    return name


def select(name: str | None) -> str:
    """Make `name` the device of this process and of the worker processes it starts (through REPRO_DEVICE).

    An empty name or None keeps what is set (REPRO_DEVICE, else auto). Returns the requested name."""
    if name:
        os.environ[ENV] = check(name)
    return requested()


def requested() -> str:
    """The device asked for: REPRO_DEVICE, else "auto"."""
    return check(os.environ.get(ENV) or "auto")


def resolve(name: str | None = None):
    """The torch.device to run on: `name`, else REPRO_DEVICE, else auto (CUDA, then MPS, else CPU)."""
    import torch

    name = check(name) if name else requested()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto")
    if name == "mps" and not mps:
        raise ValueError("device 'mps' was requested but MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def describe(device=None) -> dict:
    """What a run records about where it ran: device, its name, torch/CUDA versions and the CPU threads of a run."""
    import torch

    device = resolve() if device is None else torch.device(device)
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = "Apple MPS"
    else:
        name = platform.processor() or platform.machine()
    return {"device": str(device), "device_name": name, "torch": torch.__version__,
            "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
            "threads": run_threads_count()}


def run_threads_count() -> int:
    """Intra-op CPU threads of one run: $REPRO_THREADS, else 1.

    Fixed per run, never taken from the machine, so that a config gives the same bits whether it runs
    serially or in a pool of workers (the count can change floating-point reduction order on a CPU)."""
    return env_count(THREADS_ENV, 1, 1, "a number of threads")


def loader_workers() -> int:
    """DataLoader worker processes for file-backed images (repro.inputs): $REPRO_LOADER_WORKERS, else
    min(8, CPUs - 1). An execution detail: batches do not depend on it."""
    return env_count(LOADER_WORKERS_ENV, max(0, min(8, (os.cpu_count() or 1) - 1)), 0, "a number of worker processes")


def runs_per_gpu() -> int:
    """Runs a local sweep pool puts at once on each CUDA GPU: $REPRO_RUNS_PER_GPU, else 1. An execution detail:
    packed workers use deterministic kernels (cudnn.benchmark's timed choices could differ between runs that
    share a GPU), so a packed run has the bits of a solo run with REPRO_DETERMINISTIC=1."""
    return env_count(RUNS_PER_GPU_ENV, 1, 1, "a number of runs per GPU")


def pixel_cache() -> bool:
    """Whether file-backed images are read from decoded-pixel caches next to the data (repro.pixels):
    $REPRO_PIXEL_CACHE, 1 unless it is 0. An execution detail: batches do not depend on it."""
    value = os.environ.get(PIXEL_CACHE_ENV, "")
    if value not in ("", "0", "1"):
        raise ValueError(f"{PIXEL_CACHE_ENV}={files.quote(value)}: expected 0 or 1; fix or unset the variable")
    return value != "0"


def env_count(name: str, default: int, low: int, what: str, high: int = 1024) -> int:
    """The whole number (ASCII digits, low..high) in environment variable `name`, else `default` when it is unset
    or empty; ValueError naming the variable otherwise."""
    value = os.environ.get(name, "")
    if value == "":
        return default
    if not (value.isascii() and value.isdigit() and len(value) <= 6 and low <= int(value) <= high):
        raise ValueError(f"{name}={files.quote(value)}: expected {what}, a whole number in {low}..{high} "
                         f"(digits 0-9); fix or unset the variable")
    return int(value)


@contextlib.contextmanager
def run_threads():
    """Run the body with run_threads_count() torch threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(run_threads_count())
    try:
        yield
    finally:
        torch.set_num_threads(before)


def configure(device) -> None:
    """Backend switches for a run on `device`: cudnn.benchmark on CUDA unless REPRO_DETERMINISTIC=1, which
    asks for deterministic kernels instead (slower; results then repeat bit for bit on one GPU)."""
    import torch

    if torch.device(device).type != "cuda":
        return
    deterministic = os.environ.get(DETERMINISTIC_ENV, "") not in ("", "0")
    torch.backends.cudnn.benchmark = not deterministic
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def gpu_ids() -> list[str]:
    """The CUDA GPUs this process may hand to sweep workers (ids as CUDA_VISIBLE_DEVICES names them); empty
    when the requested device is not CUDA or there is no GPU."""
    if requested() in ("cpu", "mps"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]
