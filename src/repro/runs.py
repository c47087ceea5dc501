"""The run store and the one registry of run kinds: a run is a directory named by the hash of its kind, config
and code version.

Layout (DomainBed-like): ROOT/<kind>/<run_id>/ holds config.json, metrics.json, meta.json (wall time, host,
device), the run's artifacts, manifest.json (every file's size and sha256) and a `done` marker written last.

Guarantees (book/manual_failures.md):
- Atomic: a run is computed in ROOT/<kind>/.tmp-<run_id>-<pid>-<rand> and renamed into place, so a directory
  named by a run id is complete or left over from an older crash (then it is removed and the run redone).
- Verified: `get` and `load` serve a finished run only if its config hashes to its id, it has a manifest,
  every file of the manifest has the recorded size and its .json files their sha256; a large artifact is
  checked against its sha256 when it is read (`artifact`, once per process and file version);
  `verify_store` (`repro runs verify`) checks every sha256. A run failing a check is redone, saying why.
- Claimed: `get` computes a run while holding ROOT/<kind>/.lock-<run_id> (fcntl.flock, which the kernel
  releases when the holder dies, even by SIGKILL; the file names the holder's host and pid). A second process
  asking for the same run waits, then reads the first one's result; nothing is computed twice.
- Strict JSON: NaN and infinities are written as null and read back as NaN.

KINDS registers every run kind once: its compute function, its code version and the artifacts a finished run
must hold (sweeps, `get` and `repro runs verify` all read it). Bump a kind's version by hand when a change to
the code that computes it changes its results (e.g. a fix in erm.train): every run id of that kind changes, so
old results are no longer found and are recomputed; the old directories stay on disk until deleted.
Notebooks read results only through `load(kind, **filters)`.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import importlib
import json
import math
import os
import secrets
import shutil
import socket
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pandas as pd

from repro import files


@dataclass(frozen=True)
class Kind:
    """A run kind. compute(config, workdir) -> metrics writes the run's artifacts into workdir; given as a
    function or a "module:function" string (imported on first use, so that reading the store imports no
    training code). version: bump by hand when results change. artifacts(metrics) -> file names a finished run
    must hold besides config.json and metrics.json. batch (optional, "module:function"): batch(configs, store) ->
    one compute per config, for configs that share the values of `group_by` and are cheaper computed together.
    rough_seconds: the estimate of one run when the store has none of its kind yet. prepare (optional, a pair of
    "module:function"s): (select, make): select(configs) -> configs of inputs several runs share (one each),
    make(config) computes one; a pooled sweep runs the makes first, in parallel, then the runs."""
    compute: Callable | str
    version: int
    artifacts: Callable[[dict], list[str]] = lambda metrics: []
    batch: str | None = None
    group_by: tuple[str, ...] = ()
    rough_seconds: float = 10.0
    prepare: tuple[str, str] | None = None


def _erm_artifacts(metrics: dict) -> list[str]:
    """A checkpoint and a feature cache per saved epoch (repro.erm, repro.features)."""
    return [f"{what}_epoch{e}.safetensors" for e in metrics.get("saved_epochs", []) for what in ("checkpoint", "features")]


KINDS: dict[str, Kind] = {
    # erm 2: group-ratio subsets round each group's count up (paper's code); heads 2: AFR's N / n_c weights;
    # svm 2: the exact hard-margin SVM with a bias (None where the held-out features are not separable);
    # erm 3: a text top trained over a cached trunk with a [CLS] pool computes its last layer for the first
    # token only (models.first_token_layer: the same law, other float rounding and dropout draws);
    # erm 4, heads 3, svm 3: a twin's test average accuracy is weighted by the real test proportions
    # (repro.data); every split's summary counts the classes predicted (pred_classes); dfr_l1's tuning halves
    # are stratified by group; svm paths record the held-out set's size and dimension;
    # erm 5: fused AdamW, a first-token top layer that never projects keys and values, image trunk caches in
    # channels-last memory, evaluation predicting each example once (the same functions, other float rounding);
    # erm 6: EfficientNet-Lite's head unit as a matrix product over pixels (models.PointwiseHead) and text trunk
    # states computed, and cached texts evaluated, in batches sorted by length (trunk FORMAT 3): the same functions,
    # other float rounding
    "erm": Kind("repro.erm:train", 6, _erm_artifacts, rough_seconds=8.0,
                prepare=("repro.erm:trunk_warmups", "repro.erm:warm_trunk")),
    "heads": Kind("repro.heads:compute_head", 3, lambda metrics: ["head.safetensors"], batch="repro.heads:fit_batch",
                  group_by=("erm", "epochs", "lr", "batch_size"), rough_seconds=2.0),  # one head on cached features
    "svm": Kind("repro.heads:svm_path", 3, rough_seconds=2.0),
}

MANIFEST = "manifest.json"
UNLISTED = ("done", MANIFEST, ".owner")  # files of a run directory that the manifest does not list


class StoreError(ValueError):
    """The run store cannot be used as it is (a file in the way, not writable); the message says how to fix it."""


@dataclass(frozen=True)
class Store:
    """A run store rooted at `root` (a directory; created on first write)."""

    root: Path

    def __init__(self, root: str | os.PathLike | None = None):
        object.__setattr__(self, "root", Path(root) if root is not None else default_root())


def default_root() -> Path:
    """$REPRO_RUNS, else the runs/ folder of the repository (files.find_tree: the nearest checkout above the
    current directory, else the one the package is imported from), whatever folder the caller is in."""
    if os.environ.get("REPRO_RUNS"):
        return Path(os.environ["REPRO_RUNS"])
    tree = files.find_tree()
    if tree is None:
        raise StoreError("cannot find the run store: not inside a checkout of the repository and the package is "
                         "not imported from one; set REPRO_RUNS to the run store folder")
    return tree / "runs"


def _store(store: Store | str | os.PathLike | None) -> Store:
    return store if isinstance(store, Store) else Store(store)


def registered(kind: str) -> Kind:
    """The Kind registered as `kind`; ValueError naming the registered kinds otherwise."""
    if kind not in KINDS:
        raise ValueError(f"unknown run kind {kind!r}; registered kinds: {', '.join(sorted(KINDS))} "
                         "(add a Kind to repro.runs.KINDS with version 1)")
    return KINDS[kind]


def import_function(function: Callable | str) -> Callable:
    """A function, or the function a "module:function" string names (imported now)."""
    if callable(function):
        return function
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


def compute_function(kind: str) -> Callable:
    """The registered compute(config, workdir) -> metrics of `kind`."""
    return import_function(registered(kind).compute)


def canonical_json(obj) -> str:
    """JSON with sorted keys and no whitespace: the text that is hashed."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _digest(kind: str, config: dict, code) -> str:
    text = canonical_json({"kind": kind, "config": config, "code": code})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_id(kind: str, config: dict) -> str:
    """16 hex digits of sha256 over {"kind", "config", "code": KINDS[kind].version}."""
    version = registered(kind).version
    try:
        return _digest(kind, config, version)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config of kind {kind!r} is not JSON-able ({err}); use plain numbers, strings, "
                         "lists and dicts") from None


