"""Download the real datasets into a data root, verified, unpacked atomically, with a MANIFEST.json of sha256s.

Sources (each dataset record's `sources`, repro.datasets) are the ones the paper's code and its ancestors use
(see data/metadata/SOURCES.md in the repository).
Each file streams to <file>.part, is checked against its known size / md5 / sha256, then renamed; archives
unpack into a temporary folder that is renamed into place. A corrupt or truncated file is deleted, never used.
A file already in place (for example put there by hand after a Google Drive quota error) is verified and reused.
"""
from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from pathlib import Path

from repro import datasets

GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"


class ChecksumError(ValueError):
    """A downloaded file does not match its known size or checksum."""


class DownloadError(ConnectionError):
    """A file could not be fetched; the message is the manual-download step."""


class RefusedArchive(ValueError):
    """An archive member would land outside the target folder or is not a plain file or folder."""


def verify(path, md5: str | None = None, sha256: str | None = None, size: int | None = None) -> str:
    """Check `path` against the given size / md5 / sha256 (each optional); return its sha256."""
    path = Path(path)
    if size is not None and path.stat().st_size != size:
        raise ChecksumError(f"{path}: {path.stat().st_size} bytes, expected {size} (truncated or wrong file)")
    h_md5, h_sha = hashlib.md5(), hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h_md5.update(block)
            h_sha.update(block)
    for kind, want, got in (("md5", md5, h_md5.hexdigest()), ("sha256", sha256, h_sha.hexdigest())):
        if want is not None and got != want.lower():
            raise ChecksumError(f"{path}: {kind} {got}, expected {want} (corrupt or wrong file)")
    return h_sha.hexdigest()


def fetch(url: str, dest, opener=None) -> Path:
    """Stream `url` to dest + '.part', then rename to `dest`."""
    dest = Path(dest)
    part = dest.with_name(dest.name + ".part")
    opener = opener or (lambda u: urllib.request.urlopen(u, timeout=60))
    try:
        with opener(url) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return dest


def unpack(archive, dest, flatten: bool = False) -> list[str]:
    """Extract a .tar[.gz] or .zip into `dest` via a temporary folder; returns the top-level names moved in.

    flatten=True moves the contents of a single top-level folder up into `dest`.
    """
    archive, dest = Path(archive), Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=".unpack-", dir=dest))
    try:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as z:
                    for member in z.namelist():
                        parts = Path(member).parts
                        if member.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                            raise RefusedArchive(f"{archive}: refused member {member!r}: its path leaves the target "
                                                 f"folder; nothing was unpacked")
                    bad = z.testzip()
                    if bad is not None:
                        raise zipfile.BadZipFile(f"bad CRC for member {bad}")
                    z.extractall(tmp)
            else:
                with tarfile.open(archive, "r:*") as t:
                    t.extractall(tmp, filter="data")
        except tarfile.FilterError as e:
            raise RefusedArchive(f"{archive}: refused member {e.tarinfo.name!r}: {_refusal(e)}; nothing was "
                                 f"unpacked") from None
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
            raise ValueError(f"{archive}: truncated or corrupt archive ({type(e).__name__}: {e})") from None
        top = tmp
        entries = list(tmp.iterdir())
        if flatten and len(entries) == 1 and entries[0].is_dir():
            top = entries[0]
        names = sorted(p.name for p in top.iterdir())
        for n in names:
            target = dest / n
            if target.is_dir():
                shutil.rmtree(target)
            os.replace(top / n, target)
        return names
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _refusal(err: tarfile.FilterError) -> str:
    """Why tarfile's "data" filter refused a member, in words."""
    reasons = {tarfile.AbsolutePathError: "it has an absolute path",
               tarfile.OutsideDestinationError: "its path leaves the target folder",
               tarfile.SpecialFileError: "it is a device, pipe or other special file",
               tarfile.AbsoluteLinkError: "it is a link to an absolute path",
               tarfile.LinkOutsideDestinationError: "it is a link that points outside the target folder"}
    return next((text for kind, text in reasons.items() if isinstance(err, kind)), str(err))


def _manual_step(name: str, item: dict, dest: Path, root) -> str:
    url = f"https://drive.google.com/uc?id={item['gdrive']}" if "gdrive" in item else item["url"]
    return (f"Download {url} by hand (e.g. in a browser), save it as {dest}, then rerun "
            f"`repro data download {name} --root {root}`.")


def download(name: str, root, opener=None) -> Path:
    """Fetch, verify and unpack dataset `name` into root/<name>/; record every file's sha256 in MANIFEST.json."""
    sources = datasets.get(name).sources
    root = Path(root)
    for path in (root, root / name):
        if path.exists() and not path.is_dir():
            raise ValueError(f"data root: {path} is a file, not a folder; pass a folder as --root")
    folder = root / name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"data root {root} cannot be created ({err.strerror}); pass a writable folder") from None
    manifest_path = folder / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    for item in sources:
        dest = folder / item["name"]
        checks = dict(md5=item.get("md5"), sha256=item.get("sha256"), size=item.get("size"))
        if manifest.get(item["name"], {}).get("unpacked"):
            continue  # archive already verified and unpacked earlier
        if dest.exists():
            try:
                verify(dest, **checks)
            except ChecksumError:
                dest.unlink()
        if not dest.exists():
            url = GDRIVE.format(item["gdrive"]) if "gdrive" in item else item["url"]
            print(f"downloading {url} -> {dest}", flush=True)
            try:
                fetch(url, dest, opener)
            except (OSError, http.client.HTTPException) as e:
                reason = str(getattr(e, "reason", None) or e).strip().replace("\n", " ") or type(e).__name__
                raise DownloadError(f"{name}: cannot download {item['name']} ({reason}). "
                                    + _manual_step(name, item, dest, root)) from None
        try:
            digest = verify(dest, **checks)
        except ChecksumError as e:
            dest.unlink()
            hint = " Google Drive may have returned a quota page instead of the file." if "gdrive" in item else ""
            raise ChecksumError(f"{e}; deleted it.{hint} " + _manual_step(name, item, dest, root)) from None
        entry = dict(url=item.get("url") or GDRIVE.format(item["gdrive"]), sha256=digest, bytes=dest.stat().st_size)
        if item.get("unpack"):
            try:
                unpack(dest, folder, flatten=item.get("flatten", False))
            except RefusedArchive as e:
                dest.unlink()
                raise RefusedArchive(f"{e}; deleted the archive. Get it from its official source "
                                     f"(`repro data download {name} --root {root}`).") from None
            except ValueError as e:
                dest.unlink()
                raise ValueError(f"{e}; deleted it. Rerun `repro data download {name} --root {root}`.") from None
            dest.unlink()
            entry["unpacked"] = True
        manifest[item["name"]] = entry
        manifest_path.write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return folder
