"""Image files to model inputs (the paper's transforms), and caches of their decoded pixels next to the data.

How a file becomes a (3, S, S) float input (paper Appendix B.2 transforms; repro.inputs.ImageFiles):
  decode (PIL, convert("RGB"), uint8)
  -> train: RandomResizedCrop(S, scale 0.7-1) + horizontal flip on the PIL image, under the example's torch seed
     eval:  Resize(R = S * 256 / 224) + CenterCrop(S) on the PIL image (PIL's bilinear resizes antialias)
  -> ToTensor (uint8 -> float32, / 255) -> Normalize (ImageNet mean and std, float32).
Decoding a JPEG costs about as much as the rest, so the uint8 arrays PIL holds after two stages are cached, once
per (dataset fingerprint, image list, stage, size, PIL and torchvision versions), in <dataset folder>/.pixels/:
- "full": each decoded image at its own resolution (HWC, any sizes, concatenated). The training crop's box is
  drawn relative to the full image and resized from its full-resolution pixels, so no later training stage is
  cacheable bit for bit: crop, flip, ToTensor and Normalize run in code on Image.fromarray(pixels), which holds
  exactly the pixels the decoded file held.
- "center<S>": the evaluation crops, (n, S, S, 3), after which only ToTensor and Normalize run.
So a batch is torch.equal to the file path's, and the cache stays out of a run's identity (an execution detail,
REPRO_PIXEL_CACHE=0 turns it off). Each cache is a .u8 file memory-mapped by every DataLoader worker (they
share its pages) and a JSON header (shape, dtype, byte count, sha256, and a sha256 of the data's first and last
MiB that is checked on every open together with the size); both are written atomically under a file lock.
A damaged cache is rebuilt with a warning; a data folder that cannot be written is read from its files.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from repro.models import IMAGENET_MEAN, IMAGENET_STD

FORMAT = 1  # how the caches are laid out: part of their key
FOLDER = ".pixels"
PROBE = 1 << 20  # bytes at each end of a cache checked on every open
_SAID: set = set()  # notes already printed by this process


def open_image(path):
    """The RGB PIL image at `path`, fully decoded; a file that is not a readable image raises ValueError naming it."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError) as err:  # UnidentifiedImageError, truncated files, empty files
        raise ValueError(f"{path}: not a readable image ({err}); re-download the dataset or rewrite the twin") from None


def eval_resize(size: int) -> int:
    """The evaluation Resize before CenterCrop(size): 256 for 224 (the paper's ratio)."""
    return int(size * 256 / 224)


def image_transforms(train: bool, size: int = 224, resize: int = 256):
    """Train: RandomResizedCrop(size, scale=(0.7, 1)) + flip; eval: Resize(resize) + CenterCrop(size); then
    ImageNet normalization (the paper's transforms)."""
    from torchvision import transforms as T

    if train:
        steps = [T.RandomResizedCrop(size, scale=(0.7, 1.0)), T.RandomHorizontalFlip()]
    else:
        steps = [T.Resize(resize), T.CenterCrop(size)]
    return T.Compose([*steps, *_tensor_steps()])