def run_dir(kind: str, config_or_id: dict | str, store=None) -> Path:
    """Directory of a run (finished or not) given its config or its run id."""
    rid = config_or_id if isinstance(config_or_id, str) else run_id(kind, config_or_id)
    return _store(store).root / kind / rid


def is_done(path: Path) -> bool:
    """Whether the run directory `path` holds a finished run that passes check_run (sizes, config hash)."""
    return _marked(path) and check_run(path) is None


def _marked(path: Path) -> bool:
    return (Path(path) / "done").exists()


# ------------------------------------------------------------------------------------ strict JSON files

def _nan_to_null(obj):
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_null(v) for v in obj]
    return obj


def _null_to_nan(obj):
    if obj is None:
        return math.nan
    if isinstance(obj, dict):
        return {k: _null_to_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_null_to_nan(v) for v in obj]
    return obj


def write_json(path: Path, obj) -> None:
    """Write strict JSON (NaN and infinities as null) atomically: a temp file in the same directory, then
    os.replace."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(_nan_to_null(obj), indent=1, sort_keys=True, allow_nan=False))
    os.replace(tmp, path)


def sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_manifest(folder: Path) -> dict:
    """Record every file of a run directory (but `done`, the manifest, `.owner`) with its size and sha256."""
    folder = Path(folder)
    files = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": sha256(p)}
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in UNLISTED}
    write_json(folder / MANIFEST, {"files": files})
    return files


def check_run(path, kind: str | None = None, deep: bool = False) -> str | None:
    """Why the run directory `path` cannot be served as finished, or None if it can.

    Checks: `done` present; config.json hashes to the directory's name (with the code version in meta.json);
    a manifest.json that lists config.json, metrics.json and the kind's artifacts; every listed file present
    with its recorded size; the small files (.json) always, and with deep=True every file, against their sha256.
    Large artifacts are checked against their sha256 when they are read (`artifact`)."""
    return _inspect(Path(path), kind or Path(path).parent.name, deep)[0]


def _inspect(path: Path, kind: str, deep: bool = False) -> tuple[str | None, dict[str, bytes]]:
    """(why the run cannot be served or None, {name: bytes} of its .json files, read once and checked)."""
    if not path.is_dir():
        return "a file, not a run folder", {}
    if not _marked(path):
        return "unfinished (no done marker)", {}
    problem, texts = _identity(path, kind)
    if problem is None:
        problem = _against_manifest(path, kind, texts, deep)
    return (None, texts) if problem is None else (problem, {})


def _identity(path: Path, kind: str) -> tuple[str | None, dict[str, bytes]]:
    """Read config.json, meta.json (if any), metrics.json and the manifest of a finished run, and check that the
    config hashes to the run's id: (why not, or None; {name: bytes})."""
    try:
        texts = {name: (path / name).read_bytes() for name in ("config.json", "meta.json", MANIFEST)
                 if name != "meta.json" or (path / name).exists()}
        config, meta = json.loads(texts["config.json"]), json.loads(texts.get("meta.json", b"{}"))
    except FileNotFoundError as err:
        if Path(err.filename).name == MANIFEST:
            return f"no {MANIFEST} (deleted, or written before manifests existed): its files cannot be checked", {}
        return f"{Path(err.filename).name} is missing", {}
    except (OSError, ValueError) as err:
        return f"config.json or meta.json unreadable ({type(err).__name__})", {}
    try:
        digest = _digest(kind, config, meta.get("code", KINDS[kind].version if kind in KINDS else None))
    except (TypeError, ValueError, AttributeError):
        digest = None
    if digest != path.name:
        return f"config.json hashes to {digest}, not to its run id (edited by hand?)", {}
    try:
        texts["metrics.json"] = (path / "metrics.json").read_bytes()
    except OSError as err:
        return f"metrics.json unreadable ({type(err).__name__})", {}
    return None, texts


