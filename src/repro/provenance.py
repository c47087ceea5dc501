"""Provenance of an executed page: profile, parameters, code version, library versions, device, timing.

Every notebook calls `start(profile, params_yaml)` after its parameters and `finish(record)` as its last
cell; `finish` displays a Markdown table, so every page of the book says how it was made.
"""
from __future__ import annotations

import datetime as dt
import platform
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path


@dataclass
class Record:
    profile: str
    params_yaml: str
    started: str
    t0: float
    info: dict = field(default_factory=dict)


def _git(*args: str) -> str:
    root = Path(__file__).resolve().parents[2]
    try:
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda: {torch.cuda.get_device_name(0)}"
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def collect() -> dict:
    """Code and environment facts: git commit and dirty flag, library versions, device."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    info = {"git commit": commit + (" (dirty: uncommitted changes)" if dirty else " (clean)"),
            "python": platform.python_version()}
    for package in ("torch", "torchvision", "transformers", "repro"):
        info[package] = _version(package)
    info["device"] = device()
    return info


def start(profile: str, params_yaml: str = "") -> Record:
    """Begin a page's record (call right after the parameters cell)."""
    now = dt.datetime.now(dt.timezone.utc)
    return Record(profile, params_yaml, now.strftime("%Y-%m-%d %H:%M:%S UTC"), time.time(), collect())


def markdown(record: Record) -> str:
    rows = [("profile", record.profile), *record.info.items(), ("started", record.started),
            ("wall time", f"{time.time() - record.t0:.1f} s")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    params = record.params_yaml.strip() or "{}  # template defaults"
    return (f"**Provenance of this page**\n\n| item | value |\n|---|---|\n{table}\n\n"
            f"Parameters (`params/{record.profile}/`, YAML):\n\n```yaml\n{params}\n```\n")


def finish(record: Record) -> None:
    """Display the provenance table (the last cell of every notebook)."""
    from IPython.display import Markdown, display

    display(Markdown(markdown(record)))