def _tensor_steps():
    from torchvision import transforms as T
    return [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


# ------------------------------------------------------------------------------------------------- caches

@dataclass(frozen=True)
class Cache:
    """A cache of n uint8 HWC images: image i is bytes offsets[i]:offsets[i + 1] of `path`, of shape (h, w, 3)."""
    path: str
    shapes: np.ndarray  # (n, 2) heights and widths
    offsets: np.ndarray  # (n + 1,) byte offsets


class Damaged(Exception):
    """A cache whose header or data do not match."""


def read(cache: Cache, memory: np.ndarray, i: int) -> np.ndarray:
    """Image i of a cache as a (h, w, 3) uint8 view of `memory` (the cache file, memory-mapped)."""
    h, w = cache.shapes[i]
    return memory[cache.offsets[i]:cache.offsets[i + 1]].reshape(h, w, 3)


def recipe(stage: str, size: int) -> str:
    """What a stage's pixels are, in words (part of the cache's key and header)."""
    if stage == "full":
        return "PIL decode, convert('RGB'), full resolution"
    return f"PIL decode, convert('RGB'), torchvision Resize({eval_resize(size)}) bilinear, CenterCrop({size})"


def cache_path(data, fingerprint: str, stage: str, size: int) -> Path:
    """<dataset folder>/.pixels/<name>-<full | center<size>>-<digest>.u8; the digest keys the dataset's
    fingerprint, its image files (relative to the folder, in order), the stage and the PIL/torchvision versions."""
    import PIL
    import torchvision

    key = hashlib.sha256(f"{FORMAT}\0{fingerprint}\0{recipe(stage, size)}\0PIL {PIL.__version__}\0"
                         f"torchvision {torchvision.__version__}\0".encode())
    for p in data.inputs:
        key.update(os.path.relpath(str(p), str(data.root)).encode() + b"\0")
    name = "full" if stage == "full" else f"center{size}"
    return Path(data.root) / FOLDER / f"{data.name}-{name}-{key.hexdigest()[:16]}.u8"


def _header_path(path: Path) -> Path:
    return path.with_suffix(".json")


def _probe(path: Path, size: int) -> str:
    """sha256 of the first and last PROBE bytes of a file of `size` bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        digest.update(f.read(PROBE))
        f.seek(max(0, size - PROBE))
        digest.update(f.read(PROBE))
    return digest.hexdigest()


def open_cache(path: Path, n: int) -> Cache | None:
    """The cache at `path` (None when it is not there); Damaged when its header, size or probe digest do not match."""
    header = _header_path(path)
    if not header.is_file():
        return None
    try:
        meta = json.loads(header.read_text())
        shapes = np.asarray(meta["shapes"], dtype=np.int64).reshape(-1, 2)
        total, probe = int(meta["bytes"]), str(meta["probe"])
        ok = meta["format"] == FORMAT and meta["key"] == path.stem and meta["dtype"] == "uint8"
    except (ValueError, KeyError, TypeError) as err:
        raise Damaged(f"unreadable header {header.name}: {err}") from None
    if not ok or len(shapes) != n:
        raise Damaged(f"header {header.name} describes another cache")
    offsets = np.concatenate([[0], np.cumsum(shapes[:, 0] * shapes[:, 1] * 3)])
    have = path.stat().st_size if path.is_file() else -1
    if have != total or offsets[-1] != total:
        raise Damaged(f"{have} bytes, the header says {total}")
    if _probe(path, total) != probe:
        raise Damaged("its first or last MiB differ from the header's digest")
    return Cache(str(path), shapes, offsets)


def verify(path) -> bool:
    """True when the full sha256 of the cache at `path` matches its header (reads every byte)."""
    path = Path(path)
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    return digest.hexdigest() == json.loads(_header_path(path).read_text())["sha256"]


def _say(line: str) -> None:
    if line not in _SAID:
        _SAID.add(line)
        print(line, file=sys.stderr, flush=True)


class _Decoded(torch.utils.data.Dataset):
    """Item i -> image i's pixels at `stage`, from its file or from the full-resolution cache `source`."""

    def __init__(self, paths, stage: str, size: int, source: Cache | None):
        from torchvision import transforms as T
        self.paths, self.source, self._memory = paths, source, None
        self.steps = None if stage == "full" else T.Compose([T.Resize(eval_resize(size)), T.CenterCrop(size)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        from PIL import Image
        if self.source is None:
            im = open_image(self.paths[i])
        else:
            if self._memory is None:
                self._memory = np.memmap(self.source.path, np.uint8, "r")
            im = Image.fromarray(read(self.source, self._memory, i))
        return np.ascontiguousarray(np.asarray(im if self.steps is None else self.steps(im)))


def _keep(x):
    return x


class _NoRoom(Exception):
    pass


def _room(folder: Path, need: float, stage: str) -> None:
    """_NoRoom unless `folder` has `need` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise _NoRoom(f"{folder} has {free / 2**30:.1f} GiB free, the {stage} pixel cache needs {need / 2**30:.1f} GiB")


def _build(data, stage: str, size: int, path: Path, workers: int, source: Cache | None) -> None:
    """Decode every image of `data` at `stage` into `path` and its header, atomically (tmp files, then rename)."""
    n = len(data.inputs)
    loader = torch.utils.data.DataLoader(_Decoded(data.inputs, stage, size, source), batch_size=None,
                                         num_workers=workers, collate_fn=_keep,
                                         generator=torch.Generator())  # torch's global RNG is the run's
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    digest, shapes, total = hashlib.sha256(), [], 0
    try:
        with open(tmp, "wb") as f:
            for i, pixels in enumerate(loader):
                if i in (0, 16):  # the room left for the rest, estimated from the images so far
                    _room(path.parent, (total + pixels.nbytes) / (i + 1) * n * 1.05 - total, stage)
                f.write(pixels.data)
                digest.update(pixels.data)
                shapes.append(pixels.shape[:2])
                total += pixels.nbytes
        meta = {"format": FORMAT, "key": path.stem, "dataset": data.name, "stage": stage, "recipe": recipe(stage, size),
                "n": n, "dtype": "uint8", "layout": "HWC", "bytes": total, "sha256": digest.hexdigest(),
                "probe": _probe(tmp, total), "shapes": np.asarray(shapes, dtype=np.int64).reshape(-1, 2).tolist()}
        head = _header_path(tmp)
        head.write_text(json.dumps(meta))
        os.replace(tmp, path)  # the data first: a header names complete data only
        os.replace(head, _header_path(path))
    except ValueError as err:  # an unreadable image, raised in a worker: keep the message's last line
        raise ValueError(str(err).strip().splitlines()[-1].removeprefix("ValueError: ")) from None
    finally:
        for leftover in (tmp, _header_path(tmp)):
            leftover.unlink(missing_ok=True)


def ensure(data, fingerprint: str, stage: str, size: int, workers: int, source: Cache | None = None) -> Cache | None:
    """The cache of `data` at `stage`: opened, or built once under a file lock (rebuilt with a warning when
    damaged); None, with a one-line note, when the data folder cannot hold it."""
    from repro import runs

    path, n = cache_path(data, fingerprint, stage, size), len(data.inputs)
    try:
        cache = open_cache(path, n)
        if cache is not None:
            return cache
        what = "full-resolution images" if stage == "full" else f"{size} px evaluation crops"
        said = f"note: decoding the {n} images of {data.name} once into {path} ({what}; repro.pixels)"
    except Damaged as why:
        said = f"warning: the pixel cache {path} is damaged ({why}); rebuilding it"
    folder = path.parent
    if not os.access(folder if folder.is_dir() else folder.parent, os.W_OK):
        _say(f"note: {folder.parent} is not writable; its images are decoded from their files (no pixel cache)")
        return None
    try:
        folder.mkdir(exist_ok=True)
        _say(said)
        with runs.file_lock(path.with_name(f".{path.name}.lock"), f"the pixel cache {path.name}"):
            try:
                cache = open_cache(path, n)  # another process may have written it while we waited
            except Damaged:
                cache = None
            if cache is None:
                _header_path(path).unlink(missing_ok=True)
                _build(data, stage, size, path, workers, source)
                cache = open_cache(path, n)
        return cache
    except _NoRoom as why:
        _say(f"note: {why}; images are decoded from their files (no pixel cache)")
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT):
            raise
        _say(f"note: cannot write the pixel cache {path} ({err.strerror}); images are decoded from their files")
    return None


class CachedImages(torch.utils.data.Dataset):
    """ImageFiles' items from the caches: (dataset index, seed) -> the same (3, size, size) float tensor, bit for
    bit. `full` (training crops) may be None when the run does not augment."""

    def __init__(self, full: Cache | None, center: Cache, size: int):
        self.full, self.center, self.size = full, center, size
        self.train_tf = image_transforms(True, size)
        from torchvision import transforms as T
        self.tensor_tf = T.Compose(_tensor_steps())
        self._memory: dict = {}  # cache path -> its memory map, opened in the process that reads it

    def __len__(self) -> int:
        return len(self.center.shapes)

    def __getstate__(self):  # a worker process maps the files itself
        return {**self.__dict__, "_memory": {}}

    def _pixels(self, cache: Cache, i: int) -> np.ndarray:
        if cache.path not in self._memory:
            self._memory[cache.path] = np.memmap(cache.path, np.uint8, "r")
        return read(cache, self._memory[cache.path], i)

    def __getitem__(self, item):
        from PIL import Image
        i, seed = item
        if seed < 0:  # ToTensor of an HWC array: the same uint8 -> float32 / 255 as of the PIL crop
            return self.tensor_tf(np.array(self._pixels(self.center, i)))
        if self.full is None:
            raise ValueError("a training crop was asked of pixel caches built without the full-resolution images")
        im = Image.fromarray(self._pixels(self.full, i))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.train_tf(im)


def dataset(data, config: dict, workers: int) -> CachedImages | None:
    """CachedImages of a run's images (config: image_size, augment, data_fingerprint), building the caches it
    needs (the center crops; the full images when it augments); None when the data have no folder or no
    fingerprint, or the folder cannot hold the caches (then the run reads its files)."""
    size, fingerprint = config["image_size"], config["data_fingerprint"]
    if fingerprint is None or not Path(data.root).is_dir():
        return None
    full = ensure(data, fingerprint, "full", size, workers) if config["augment"] else None
    if config["augment"] and full is None:
        return None
    center = ensure(data, fingerprint, "center", size, workers, source=full)
    return None if center is None else CachedImages(full, center, size)
