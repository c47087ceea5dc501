"""Group-annotated examples: `GroupData` (one dataset's arrays), its loading, group names and Table 2.

Every registered dataset (repro.datasets) loads as a `GroupData`: parallel arrays over all examples of the
official train/val/test splits. Group ids are mixed-radix, g = y * n_attrs + a (as in WILDS' grouper), with
readable names "class/attr".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from repro import datasets

TRAIN, VAL, TEST = 0, 1, 2
SPLITS = {"train": TRAIN, "val": VAL, "test": TEST}


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
    test_weights: np.ndarray | None = field(default=None, repr=False)  # see real_test_weights

    @property
    def n_classes(self) -> int:
        return datasets.get(self.name).n_classes

    @property
    def n_attrs(self) -> int:
        return datasets.get(self.name).n_attrs

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
    """["class/attribute", ...] of dataset `name`, in group id order."""
    return datasets.get(name).group_names


def minority_groups(y: np.ndarray, a: np.ndarray, n_classes: int, n_attrs: int) -> list[int]:
    counts = np.bincount(np.asarray(y) * n_attrs + np.asarray(a), minlength=n_classes * n_attrs)
    counts = counts.reshape(n_classes, n_attrs)
    return [c * n_attrs + s for c in range(n_classes) for s in range(n_attrs) if s != int(np.argmax(counts[c]))]


# Paper Table 2 (Appendix B.1) as printed (repro.datasets holds each dataset's rows). The paper prints p(y)
# once per class; we repeat it on every row of the class.
_T2_COLUMNS = ["dataset", "group", "y", "s", "p_y", "p_g", "p_y_given_s", "train", "val", "test"]


def paper_table2(names=None):
    """Table 2 rows of the given registered datasets (default: all), exactly as the paper prints them."""
    import pandas as pd

    rows = []
    for name in names or datasets.names():
        d = datasets.get(name)
        for c, (p_y, groups) in enumerate(d.table2):
            for s, (p_g, p_ys, *counts) in enumerate(groups):
                rows.append((name, c * d.n_attrs + s, d.classes[c], d.attributes[s], p_y, p_g, p_ys, *counts))
    return pd.DataFrame(rows, columns=_T2_COLUMNS)


PAPER_TABLE2 = paper_table2()  # the four datasets of the paper


def composition_of(name: str, y: np.ndarray, a: np.ndarray, split: np.ndarray):
    """Table 2 rows of one dataset from its (n,) y, a, split arrays; the p-hat columns are on the train split."""
    import pandas as pd

    d = datasets.get(name)
    n_classes, n_attrs = d.n_classes, d.n_attrs
    counts = np.zeros((3, n_classes, n_attrs), np.int64)  # (split, y, a)
    np.add.at(counts, (split, y, a), 1)
    tr = counts[TRAIN].astype(float)
    p_y, p_g = tr.sum(1) / tr.sum(), tr / tr.sum()
    p_y_given_s = tr / np.maximum(tr.sum(0, keepdims=True), 1)
    rows = [(name, c * n_attrs + s, d.classes[c], d.attributes[s], p_y[c], p_g[c, s], p_y_given_s[c, s],
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


def real_test_weights(name: str) -> np.ndarray:
    """(n_groups,) the real test split's group proportions (Table 2 with its record's fixes). A synthetic twin's
    test split may over-sample small groups (repro.synth.MIN_COUNTS), so its average accuracy is reweighted to
    these; worst-group accuracy does not depend on them."""
    counts = datasets.get(name).paper_counts()[TEST].ravel().astype(np.float64)
    return counts / counts.sum()


def heldout_and_test_counts(root, seeds) -> "pandas.DataFrame":
    """Examples per group of each seed's held-out set (repro.split.heldout, the paper's held-out set) and of the
    test set, for every dataset under data root `root` (metadata only): columns dataset, group, name, set
    ("held-out" | "test"), seed (None for the test set, which no seed changes), count."""
    import pandas as pd

    from repro import metadata, split

    rows = []
    for name in metadata.available(root):
        frame = metadata.read(name, root)
        d = GroupData(name, datasets.get(name).kind, np.arange(len(frame)), frame["y"].to_numpy(),
                      frame["a"].to_numpy(), frame["split"].to_numpy())
        names, g = d.group_names, d.g
        test = np.bincount(g[d.split == TEST], minlength=d.n_groups)
        rows += [(name, k, names[k], "test", None, int(test[k])) for k in range(d.n_groups)]
        for seed in seeds:
            held = np.bincount(g[split.heldout(d, seed)[1]], minlength=d.n_groups)
            rows += [(name, k, names[k], "held-out", seed, int(held[k])) for k in range(d.n_groups)]
    return pd.DataFrame(rows, columns=["dataset", "group", "name", "set", "seed", "count"])


def load(name: str, root, **opts) -> GroupData:
    """Dataset `name` from data root `root` (options: those of its record's loader, e.g. check_files=False)."""
    import inspect

    from repro import metadata

    record = datasets.get(name)
    valid = list(inspect.signature(record.load).parameters)[2:]
    unknown = sorted(set(opts) - set(valid))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for {name}; valid: {valid}")
    folder = metadata.find_root(name, root)
    folder = folder.resolve() if record.kind == "image" else folder  # image paths are absolute
    frame = metadata.read(name, root)
    inputs, tokens = record.load(folder, frame, **opts)
    twin = (folder / "SYNTHETIC.json").is_file()  # written by repro.synth with every twin
    return GroupData(name, record.kind, inputs, frame["y"].to_numpy(), frame["a"].to_numpy(), frame["split"].to_numpy(),
                     root=str(folder), tokens=tokens, test_weights=real_test_weights(name) if twin else None)
