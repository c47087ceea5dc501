"""Content-addressed run store: a run is a directory named by the hash of its kind, config and code version.

Layout (DomainBed-like): ROOT/<kind>/<run_id>/ holds config.json, metrics.json, meta.json (wall time),
the run's artifacts, and a `done` marker written last. A run is computed in a temporary directory
ROOT/<kind>/.tmp-<run_id>-<pid>-<rand> and renamed into place, so a directory named by a run id is
either finished or left over from an older crash (then it is removed and the run redone).

CODE_VERSIONS holds one integer per kind. Bump it by hand when a change to the code that computes that
kind changes its results (e.g. a fix in erm.train): every run id of that kind changes, so old results are
no longer found and are recomputed; the old directories stay on disk until deleted.
Notebooks read results only through `load(kind, **filters)`.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

# Bump by hand when the code that computes a kind changes its results (see module docstring).
CODE_VERSIONS: dict[str, int] = {"erm": 1}

STALE_TMP_SECONDS = 24 * 3600  # a temp dir of another host is considered abandoned after this long


@dataclass(frozen=True)
class Store:
    """A run store rooted at `root` (a directory; created on first write)."""

    root: Path

    def __init__(self, root: str | os.PathLike | None = None):
        object.__setattr__(self, "root", Path(root) if root is not None else default_root())


def default_root() -> Path:
    """$REPRO_RUNS, else <repo>/runs where <repo> is the nearest parent of the cwd with pyproject.toml."""
    if os.environ.get("REPRO_RUNS"):
        return Path(os.environ["REPRO_RUNS"])
    here = Path.cwd().resolve()
    for parent in (here, *here.parents):
        if (parent / "pyproject.toml").exists():
            return parent / "runs"
    return here / "runs"


def _store(store: Store | str | os.PathLike | None) -> Store:
    return store if isinstance(store, Store) else Store(store)


def _check_kind(kind: str) -> None:
    if kind not in CODE_VERSIONS:
        raise ValueError(f"unknown run kind {kind!r}; registered kinds: {', '.join(sorted(CODE_VERSIONS))} "
                         "(add it to repro.runs.CODE_VERSIONS with version 1)")


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def run_id(kind: str, config: dict) -> str:
    """16 hex digits of sha256 over {"kind", "config", "code": CODE_VERSIONS[kind]}."""
    _check_kind(kind)
    try:
        text = canonical_json({"kind": kind, "config": config, "code": CODE_VERSIONS[kind]})
    except TypeError as err:
        raise ValueError(f"config of kind {kind!r} is not JSON-able ({err}); use plain numbers, strings, "
                         "lists and dicts") from None
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir(kind: str, config_or_id: dict | str, store=None) -> Path:
    """Directory of a run (finished or not) given its config or its run id."""
    rid = config_or_id if isinstance(config_or_id, str) else run_id(kind, config_or_id)
    return _store(store).root / kind / rid


def is_done(path: Path) -> bool:
    return (Path(path) / "done").exists()


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temp file in the same directory, then os.replace)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=True, allow_nan=True))
    os.replace(tmp, path)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale(kind_dir: Path, rid: str) -> None:
    """Remove temp dirs of `rid` left by dead processes, and a final dir that lacks `done`."""
    final = kind_dir / rid
    if final.exists() and not is_done(final):
        shutil.rmtree(final, ignore_errors=True)
    for tmp in kind_dir.glob(f".tmp-{rid}-*"):
        try:
            owner = json.loads((tmp / ".owner").read_text())
        except (OSError, ValueError):
            owner = {}
        same_host = owner.get("host") == socket.gethostname()
        if (same_host and not _pid_alive(int(owner.get("pid", -1)))) or \
                (not same_host and time.time() - tmp.stat().st_mtime > STALE_TMP_SECONDS):
            shutil.rmtree(tmp, ignore_errors=True)


def get(kind: str, config: dict, compute: Callable[[dict, Path], dict], store=None) -> Path:
    """Directory of the finished run of (kind, config); computes it first if it is missing.

    compute(config, workdir) -> metrics dict (JSON-able) writes its artifacts into workdir.
    """
    rid = run_id(kind, config)
    kind_dir = _store(store).root / kind
    final = kind_dir / rid
    if is_done(final):
        return final
    kind_dir.mkdir(parents=True, exist_ok=True)
    _clean_stale(kind_dir, rid)
    tmp = kind_dir / f".tmp-{rid}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.mkdir()
    write_json(tmp / ".owner", {"host": socket.gethostname(), "pid": os.getpid()})
    write_json(tmp / "config.json", config)
    start = time.time()
    try:
        metrics = compute(config, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not isinstance(metrics, dict):
        shutil.rmtree(tmp, ignore_errors=True)
        raise ValueError(f"compute for kind {kind!r} returned {type(metrics).__name__}; it must return a dict")
    write_json(tmp / "metrics.json", metrics)
    write_json(tmp / "meta.json", {"kind": kind, "run_id": rid, "code": CODE_VERSIONS[kind],
                                   "wall_s": time.time() - start, "finished": time.time()})
    (tmp / ".owner").unlink()
    (tmp / "done").write_text("")
    try:
        if final.exists() and not is_done(final):
            shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)  # a finished copy appeared meanwhile: keep that one
        if not is_done(final):
            raise
    return final


def read_config(kind: str, rid: str, store=None) -> dict:
    return json.loads((run_dir(kind, rid, store) / "config.json").read_text())


def read_metrics(kind: str, rid: str, store=None) -> dict:
    """metrics.json of a finished run; FileNotFoundError if the run is not finished."""
    path = run_dir(kind, rid, store)
    if not is_done(path):
        raise FileNotFoundError(f"run {kind}/{rid} is not finished in {path.parent}; compute it with runs.get")
    return json.loads((path / "metrics.json").read_text())


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _matches(value, wanted) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, (tuple, set, frozenset)):
        return value in wanted
    return value == wanted


def load(kind: str, store=None, **filters) -> pd.DataFrame:
    """One row per finished run of `kind`: run_id, path, wall_s, config keys (dotted), then metrics.

    Scalar metrics become columns (a metric whose name clashes with a config key is named "metric.<name>");
    list and dict metrics are kept as Python objects. A filter key=value keeps rows whose column equals
    value; a tuple/set value means "one of", a callable value is a predicate.
    """
    _check_kind(kind)
    rows = []
    for path in sorted((_store(store).root / kind).glob("*/done")):
        path = path.parent
        config = _flatten(json.loads((path / "config.json").read_text()))
        metrics = json.loads((path / "metrics.json").read_text())
        meta_file = path / "meta.json"
        meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
        row = {"run_id": path.name, "path": str(path), "wall_s": meta.get("wall_s"), **config}
        for key, value in metrics.items():
            row[f"metric.{key}" if key in row else key] = value
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else ["run_id", "path", "wall_s"])
    for key, wanted in filters.items():
        if df.empty:
            break
        if key not in df.columns:
            raise ValueError(f"unknown filter {key!r} for kind {kind!r}; columns: {', '.join(df.columns)}")
        df = df[[_matches(v, wanted) for v in df[key]]]
    return df.reset_index(drop=True)
