"""Provenance of an executed page: profile, parameters, code version, library versions, device, timing.

Every notebook calls `start(profile, params_yaml)` after its parameters and `finish(record)` as its last
cell; `finish` displays a Markdown table, so every page of the book says how it was made. The table also
says whether the installed packages are those of `requirements.lock` (the environment `make` installs), and
`warn_environment()` prints one warning line per package that differs (the book build calls it once).
"""
from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

from . import __version__


@dataclass
class Record:
    profile: str
    params_yaml: str
    started: str
    t0: float
    info: dict = field(default_factory=dict)


ROOT = Path(__file__).resolve().parents[2]  # the repository root of an editable install
LOCK = ROOT / "requirements.lock"
SHOWN_MISMATCHES = 8  # the provenance row names this many differing packages, then counts the rest


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def canonical_name(name: str) -> str:
    """PEP 503 normal form of a distribution name (`PyYAML` and `pyyaml` are one package)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path = LOCK) -> dict[str, str]:
    """Package -> version of every `name==version` line of a pip-compile lock file (hash lines skipped)."""
    pins = {}
    for line in Path(path).read_text().splitlines():
        match = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)", line)
        if match:
            pins[canonical_name(match[1])] = match[2]
    if not pins:
        raise ValueError(f"{path}: no `name==version` lines; regenerate it with `make lock`")
    return pins


def installed() -> dict[str, str]:
    """Package -> version of every distribution importable here (the first on sys.path wins, as for import)."""
    found = {}
    for dist in metadata.distributions():
        found.setdefault(canonical_name(dist.metadata["Name"] or ""), dist.version)
    return found


def _same_version(have: str, pinned: str) -> bool:
    """As pip's `==`: a pin without a local label matches any local build of it (2.14.1+cu130 == 2.14.1)."""
    from packaging.version import InvalidVersion, Version

    try:
        have_v, pinned_v = Version(have), Version(pinned)
    except InvalidVersion:
        return have == pinned
    return have_v == pinned_v or (not pinned_v.local and have_v.public == pinned_v.public)


def lock_mismatches(pins: dict[str, str], have: dict[str, str]) -> list[tuple[str, str, str]]:
    """(package, installed version or 'not installed', locked version) for every pin that is not met."""
    return [(name, have.get(name, "not installed"), version) for name, version in sorted(pins.items())
            if name not in have or not _same_version(have[name], version)]


def lock_problems(pyproject: Path = ROOT / "pyproject.toml", lock: Path = LOCK) -> list[str]:
    """Each requirement of pyproject.toml (dependencies and every extra) that the lock misses or pins outside
    its range; empty when the lock satisfies pyproject.toml."""
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads(Path(pyproject).read_text())["project"]
    extras = [r for group in project.get("optional-dependencies", {}).values() for r in group]
    pins, problems = read_lock(lock), []
    for req in map(Requirement, project.get("dependencies", []) + extras):
        pinned = pins.get(canonical_name(req.name))
        if pinned is None:
            problems.append(f"{req} (missing)")
        elif not req.specifier.contains(pinned, prereleases=True):
            problems.append(f"{req} (lock {pinned})")
    return problems


def check_lock(pyproject: Path = ROOT / "pyproject.toml", lock: Path = LOCK) -> int:
    """`make` calls this after installing: one stderr line and exit code 2 when the lock is older than
    pyproject.toml's requirements, else 0."""
    problems = lock_problems(pyproject, lock)
    if problems:
        print(f"error: {lock.name} does not satisfy pyproject.toml: {', '.join(problems)}; run `make lock` and "
              f"commit {lock.name}", file=sys.stderr)
    return 2 if problems else 0


def environment(lock: Path = LOCK) -> str:
    """One provenance cell: does the installed environment match the lock file?"""
    if not lock.is_file():
        return f"no {lock.name} next to the package (installed outside a checkout): not checked"
    pins = read_lock(lock)
    bad = lock_mismatches(pins, installed())
    if not bad:
        return f"matches {lock.name} ({len(pins)} packages)"
    shown = ", ".join(f"{name} {have} (lock {want})" for name, have, want in bad[:SHOWN_MISMATCHES])
    more = f", and {len(bad) - SHOWN_MISMATCHES} more" if len(bad) > SHOWN_MISMATCHES else ""
    return f"differs from {lock.name} in {len(bad)} of {len(pins)} packages: {shown}{more}"


def warn_environment(lock: Path = LOCK, stream=None) -> int:
    """Print one warning line per package that differs from the lock (to stderr); return their number."""
    if not lock.is_file():
        return 0
    bad = lock_mismatches(read_lock(lock), installed())
    for name, have, want in bad:
        print(f"warning: {name} {have} is installed but {lock.name} pins {want}; the numbers of this build "
              f"may differ from the locked environment's (`make env` installs the lock)", file=stream or sys.stderr)
    return len(bad)


def device() -> str:
    """The device this page's runs use (repro.device: REPRO_DEVICE, --device or the `device` parameter), its
    name, the CUDA version and the CPU threads of one run."""
    from repro import device as devices

    info = devices.describe()
    cuda = f", CUDA {info['cuda']}" if info["device"].startswith("cuda") else ""
    return f"{info['device']} ({info['device_name']}{cuda}; {info['threads']} thread(s) per run)"


def collect() -> dict:
    """Code and environment facts: git commit and dirty flag, library versions, lock agreement, device."""
    commit = _git("rev-parse", "--short=12", "HEAD") or "unknown (not a git checkout)"
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no"))
    info = {"git commit": commit + (" (dirty: uncommitted changes)" if dirty else " (clean)"),
            "python": platform.python_version()}
    for package in ("torch", "torchvision", "transformers"):
        info[package] = _version(package)
    # The code that runs (an editable install, a wheel or PYTHONPATH=src), whatever the distribution is called.
    info["repro"] = __version__
    info["environment"] = environment()
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
