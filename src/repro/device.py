"""The torch device of this process: `auto` (CUDA, then MPS, else CPU), chosen by REPRO_DEVICE, `--device` or a
section's `device` parameter. An execution detail: it never enters a run's config or id, but every run records
`describe()` in its meta.json and every page shows it.
"""
from __future__ import annotations

import os
import platform

ENV = "REPRO_DEVICE"
CHOICES = ("auto", "cpu", "cuda", "mps")  # and "cuda:N"


def _check(name: str) -> str:
    name = str(name).strip().lower()
    base, _, index = name.partition(":")
    if base not in CHOICES or (index and (base != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {name!r}; choose one of {', '.join(CHOICES)} or cuda:N "
                         f"(set by --device, the {ENV} variable or a section's `device` parameter)")
    return name


def select(name: str | None) -> str:
    """Make `name` the device of this process and of the worker processes it starts (through REPRO_DEVICE).

    An empty name or None keeps what is set (REPRO_DEVICE, else auto). Returns the requested name."""
    if name:
        os.environ[ENV] = _check(name)
    return requested()


def requested() -> str:
    """The device asked for: REPRO_DEVICE, else "auto"."""
    return _check(os.environ.get(ENV) or "auto")


def resolve(name: str | None = None):
    """The torch.device to run on: `name`, else REPRO_DEVICE, else auto (CUDA, then MPS, else CPU)."""
    import torch

    name = _check(name) if name else requested()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was requested but torch sees no CUDA GPU "
                         f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use --device cpu or auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device 'mps' was requested but MPS is not available here; use --device cpu or auto")
    return torch.device(name)


def describe(device=None) -> dict:
    """What a run records about where it ran: device, its name, torch/CUDA versions and the CPU thread count."""
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
            "threads": torch.get_num_threads()}
