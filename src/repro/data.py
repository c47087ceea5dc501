"""Group-annotated datasets: one contract for Waterbirds, CelebA, CivilComments and MultiNLI.

Every dataset is a `GroupData`: parallel arrays over all examples of the official train/val/test splits.
Group ids are mixed-radix, g = y * n_attrs + a (as in WILDS' grouper), with readable names "class/attr".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRAIN, VAL, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "val": VAL, "test": TEST}

# Readable names of classes and spurious attributes (paper Table 2).
CLASS_NAMES = {
    "waterbirds": ("landbird", "waterbird"),
    "celeba": ("non-blond", "blond"),
    "civilcomments": ("neutral", "toxic"),
    "multinli": ("contradiction", "entailment", "neither"),
}
ATTR_NAMES = {
    "waterbirds": ("land", "water"),
    "celeba": ("female", "male"),
    "civilcomments": ("no identity", "identity"),
    "multinli": ("no negation", "negation"),
}


@dataclass(frozen=True)
class GroupData:
    """All examples of one dataset.

    inputs: (n,) image paths (str), texts (str), or row indices into `tokens` (MultiNLI features)
    y, a, split: (n,) int64 class, spurious attribute and split (0 train, 1 val, 2 test)
    tokens: optional dict of (n, L) int64 arrays (input_ids, attention_mask, token_type_ids)
    """

    name: str
    kind: str  # "image" | "text" | "tokens"
    inputs: np.ndarray
    y: np.ndarray
    a: np.ndarray
    split: np.ndarray
    root: str = ""
    tokens: dict | None = field(default=None, repr=False)

    @property
    def n_classes(self) -> int:
        return len(CLASS_NAMES[self.name])

    @property
    def n_attrs(self) -> int:
        return len(ATTR_NAMES[self.name])

    @property
    def n_groups(self) -> int:
        return self.n_classes * self.n_attrs

    @property
    def g(self) -> np.ndarray:
        return self.y * self.n_attrs + self.a

    @property
    def group_names(self) -> list[str]:
        return group_names(self.name)

    def minority_groups(self) -> list[int]:
        """Groups other than the largest group of their class in the training split (paper's group ratio)."""
        return minority_groups(self.y[self.split == TRAIN], self.a[self.split == TRAIN], self.n_classes, self.n_attrs)


def group_names(name: str) -> list[str]:
    return [f"{c}/{s}" for c in CLASS_NAMES[name] for s in ATTR_NAMES[name]]


def minority_groups(y: np.ndarray, a: np.ndarray, n_classes: int, n_attrs: int) -> list[int]:
    counts = np.bincount(np.asarray(y) * n_attrs + np.asarray(a), minlength=n_classes * n_attrs)
    counts = counts.reshape(n_classes, n_attrs)
    return [c * n_attrs + s for c in range(n_classes) for s in range(n_attrs) if s != int(np.argmax(counts[c]))]


# ---------------------------------------------------------------------------------------------------------------
# Paper Table 2 (Appendix B.1), exactly as printed, including the Waterbirds landbird test count "2225" (the files
# say 2255: 2 x 2255 + 2 x 642 = 5794 is the known test size). The paper prints p(y) once per class; we repeat it
# on every row of the class.
_T2_COLUMNS = ["dataset", "group", "y", "s", "p_y", "p_g", "p_y_given_s", "train", "val", "test"]
_T2_ROWS = [
    ("waterbirds", .768, [(.730, .984, 3498, 467, 2225), (.038, .148, 184, 466, 2225)]),
    ("waterbirds", .232, [(.012, .016, 56, 133, 642), (.220, .852, 1057, 133, 642)]),
    ("celeba", .851, [(.440, .758, 71629, 8535, 9767), (.411, .980, 66874, 8276, 7535)]),
    ("celeba", .149, [(.141, .242, 22880, 2874, 2480), (.009, .020, 1387, 182, 180)]),
    ("civilcomments", .887, [(.551, .921, 148186, 25159, 74780), (.336, .836, 90337, 14966, 43778)]),
    ("civilcomments", .113, [(.047, .079, 12731, 2111, 6455), (.066, .164, 17784, 2944, 8769)]),
    ("multinli", .333, [(.279, .300, 57498, 22814, 34597), (.054, .761, 11158, 4634, 6655)]),
    ("multinli", .334, [(.327, .352, 67376, 26949, 40496), (.007, .104, 1521, 613, 886)]),
    ("multinli", .333, [(.323, .348, 66630, 26655, 39930), (.010, .136, 1992, 797, 1148)]),
]


def _paper_table2():
    import pandas as pd

    rows, seen = [], {}
    for name, p_y, groups in _T2_ROWS:
        c = seen[name] = seen.get(name, -1) + 1
        for s, (p_g, p_ys, *counts) in enumerate(groups):
            rows.append((name, c * len(ATTR_NAMES[name]) + s, CLASS_NAMES[name][c], ATTR_NAMES[name][s], p_y, p_g,
                         p_ys, *counts))
    return pd.DataFrame(rows, columns=_T2_COLUMNS)


PAPER_TABLE2 = _paper_table2()


def composition_of(name: str, y: np.ndarray, a: np.ndarray, split: np.ndarray):
    """Table 2 rows of one dataset from its (n,) y, a, split arrays; the p-hat columns are on the train split."""
    import pandas as pd

    n_classes, n_attrs = len(CLASS_NAMES[name]), len(ATTR_NAMES[name])
    counts = np.zeros((3, n_classes, n_attrs), np.int64)  # (split, y, a)
    np.add.at(counts, (split, y, a), 1)
    tr = counts[TRAIN].astype(float)
    p_y, p_g = tr.sum(1) / tr.sum(), tr / tr.sum()
    p_y_given_s = tr / np.maximum(tr.sum(0, keepdims=True), 1)
    rows = [(name, c * n_attrs + s, CLASS_NAMES[name][c], ATTR_NAMES[name][s], p_y[c], p_g[c, s], p_y_given_s[c, s],
             *counts[:, c, s]) for c in range(n_classes) for s in range(n_attrs)]
    return pd.DataFrame(rows, columns=_T2_COLUMNS)


def composition(root) -> "pandas.DataFrame":
    """Table 2 computed from the metadata files of every dataset found under data root `root`."""
    import pandas as pd

    from repro import metadata

    from pathlib import Path

    if Path(root).exists() and not Path(root).is_dir():
        raise ValueError(f"data root {root} is a file, not a folder; pass the folder that holds waterbirds/, celeba/, ...")
    frames = []
    for name in metadata.available(root):
        df = metadata.read(name, root)
        frames.append(composition_of(name, df["y"].to_numpy(), df["a"].to_numpy(), df["split"].to_numpy()))
    if not frames:
        raise FileNotFoundError(f"no dataset metadata under {root}; run `repro data synth --root {root}` "
                                f"or `repro data download NAME --root {root}`")
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------------------------
# Loaders: one function per dataset plus one line in REGISTRY.

def check_files(paths, name: str) -> None:
    """Raise FileNotFoundError if any of the (n,) absolute image paths is missing (all are checked), and
    ValueError naming the first file that is empty, not a JPEG/PNG, or truncated (no end marker)."""
    import os
    from collections import defaultdict

    by_dir = defaultdict(list)
    for p in paths:
        d, f = os.path.split(p)
        by_dir[d].append(f)
    missing = []
    for d, files in by_dir.items():
        present = set(os.listdir(d)) if os.path.isdir(d) else set()
        missing += [os.path.join(d, f) for f in files if f not in present]
    if missing:
        raise FileNotFoundError(f"{name}: {len(missing)} of {len(paths)} image files are missing, e.g. "
                                f"{missing[:3]}; re-download with `repro data download {name} --root DIR` "
                                f"or write a twin with `repro data synth`")
    for p in paths:
        problem = image_problem(p)
        if problem:
            raise ValueError(f"{p}: {problem}; replace it (`repro data download {name} --root DIR`, or delete "
                             f"the dataset folder and rerun `repro data synth {name} --root DIR`)")


def image_problem(path) -> str | None:
    """Why the file at `path` is not a complete JPEG or PNG image (from its first and last bytes), or None."""
    with open(path, "rb") as f:
        head = f.read(8)
        if not head:
            return "empty file (0 bytes)"
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1024))
        tail = f.read()
    if head.startswith(b"\xff\xd8\xff"):
        return None if b"\xff\xd9" in tail else "truncated JPEG (no end-of-image marker)"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return None if b"IEND" in tail else "truncated PNG (no IEND chunk)"
    return f"not a JPEG or PNG image (it starts with {head[:8]!r})"