def _against_manifest(path: Path, kind: str, texts: dict[str, bytes], deep: bool) -> str | None:
    """Why the files of a run are not those its manifest lists (sizes; sha256s of the .json files in `texts`, and
    with deep=True of every file), or None; adds the other listed .json files to `texts`."""
    try:
        artifacts = KINDS[kind].artifacts(json.loads(texts["metrics.json"])) if kind in KINDS else []
        listed = {name: (int(info["bytes"]), str(info["sha256"]))
                  for name, info in json.loads(texts.pop(MANIFEST))["files"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        return f"metrics.json or {MANIFEST} unreadable ({type(err).__name__})"
    missing = [name for name in artifacts if not (path / name).is_file()]
    if missing:
        return f"artifact {missing[0]} is missing (a {kind} run must hold {', '.join(artifacts)})"
    for name in (*texts, *artifacts):
        if name not in listed:
            return f"{MANIFEST} does not list {name}"
    for name, (size, digest) in listed.items():
        if name.endswith(".json") and name not in texts and (path / name).is_file():
            texts[name] = (path / name).read_bytes()
        problem = _mismatch(path / name, size, digest, texts.get(name), deep or name.endswith(".json"))
        if problem:
            return problem
    return None


def _mismatch(file: Path, size: int, digest: str, data: bytes | None = None, hashed: bool = True) -> str | None:
    """Why `file` (its bytes `data`, if already read) is not the manifest's (size, sha256), or None; the sha256
    is compared only if `hashed`."""
    try:
        actual = len(data) if data is not None else file.stat().st_size
    except FileNotFoundError:
        return f"{file.name} is missing"
    if actual != size:
        return f"{file.name} has {actual} bytes, the manifest says {size} (truncated?)"
    if hashed and (hashlib.sha256(data).hexdigest() if data is not None else sha256(file)) != digest:
        return f"{file.name} does not match its sha256 in the manifest (corrupt or edited)"
    return None


_VERIFIED: dict[str, tuple] = {}  # artifact path -> (size, mtime_ns, inode, sha256) this process has hashed


def forget_verified() -> None:
    """Forget which artifacts this process has checked, so that the next read hashes them again."""
    _VERIFIED.clear()


def artifact(path) -> Path:
    """`path`, a file of a run folder, once its run passes check_run and the file matches the sha256 of the
    run's manifest (hashed once per process and file version: path, size, mtime, inode). A run that fails is
    computed again first, with a line on stderr saying why. A file of an unfinished folder (a run being
    computed, not in the store) is returned unchecked; a damaged run whose config cannot be trusted is a
    ValueError."""
    path = Path(path)
    folder, kind = path.parent, path.parent.parent.name
    if not _marked(folder):
        return path
    problem = check_run(folder, kind) or _artifact_problem(path)
    if problem is None:
        return path
    try:
        config = json.loads((folder / "config.json").read_text())
        trusted = kind in KINDS and run_id(kind, config) == folder.name
    except (OSError, ValueError):
        trusted = False
    if not trusted:
        raise ValueError(f"run {kind}/{folder.name} in {folder.parent}: {problem}; `repro runs verify --fix` "
                         "removes it, and the next build recomputes it")
    return _claim(kind, config, None, Store(folder.parent.parent),
                  lambda final: check_run(final, kind) or _artifact_problem(final / path.name)) / path.name


def _artifact_problem(path: Path) -> str | None:
    """Why the file `path` of a finished run is not what its run's manifest lists, or None (cached per process)."""
    try:
        info = json.loads((path.parent / MANIFEST).read_bytes())["files"][path.name]
        size, digest, stat = int(info["bytes"]), str(info["sha256"]), path.stat()
    except KeyError:
        return f"{MANIFEST} does not list {path.name}"
    except (OSError, ValueError, TypeError) as err:
        return f"{path.name} or {MANIFEST} unreadable ({type(err).__name__})"
    key = (stat.st_size, stat.st_mtime_ns, stat.st_ino, digest)
    if _VERIFIED.get(str(path)) == key:
        return None
    problem = _mismatch(path, size, digest)
    if problem is None:
        _VERIFIED[str(path)] = key
    return problem


# ------------------------------------------------------------------------------------------ claims

_HELD: set[str] = set()  # lock files this process holds (a nested claim of the same run would deadlock)


def _holder_info(path: Path) -> tuple[str, int] | None:
    """(host, pid) that a lock file names, or None when it names none (being written, or removed)."""
    try:
        info = json.loads(path.read_text())
        return str(info["host"]), int(info["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _holder(path: Path) -> str:
    info = _holder_info(path)
    return f"{info[0]} pid {info[1]}" if info else "another process"


def _held_by_parent(path: Path) -> bool:
    """Whether the lock file names this process's parent as holder, this process being a multiprocessing child
    (a spawned pool worker that re-imports a script without a __main__ guard would otherwise wait forever)."""
    import multiprocessing
    return multiprocessing.parent_process() is not None and _holder_info(path) == (socket.gethostname(), os.getppid())


@contextmanager
def file_lock(path, what: str, wait: bool = True):
    """Hold an exclusive fcntl.flock on `path` (created, and removed on release); yields True, or False when
    wait=False and another process holds it. The kernel releases a flock when its holder dies, so a killed
    holder never blocks anyone (the stale-holder rule); the file names the holder's host and pid. On a file
    system without locks it warns and yields None, unlocked (runs stay atomic; two processes may compute one)."""
    path = Path(path)
    if str(path) in _HELD:
        raise RuntimeError(f"{what} is already claimed by this process (a nested call for the same run?)")
    fd = _acquire(path, what, wait)
    if fd is None or fd < 0:
        yield False if fd is None else None
        return
    _HELD.add(str(path))
    try:
        yield True
    finally:
        _HELD.discard(str(path))
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _acquire(path: Path, what: str, wait: bool) -> int | None:
    """The descriptor of `path`, locked; None if wait=False and it is held; -1 if locks are not supported."""
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise StoreError(f"cannot create the lock file {path} ({err.strerror}); "
                             f"make {path.parent} writable or use another folder") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not wait:
                    os.close(fd)
                    return None
                if _held_by_parent(path):  # (the descriptor is closed below)
                    raise StoreError(
                        f"{what} is claimed by this worker's parent process ({_holder(path)}), which waits for its "
                        "workers: a script that runs repro (a book build, a sweep) was started again in a "
                        "process-pool worker; put its top-level code under `if __name__ == \"__main__\":`")
                if not announced:
                    print(f"waiting for {what}, claimed by {_holder(path)} ({path})", file=sys.stderr, flush=True)
                    announced = True
                fcntl.flock(fd, fcntl.LOCK_EX)
            same = _same_file(fd, path)  # the previous holder may have removed the file before releasing it
        except OSError as err:
            os.close(fd)
            if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                print(f"warning: {path.parent} does not support file locks ({err.strerror}); {what} is not claimed",
                      file=sys.stderr, flush=True)
                return -1
            raise
        except BaseException:
            os.close(fd)
            raise
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}).encode())
            return fd
        os.close(fd)


def _prepare(kind_dir: Path, final: Path) -> None:
    """Fail before any work when the store cannot hold the run: a file in the way, or no permission."""
    for path in (kind_dir.parent, kind_dir):
        if path.exists() and not path.is_dir():
            raise StoreError(f"run store: {path} is a file where a folder should be; move it away, "
                             f"or set REPRO_RUNS to another folder")
    try:
        kind_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(f"run store {kind_dir.parent} cannot be created ({err.strerror}); "
                         f"set REPRO_RUNS to a writable folder") from None
    if not os.access(kind_dir, os.W_OK):
        raise StoreError(f"run store folder {kind_dir} is not writable; fix its permissions or set REPRO_RUNS")
    if final.exists() and not final.is_dir():
        raise StoreError(f"{final} is a file where the folder of run {kind_dir.name}/{final.name} should be; "
                         f"remove it (`repro runs verify --fix` does)")


def get(kind: str, config: dict, compute: Callable[[dict, Path], dict] | None = None, store=None) -> Path:
    """Directory of the finished run of (kind, config); computes it first if it is missing or fails its check.

    compute(config, workdir) -> metrics dict (JSON-able) writes its artifacts into workdir (default: the kind's
    registered compute). The run is claimed while it is computed: another process asking for it waits and then
    reads it.
    """
    final = _store(store).root / kind / run_id(kind, config)
    if is_done(final):
        return final
    return _claim(kind, config, compute, store, lambda final: check_run(final, kind))


def _claim(kind: str, config: dict, compute: Callable | None, store, check: Callable[[Path], str | None]) -> Path:
    """Claim the run of (kind, config), and unless `check` of its folder passes (the run was finished by the
    process we waited for), remove it, saying why, and compute it."""
    rid = run_id(kind, config)
    kind_dir = _store(store).root / kind
    final = kind_dir / rid
    _prepare(kind_dir, final)
    with file_lock(kind_dir / f".lock-{rid}", f"run {kind}/{rid}") as claimed:
        if final.is_dir():
            problem = check(final)
            if problem is None:
                return final
            print(f"run {kind}/{rid}: {problem}; computing it again", file=sys.stderr, flush=True)
            shutil.rmtree(final)
        for stale in kind_dir.glob(f".tmp-{rid}-*") if claimed else []:  # only a claim holder writes these
            shutil.rmtree(stale, ignore_errors=True)
        _compute(kind, rid, config, compute or compute_function(kind), kind_dir, final)
    return final


def _compute(kind: str, rid: str, config: dict, compute: Callable, kind_dir: Path, final: Path) -> None:
    tmp = kind_dir / f".tmp-{rid}-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp.mkdir()  # (inside: an interrupt right after it still removes the folder)
        write_json(tmp / ".owner", {"host": socket.gethostname(), "pid": os.getpid()})
        write_json(tmp / "config.json", config)
        start = time.time()
        metrics = compute(config, tmp)
        if not isinstance(metrics, dict):
            raise ValueError(f"compute for kind {kind!r} returned {type(metrics).__name__}; it must return a dict")
        write_json(tmp / "metrics.json", metrics)
        missing = [name for name in KINDS[kind].artifacts(metrics) if not (tmp / name).is_file()]
        if missing:
            raise ValueError(f"compute for kind {kind!r} did not write the artifact(s) {missing} a {kind} run must hold")
        write_json(tmp / "meta.json", {"kind": kind, "run_id": rid, "code": KINDS[kind].version,
                                       "wall_s": time.time() - start, "finished": time.time(),
                                       "host": socket.gethostname(), "pid": os.getpid(), "device": _device()})
        (tmp / ".owner").unlink()
        write_manifest(tmp)
        (tmp / "done").write_text("")
        try:
            os.rename(tmp, final)
        except OSError:
            if not is_done(final):  # else an unclaimed twin (no file locks) finished it first: keep that one
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _device() -> dict:
    """Where this run ran (repro.device.describe; imports torch)."""
    try:
        from repro import device
        return device.describe()
    except Exception as err:  # recording the device must not lose a finished run
        return {"error": f"{type(err).__name__}: {err}"}


def read_config(kind: str, rid: str, store=None) -> dict:
    return json.loads((run_dir(kind, rid, store) / "config.json").read_text())


def read_metrics(kind: str, rid: str, store=None) -> dict:
    """metrics.json of a finished run (null read back as NaN); FileNotFoundError if the run is not finished."""
    path = run_dir(kind, rid, store)
    if not _marked(path):
        raise FileNotFoundError(f"run {kind}/{rid} is not finished in {path.parent}; compute it with runs.get")
    problem, texts = _inspect(path, kind)
    if problem is not None:
        raise ValueError(f"run {kind}/{rid} in {path.parent}: {problem}; runs.get recomputes it, "
                         f"`repro runs verify --fix` removes it")
    return _null_to_nan(json.loads(texts["metrics.json"]))


# ------------------------------------------------------------------------------------------ reading

def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def matches(value, wanted) -> bool:
    if callable(wanted):
        return bool(wanted(value))
    if isinstance(wanted, (tuple, set, frozenset)):
        return value in wanted
    return value == wanted


def load(kind: str, store=None, **filters) -> pd.DataFrame:
    """One row per finished run of `kind`: run_id, path, wall_s, config keys (dotted), then metrics.

    Scalar metrics become columns (a metric whose name clashes with a config key is named "metric.<name>");
    list and dict metrics are kept as Python objects. A filter key=value keeps rows whose column equals
    value; a tuple/set value means "one of", a callable value is a predicate. A run that fails check_run
    (e.g. a config.json edited by hand, a truncated file) is left out, with a line on stderr.
    """
    registered(kind)
    rows, folder = [], _store(store).root / kind
    wanted = filters.get("run_id")
    if isinstance(wanted, (str, tuple, set, frozenset)):  # only those runs are read (a warm notebook's lookups)
        names = {wanted} if isinstance(wanted, str) else {w for w in wanted if isinstance(w, str)}
        done = sorted(folder / n / "done" for n in names if "/" not in n and (folder / n / "done").exists())
    else:
        done = sorted(folder.glob("*/done"))
    for path in done:
        path = path.parent
        problem, texts = _inspect(path, kind)
        if problem is not None:
            print(f"skipping run {kind}/{path.name}: {problem}; `repro runs verify --fix` removes it",
                  file=sys.stderr, flush=True)
            continue
        config = _flatten(json.loads(texts["config.json"]))
        metrics = _null_to_nan(json.loads(texts["metrics.json"]))
        meta = json.loads(texts.get("meta.json", b"{}"))
        row = {"run_id": path.name, "path": str(path), "wall_s": meta.get("wall_s"), **config}
        for key, value in metrics.items():
            row[f"metric.{key}" if key in row else key] = value
        rows.append(row)
    df = pd.DataFrame(rows, columns=None if rows else ["run_id", "path", "wall_s"])
    for key, wanted in filters.items():
        if df.empty:
            break
        if key not in df.columns:
            joined = "; repro.results.load adds its ERM run's dataset, seed, ..." if "erm" in df.columns else ""
            raise ValueError(f"unknown filter {key!r} for kind {kind!r}; columns: {', '.join(df.columns)}{joined}")
        df = df[[matches(v, wanted) for v in df[key]]]
    return df.reset_index(drop=True)


def results(kind: str, configs: list[dict], store=None) -> pd.DataFrame:
    """load() rows of the given finished runs of `kind`, one row per config, in order (duplicates repeated)."""
    ids = [run_id(kind, c) for c in configs]
    return load(kind, store, run_id=tuple(ids)).set_index("run_id").loc[ids].reset_index()


# ------------------------------------------------------------------------------------------ checking a store

def verify_store(store=None, fix: bool = False) -> tuple[int, list[str]]:
    """Check every run of every kind in the store (deep: sha256s too); with fix=True remove what fails, and
    abandoned temporary folders and lock files. Returns (runs checked, one line per problem or removal)."""
    root = _store(store).root
    if not root.is_dir():
        raise StoreError(f"no run store at {root}" + (" (it is a file)" if root.exists() else "") +
                         "; pass --store DIR or set REPRO_RUNS")
    kinds = sorted({p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")} |
                   {k for k in KINDS if (root / k).is_dir()})
    checked, lines = 0, []
    for kind in kinds:
        for entry in sorted((root / kind).iterdir()):
            name = entry.name
            if name.startswith(".lock-") or not (entry.exists() or entry.is_symlink()):
                continue  # a lock file is removed by the next claim of its run
            if name.startswith(".tmp-"):
                rid = name.split("-")[1]
                with file_lock(root / kind / f".lock-{rid}", f"run {kind}/{rid}", wait=False) as free:
                    if free and entry.exists():  # nobody computes this run: the folder is abandoned
                        lines.append(_fix(entry, f"{kind}/{name}: abandoned temporary folder", fix))
                continue
            if name.startswith("."):
                continue
            checked += 1
            problem = check_run(entry, kind, deep=True)
            if problem is not None:
                with file_lock(root / kind / f".lock-{name}", f"run {kind}/{name}", wait=False) as free:
                    if free is not False:  # (None: no file locks here; check anyway)
                        lines.append(_fix(entry, f"{kind}/{name}: {problem}", fix))
    return checked, lines


def _fix(path: Path, line: str, fix: bool) -> str:
    if not fix:
        return f"FAIL {line}"
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    return f"removed {line}"


# ------------------------------------------------------------------------------------------ artifacts

def save_safetensors(path, tensors: dict | None = None, metadata: dict | None = None, model=None) -> None:
    """Write a .safetensors file (of `tensors`, or of `model`'s state dict) with a canonical header.

    safetensors orders the header's metadata arbitrarily, so identical runs would give files that differ;
    here the header is rewritten with sorted keys (same length, same data offsets), so equal inputs give
    byte-identical files."""
    from safetensors.torch import save_file, save_model

    if model is not None:
        save_model(model, str(path), metadata=metadata)
    else:
        save_file(tensors, str(path), metadata=metadata)
    with open(path, "r+b") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        if len(text) > n:  # cannot happen: the same keys and values, reordered
            raise ValueError(f"{path}: canonical safetensors header longer than the original")
        f.seek(8)
        f.write(text + b" " * (n - len(text)))
