"""CelebA (Liu et al., 2015): the `Dataset` record of blond vs non-blond hair, with gender as the spurious attribute."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro import files, pictures
from repro.datasets.base import Dataset
from repro.datasets.waterbirds import load_images


def read(folder) -> pd.DataFrame:
    """list_attr_celeba.txt + list_eval_partition.txt; y = Blond_Hair, a = Male (-1 -> 0, 1 -> 1)."""
    folder = Path(folder)
    attr_path = files.required(folder, "list_attr_celeba.txt", "celeba")
    part_path = files.required(folder, "list_eval_partition.txt", "celeba")
    with files.open_bytes(attr_path) as f, files.reading(attr_path, "celeba"):
        count = f.readline().strip()
        names = f.readline().decode().split()
    if not count:
        raise ValueError(f"{attr_path}: the file is empty; replace the file: {files.fix('celeba', folder.parent)}")
    files.columns(pd.DataFrame(columns=names), ("Blond_Hair", "Male"), attr_path)
    with files.reading(attr_path, "celeba", skip=2, fields=1 + len(names)), files.open_bytes(attr_path) as f:
        f.readline(), f.readline()
        attrs = pd.read_csv(f, sep=r"\s+", header=None, names=["file", *names], usecols=["file", "Blond_Hair", "Male"],
                            dtype={"file": str, "Blond_Hair": np.int64, "Male": np.int64}, engine="c")
    if not count.isdigit() or int(count) != len(attrs):
        raise ValueError(f"{attr_path}: first line says {count.decode(errors='replace')!r} images but {len(attrs)} "
                         f"rows follow (a truncated file?); replace the file: {files.fix('celeba', folder.parent)}")
    with files.reading(part_path, "celeba", fields=2), files.open_bytes(part_path) as f:
        part = pd.read_csv(f, sep=r"\s+", header=None, names=["file", "split"], dtype={"file": str}, engine="c")
    listed = attrs["file"].to_numpy()
    if len(part) != len(attrs) or not np.array_equal(part["file"].to_numpy(), listed):
        if set(part["file"]) != set(listed):
            extra = sorted(set(part["file"]) ^ set(listed))[:5]
            raise ValueError(f"{attr_path} and {part_path} list different images, e.g. {extra}; {files.REPLACE}")
        part = part.set_index("file").loc[listed].reset_index()
    y = files.values(attrs["Blond_Hair"], (-1, 1), "Blond_Hair", attr_path)
    a = files.values(attrs["Male"], (-1, 1), "Male", attr_path)
    split = files.values(part["split"], (0, 1, 2), "split", part_path)
    return files.frame(np.char.add("img_align_celeba/", listed.astype(str)).astype(object),
                       (y + 1) // 2, (a + 1) // 2, split)


ATTRS = ("5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
         "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair "
         "Heavy_Makeup High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face "
         "Pale_Skin Pointy_Nose Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair "
         "Wearing_Earrings Wearing_Hat Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young").split()


def backgrounds(a: np.ndarray, rng, size: int) -> np.ndarray:
    """(n, size, size, 3): female (a = 0) warm blotches, male (a = 1) a grey checker of random period."""
    yy, xx, blotch, _ = pictures.textures(rng, len(a), size)
    female = blotch * np.array([0.9, 0.6, 0.55]) + (1 - blotch) * np.array([0.75, 0.45, 0.3])
    period = rng.integers(3, 7, (len(a), 1, 1))
    checker = ((np.floor(yy * size / period) + np.floor(xx * size / period)) % 2)[..., None]
    male = 0.35 + 0.25 * checker * np.ones(3)
    return np.where(a[:, None, None, None] == 1, male, female)


def shapes(y: np.ndarray, rng, size: int) -> np.ndarray:
    """(n, size, size) masks: non-blond (y = 0) a square, blond (y = 1) a cross."""
    u, v, r, _ = pictures.frames(rng, len(y), size)
    square = np.maximum(abs(u), abs(v)) <= 0.7 * r
    cross = ((abs(u) <= 0.3 * r) & (abs(v) <= r)) | ((abs(v) <= 0.3 * r) & (abs(u) <= r))
    return np.where(y[:, None, None] == 1, cross, square)


def write_twin(folder: Path, y, a, split, rng, image_size: int) -> None:
    """list_attr_celeba.txt and list_eval_partition.txt in the official layout, and one JPEG per face: non-blond
    square / blond cross on warm blotches (female) / a grey checker (male)."""
    n = len(y)
    names = [f"{i:06d}.jpg" for i in range(1, n + 1)]
    attrs = np.where(rng.random((n, len(ATTRS))) < 0.3, 1, -1)
    attrs[:, ATTRS.index("Blond_Hair")] = 2 * y - 1
    attrs[:, ATTRS.index("Male")] = 2 * a - 1
    # Official layout: CRLF lines; a count line; 40 names with a trailing space; values right-aligned in 2 chars.
    lines = [str(n), " ".join(ATTRS) + " "]
    lines += [f + "".join(f" {v:2d}" for v in row) for f, row in zip(names, attrs.tolist())]
    (folder / "list_attr_celeba.txt").write_bytes(("\r\n".join(lines) + "\r\n").encode())
    part = "".join(f"{f} {s}\r\n" for f, s in zip(names, split.tolist()))
    (folder / "list_eval_partition.txt").write_bytes(part.encode())
    pictures.save_jpegs(pictures.images(backgrounds, shapes, y, a, rng, image_size),
                        [folder / "img_align_celeba" / f for f in names])


def load(folder: Path, frame: pd.DataFrame, check_files: bool = True):
    return load_images("celeba", folder, frame, check_files)


DATASET = Dataset(
    name="celeba", classes=("non-blond", "blond"), attributes=("female", "male"), kind="image",
    display="CelebA",
    layouts=("celeba", "celeba/celeba"), marker="list_attr_celeba.txt", read=read, load=load, write_twin=write_twin,
    table2=((.851, ((.440, .758, 71629, 8535, 9767), (.411, .980, 66874, 8276, 7535))),
            (.149, ((.141, .242, 22880, 2874, 2480), (.009, .020, 1387, 182, 180)))),
    # cpu: val grown at the real proportions until every held-out group has 30 (synth.heldout_scale)
    twin_scales={"smoke": 0.002, "cpu": [0.025, 0.485, 0.1], "rehearse": [0.0003, 0.001, 0.001]},
    paper_minority=(3,),  # the paper's code splits non-blond female / male 50/50; only blond male is a minority
    sources=(  # Google Drive ids and md5s of torchvision.datasets.CelebA
        dict(name="list_attr_celeba.txt", gdrive="0B7EVK8r0v71pblRyaVFSWGxPY0U", md5="75e246fa4810816ffd6ee81facbd244c"),
        dict(name="list_eval_partition.txt", gdrive="0B7EVK8r0v71pY0NSMzRuSXJEVkk",
             md5="d32c9cbf5e040fd4025c592c306e6668"),
        dict(name="img_align_celeba.zip", gdrive="0B7EVK8r0v71pZjFTYXZWM3FlRnM", md5="00d2c5bc6d35e252742224ab0c1e8fcb",
             unpack=True),
    ),
)
