"""The `Dataset` record: everything the code knows about one dataset, in one frozen value."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """One group-annotated dataset (paper Table 2), as every module reads it from `repro.datasets.REGISTRY`.

    classes, attributes: readable names of y and of the spurious attribute a (groups g = y * n_attrs + a)
    kind: "image" | "text" | "tokens" (what `load` returns as inputs)
    layouts: folders under a data root where the dataset may live, the canonical one first (the real archives
      unpack one level deeper); marker: the metadata file that marks such a folder (plain or .gz)
    read(folder) -> DataFrame with columns input, y, a, split (official order)
    load(folder, frame, **opts) -> (inputs (n,), tokens dict or None)
    write_twin(folder, y, a, split, rng, image_size): the synthetic twin's files, in the official formats
    table2: the paper's Table 2 rows, one (p_y, [(p_g, p_y_given_s, train, val, test) per attribute]) per class,
      exactly as printed; twin_counts_fix: {(split, y, a): count} where the files disagree with the print
    erm_train_pct: percent of the training split kept for ERM when the held-out set comes from train (Waterbirds
      80), None when it is half the validation split
    paper_minority: minority groups of the paper's group-ratio code; group_ratio_method: how its code builds
      a group-ratio training set ("subsetting" | "upsampling")
    train_weighted_average: the paper reports average accuracy weighted by the training group shares
    sources: downloads (name, url or gdrive id, size / md5 / sha256, unpack, flatten); see repro.download
    paper_erm: ERM config keys the paper profile sets for this dataset only (repro.erm)
    twin_scales: twin size relative to the real data per profile ("smoke", "cpu", "rehearse"): one factor or
      [train, val, test] factors
    companion: a companion dataset built from real files that install offline (repro.companions), beside the
      paper's four; it has no twin (write_twin raises) and its table2 holds the counts it is built with
    build(raw, folder, sizes=None, seed=None) -> dict: a companion's construction from its raw files (raw: source
      name -> path), writing the dataset folder; returns what COMPANION.json records (counts, natural counts);
      build_version: its construction version (a companion built by another version is rebuilt)
    display: the name as the paper writes it (figures, tables, verdicts); the key `name` otherwise
    """

    name: str
    classes: tuple[str, ...]
    attributes: tuple[str, ...]
    kind: str
    layouts: tuple[str, ...]
    marker: str
    read: Callable
    load: Callable
    write_twin: Callable
    table2: tuple
    twin_scales: Mapping[str, object]
    erm_train_pct: int | None = None
    paper_minority: tuple[int, ...] = ()
    group_ratio_method: str = "subsetting"
    train_weighted_average: bool = False
    sources: tuple[dict, ...] = ()
    paper_erm: Mapping[str, object] = field(default_factory=dict)
    twin_counts_fix: Mapping[tuple[int, int, int], int] = field(default_factory=dict)
    companion: bool = False
    build: Callable | None = None
    build_version: int = 0
    display: str = ""

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def n_attrs(self) -> int:
        return len(self.attributes)

    @property
    def group_names(self) -> list[str]:
        return [f"{c}/{s}" for c in self.classes for s in self.attributes]

    def paper_counts(self) -> np.ndarray:
        """(3, n_classes, n_attrs) example counts per split, class and attribute: Table 2 with its fixes."""
        counts = np.array([[groups[s][2:] for s in range(self.n_attrs)] for _, groups in self.table2])
        counts = counts.transpose(2, 0, 1).copy()
        for index, value in self.twin_counts_fix.items():
            counts[index] = value
        return counts

    @property
    def n_train(self) -> int:
        """Training examples of the real dataset (Table 2)."""
        return int(self.paper_counts()[0].sum())


def table2_of(counts) -> tuple:
    """Table 2 rows (p_y, [(p_g, p_y_given_s, train, val, test) per attribute]) per class from (3, n_classes,
    n_attrs) counts per split, class and attribute; the proportions are those of the training split."""
    counts = np.asarray(counts, dtype=np.int64)
    train = counts[0].astype(float)
    p_y, p_g, p_ys = train.sum(1) / train.sum(), train / train.sum(), train / train.sum(0, keepdims=True)
    return tuple((round(float(p_y[c]), 4), tuple((round(float(p_g[c, s]), 4), round(float(p_ys[c, s]), 4),
                                                  *(int(n) for n in counts[:, c, s]))
                                                 for s in range(counts.shape[2])))
                 for c in range(counts.shape[1]))


def no_twin(name: str) -> Callable:
    """The write_twin of a companion dataset: a ValueError, as a companion has no synthetic twin."""
    def write_twin(*args, **kwargs):
        raise ValueError(f"{name} is a companion dataset built from real files and has no synthetic twin; "
                         f"build it with `repro data download {name} --root DIR`")
    return write_twin
