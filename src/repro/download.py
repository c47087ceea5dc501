"""Download the real datasets into a data root, verified, unpacked atomically, with a MANIFEST.json of sha256s.

Sources are the ones the paper's code and its ancestors use (see data/metadata/SOURCES.md in the repository).
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

GDRIVE = "https://drive.usercontent.google.com/download?id={}&export=download&confirm=t"
SOURCES = {
    "waterbirds": [
        dict(name="waterbird_complete95_forest2water2.tar.gz", unpack=True,
             url="https://nlp.stanford.edu/data/dro/waterbird_complete95_forest2water2.tar.gz"),  # no published checksum
    ],
    "celeba": [  # Google Drive ids and md5s of torchvision.datasets.CelebA
        dict(name="list_attr_celeba.txt", gdrive="0B7EVK8r0v71pblRyaVFSWGxPY0U", md5="75e246fa4810816ffd6ee81facbd244c"),
        dict(name="list_eval_partition.txt", gdrive="0B7EVK8r0v71pY0NSMzRuSXJEVkk",
             md5="d32c9cbf5e040fd4025c592c306e6668"),
        dict(name="img_align_celeba.zip", gdrive="0B7EVK8r0v71pZjFTYXZWM3FlRnM", md5="00d2c5bc6d35e252742224ab0c1e8fcb",
             unpack=True),
    ],
    "civilcomments": [  # WILDS v1.0 codalab bundle (a tar.gz); WILDS pins only its size
        dict(name="civilcomments_v1.0.tar.gz", size=90_644_480, unpack=True,
             url="https://worksheets.codalab.org/rest/bundles/0x8cd3de0634154aeaad2ee6eb96723c6e/contents/blob/"),
    ],
    "multinli": [
        dict(name="metadata_random.csv", sha256="e519154025f3550ad35093e1d3459d945d99c57cb0610c945e1bf0b6b7ea093a",
             url="https://raw.githubusercontent.com/kohpangwei/group_DRO/master/dataset_metadata/multinli/"
                 "metadata_random.csv"),
        dict(name="multinli_bert_features.tar.gz", unpack=True, flatten=True,
             url="https://nlp.stanford.edu/data/dro/multinli_bert_features.tar.gz"),
    ],
}


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
    if name not in SOURCES:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(SOURCES)}")
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
    for item in SOURCES[name]:
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
