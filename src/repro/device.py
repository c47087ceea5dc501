"""The torch device of this process: `auto` (CUDA, then MPS, else CPU), chosen by REPRO_DEVICE, `--device` or a
section's `device` parameter. An execution detail: it never enters a run's config or id, but every run records
`describe()` in its meta.json and every page shows it.
"""
from __future__ import annotations

import contextlib
import os
import platform
from pathlib import Path

from repro import files

ENV = "REPRO_DEVICE"
THREADS_ENV = "REPRO_THREADS"  # CPU threads of one run (default 1: parallelism comes from sweep workers)
LOADER_WORKERS_ENV = "REPRO_LOADER_WORKERS"  # DataLoader worker processes of a run reading image files
PIXEL_CACHE_ENV = "REPRO_PIXEL_CACHE"  # 0: DataLoader workers decode image files instead of reading cached pixels
DETERMINISTIC_ENV = "REPRO_DETERMINISTIC"  # 1: deterministic CUDA kernels, cudnn.benchmark off
RUNS_PER_GPU_ENV = "REPRO_RUNS_PER_GPU"  # sweep runs sharing one GPU: a number, or "auto" (repro.sweep)
RUNS_PER_GPU_MAX = 16
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
    fixed = deterministic()
    torch.backends.cudnn.benchmark = not fixed
    torch.backends.cudnn.deterministic = fixed
    if fixed:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def deterministic() -> bool:
    """Whether REPRO_DETERMINISTIC asks for deterministic kernels."""
    return os.environ.get(DETERMINISTIC_ENV, "") not in ("", "0")


def runs_per_gpu(value=None) -> int | str:
    """How many sweep runs share one GPU: `value` (a whole number or "auto"), else $REPRO_RUNS_PER_GPU, else 1.
    "auto" is resolved by repro.sweep from the memory `repro bench` measured; ValueError naming the setting
    otherwise."""
    where = "runs_per_gpu"
    if value is None or value == "":
        value, where = os.environ.get(RUNS_PER_GPU_ENV, ""), RUNS_PER_GPU_ENV
        if value == "":
            return 1
    if value == "auto":
        return "auto"
    text = str(value)
    if isinstance(value, bool) or not (text.isascii() and text.isdigit() and 1 <= int(text) <= RUNS_PER_GPU_MAX):
        raise ValueError(f"{where}={files.quote(value)}: expected a whole number in 1..{RUNS_PER_GPU_MAX} or 'auto' "
                         f"(runs sharing one GPU); fix or unset it")
    return int(text)


@contextlib.contextmanager
def host_reads(log: list):
    """Record in `log` every read of a tensor's value by the host (`.item()`, `float()`, `bool()`, `.tolist()`:
    torch's _local_scalar_dense) and every op whose output shape depends on the data (nonzero, masked_select,
    unique, indexing by a boolean mask) inside the body, as (op, innermost frame outside torch). On a GPU each
    of these waits for the device; on a CPU this is the stand-in of torch.cuda.set_sync_debug_mode, which sees
    only CUDA work. (Copies to a GPU that block are syncs too, which a CPU cannot see.)"""
    import traceback

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    reads = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2", "unique_consecutive"}

    class Reads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            name = func.overloadpacket.__name__
            if name == "index" and any(getattr(i, "dtype", None) == torch.bool for i in args[1]):
                name = "index by a boolean mask"  # x[mask]: its shape is the mask's count
            if name in reads or name.startswith("index by"):
                frames = [f for f in traceback.extract_stack()[:-1] if "/torch/" not in f.filename]
                log.append((name, f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"))
            return func(*args, **(kwargs or {}))

    with Reads():
        yield log


def gpu_ids() -> list[str]:
    """The CUDA GPUs this process may hand to sweep workers (ids as CUDA_VISIBLE_DEVICES names them); empty
    when the requested device is not CUDA or there is no GPU."""
    if requested() in ("cpu", "mps"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    visible = [v for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:count] if visible else [str(i) for i in range(count)]