def _image_data(name: str, root, check: bool) -> GroupData:
    from repro import metadata

    folder = metadata.find_root(name, root).resolve()
    df = metadata.read(name, root)
    paths = np.array([str(folder / f) for f in df["input"]], dtype=object)
    if check:
        check_files(paths, name)
    return GroupData(name, "image", paths, df["y"].to_numpy(), df["a"].to_numpy(), df["split"].to_numpy(),
                     root=str(folder))


def load_waterbirds(root, check_files: bool = True) -> GroupData:
    return _image_data("waterbirds", root, check_files)


def load_celeba(root, check_files: bool = True) -> GroupData:
    return _image_data("celeba", root, check_files)


def load_civilcomments(root) -> GroupData:
    from repro import metadata

    df = metadata.read("civilcomments", root)
    return GroupData("civilcomments", "text", df["input"].to_numpy(dtype=object), df["y"].to_numpy(),
                     df["a"].to_numpy(), df["split"].to_numpy(), root=str(metadata.find_root("civilcomments", root)))


MNLI_FEATURE_FILES = ("cached_train_bert-base-uncased_128_mnli", "cached_dev_bert-base-uncased_128_mnli",
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


def load_multinli(root) -> GroupData:
    from repro import metadata

    folder = metadata.find_root("multinli", root)
    df = metadata.read("multinli", root)
    features = []
    for fname in MNLI_FEATURE_FILES:
        if not (folder / fname).is_file():
            raise FileNotFoundError(f"multinli: expected {folder / fname}; get it with "
                                    f"`repro data download multinli --root {root}` or `repro data synth --root {root}`")
        features += read_features(folder / fname)
    if len(features) != len(df):
        raise ValueError(f"multinli: {len(features)} cached features but {len(df)} metadata rows in {folder}")
    tokens = {key: np.array([getattr(f, attr) for f in features], dtype=np.int64)
              for key, attr in (("input_ids", "input_ids"), ("attention_mask", "input_mask"),
                                ("token_type_ids", "segment_ids"))}
    labels = np.array([f.label_id for f in features], dtype=np.int64)
    y = df["y"].to_numpy()
    if not np.array_equal(labels, y):
        raise ValueError(f"multinli: label_id of the cached features disagrees with gold_label in "
                         f"metadata_random.csv at {int((labels != y).sum())} rows (first {np.flatnonzero(labels != y)[:5]})")
    return GroupData("multinli", "tokens", np.arange(len(df), dtype=np.int64), y, df["a"].to_numpy(),
                     df["split"].to_numpy(), root=str(folder), tokens=tokens)


REGISTRY = {
    "waterbirds": load_waterbirds,
    "celeba": load_celeba,
    "civilcomments": load_civilcomments,
    "multinli": load_multinli,
}


def load(name: str, root, **opts) -> GroupData:
    """Dataset `name` from data root `root` (options: see the loader in REGISTRY, e.g. check_files=False)."""
    import inspect

    if name not in REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(REGISTRY)}")
    valid = list(inspect.signature(REGISTRY[name]).parameters)[1:]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; valid: {valid}")
    return REGISTRY[name](root, **opts)
