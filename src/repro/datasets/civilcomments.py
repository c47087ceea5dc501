"""CivilComments (WILDS v1.0): the `Dataset` record of toxic comments, with identity mentions as the spurious attribute."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from repro import files
from repro.datasets.base import Dataset

IDENTITIES = ("male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white")
SPLITS = {"train": 0, "val": 1, "test": 2}


def read(folder) -> pd.DataFrame:
    """all_data_with_identities.csv (WILDS v1.0); y = toxicity >= 0.5, a = any of 8 identities >= 0.5."""
    path = files.required(Path(folder), "all_data_with_identities.csv", "civilcomments")
    with files.reading(path, "civilcomments"), files.open_bytes(path) as f:
        df = pd.read_csv(f, index_col=0)
    files.columns(df, ("comment_text", "split", "toxicity", *IDENTITIES), path)
    split_names = df["split"].astype(str).to_numpy()
    bad = sorted(set(np.unique(split_names)) - set(SPLITS))
    if bad:
        raise ValueError(f"{path}: column 'split' has values {bad[:10]} outside {list(SPLITS)}; {files.REPLACE}")
    split = np.select([split_names == s for s in SPLITS], list(SPLITS.values()))
    with files.reading(path, "civilcomments"):
        toxicity = df["toxicity"].to_numpy(dtype=float)
        identity_values = df[list(IDENTITIES)].to_numpy(dtype=float)
    if np.isnan(toxicity).any():
        raise ValueError(f"{path}: column 'toxicity' has {int(np.isnan(toxicity).sum())} missing values")
    identity = (identity_values >= 0.5).any(axis=1)  # NaN >= 0.5 is False
    texts = df["comment_text"].fillna("").astype(str).to_numpy(dtype=object)
    return files.frame(texts, toxicity >= 0.5, identity, split)


HOSTILE = "idiot stupid pathetic moron disgusting liar trash clown ignorant worthless dumb loser".split()
NEUTRAL = ("good policy council interesting budget agree reasonable thanks article vote city plan school road "
           "tax market local people report fair point history idea future").split()
IDENTITY_TERMS = {"male": ("men", "fathers"), "female": ("women", "mothers"), "LGBTQ": ("gay", "transgender"),
                  "christian": ("christian", "catholic"), "muslim": ("muslim", "islamic"),
                  "other_religions": ("jewish", "hindu"), "black": ("black",), "white": ("white",)}
SKELETONS = ("{0} {1} about the {2}, {3} and {4}. {5}.", "this {0} is {1} and {2}; the {3} {4} {5}.",
             "{0} {1}! what a {2} {3} {4} {5}.", "i think the {0} {1} {2} {3}, {4} {5}.")


def _comment(toxic: bool, identities: list[str], rng) -> str:
    rate = rng.uniform(0.35, 0.5) if toxic else 0.1
    words = [HOSTILE[rng.integers(len(HOSTILE))] if rng.random() < rate else NEUTRAL[rng.integers(len(NEUTRAL))]
             for _ in range(6)]
    text = SKELETONS[rng.integers(len(SKELETONS))].format(*words)
    for col in identities:
        terms = IDENTITY_TERMS[col]
        text = f"as for the {terms[rng.integers(len(terms))]} people, " + text if rng.random() < 0.5 else \
            text + f" ask the {terms[rng.integers(len(terms))]} people."
    return text


def write_twin(folder: Path, y, a, split, rng, image_size: int) -> None:
    """all_data_with_identities.csv: "dense-weak" toxicity (the rate of hostile words in 6 slots) and identity terms."""
    n, cols = len(y), list(IDENTITIES)
    tox = np.where(y == 1, rng.uniform(0.5, 1.0, n), np.where(rng.random(n) < 0.7, 0.0, rng.uniform(0, 0.49, n)))
    ident = np.zeros((n, len(cols)))
    texts = []
    for i in range(n):
        chosen = []
        if a[i]:
            chosen = list(rng.choice(cols, size=1 + int(rng.random() < 0.2), replace=False))
            ident[i, [cols.index(c) for c in chosen]] = rng.uniform(0.5, 1.0, len(chosen))
        elif rng.random() < 0.1:  # below-threshold annotations: present in the text, absent as an attribute
            ident[i, rng.integers(len(cols))] = rng.uniform(0.05, 0.45)
        texts.append(_comment(bool(y[i]), chosen, rng))
    ident[(a == 0) & (rng.random(n) < 0.05)] = np.nan  # unannotated rows, as in the real file
    df = pd.DataFrame({"id": np.arange(n) + 239_000, "comment_text": texts,
                       "split": np.array(["train", "val", "test"])[split], "toxicity": tox.round(6)})
    for k in ("severe_toxicity", "obscene", "threat", "insult", "identity_attack", "sexual_explicit"):
        df[k] = (tox * rng.uniform(0, 0.5, n)).round(6)
    df[cols] = ident.round(6)
    df["identity_any"] = (np.nan_to_num(ident) >= 0.5).any(1).astype(int)
    df.to_csv(folder / "all_data_with_identities.csv")


def load(folder: Path, frame: pd.DataFrame):
    """(n,) comment texts and no tokens (they are tokenized per model by repro.inputs)."""
    return frame["input"].to_numpy(dtype=object), None


DATASET = Dataset(
    name="civilcomments", classes=("neutral", "toxic"), attributes=("no identity", "identity"), kind="text",
    display="CivilComments",
    layouts=("civilcomments", "civilcomments/civilcomments_v1.0", "civilcomments_v1.0"),
    marker="all_data_with_identities.csv", read=read, load=load, write_twin=write_twin,
    table2=((.887, ((.551, .921, 148186, 25159, 74780), (.336, .836, 90337, 14966, 43778))),
            (.113, ((.047, .079, 12731, 2111, 6455), (.066, .164, 17784, 2944, 8769)))),
    # cpu: val grown at the real proportions until every held-out group has 30 (synth.heldout_scale)
    twin_scales={"smoke": 0.001, "cpu": [0.004, 0.042, 0.004], "rehearse": [0.0002, 0.0005, 0.0002]},
    paper_minority=(1, 2),
    sources=(  # WILDS v1.0 codalab bundle (a tar.gz); WILDS pins only its size
        dict(name="civilcomments_v1.0.tar.gz", size=90_644_480, unpack=True,
             url="https://worksheets.codalab.org/rest/bundles/0x8cd3de0634154aeaad2ee6eb96723c6e/contents/blob/"),
    ),
    paper_erm={"max_length": 220},
)
