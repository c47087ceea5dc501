"""Readers of the official metadata files of the four datasets, plain or gzip-compressed.

Every reader returns one DataFrame with the same columns, one row per example in the official order:
  input: image filename relative to the dataset folder (vision), comment text (CivilComments),
         or row index into the cached features (MultiNLI)
  y, a, split: int64 class, spurious attribute and split (0 train, 1 val, 2 test)
"""
from __future__ import annotations

import gzip
import io
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

# The file that marks a dataset folder, then the folders (relative to the data root) where it may live:
# the real archives unpack one level deeper than our canonical layout.
MARKERS = {
    "waterbirds": "metadata.csv",
    "celeba": "list_attr_celeba.txt",
    "civilcomments": "all_data_with_identities.csv",
    "multinli": "metadata_random.csv",
}
LAYOUTS = {
    "waterbirds": ("waterbirds", "waterbirds/waterbird_complete95_forest2water2", "waterbird_complete95_forest2water2"),
    "celeba": ("celeba", "celeba/celeba"),
    "civilcomments": ("civilcomments", "civilcomments/civilcomments_v1.0", "civilcomments_v1.0"),
    "multinli": ("multinli",),
}
CIVIL_IDENTITIES = ("male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white")
CIVIL_SPLITS = {"train": 0, "val": 1, "test": 2}
MNLI_LABELS = {0: "contradiction", 1: "entailment", 2: "neutral"}  # group_DRO's label dict


def _check_name(name: str) -> None:
    if name not in MARKERS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(MARKERS)}")


def _fix(name: str, root) -> str:
    return (f"get it with `repro data download {name} --root {root}`, "
            f"or write a synthetic twin with `repro data synth --root {root}`")


def locate(folder, filename: str) -> Path | None:
    """The path of `filename` or `filename.gz` in `folder`, or None."""
    for candidate in (Path(folder) / filename, Path(folder) / (filename + ".gz")):
        if candidate.is_file():
            return candidate
    return None


def find_root(name: str, root) -> Path:
    """The folder of dataset `name` under the data root `root` (any of the layouts in LAYOUTS)."""
    _check_name(name)
    for sub in LAYOUTS[name]:
        if locate(Path(root) / sub, MARKERS[name]) is not None:
            return Path(root) / sub
    expected = Path(root) / LAYOUTS[name][0] / MARKERS[name]
    raise FileNotFoundError(f"{name}: expected {expected} (or {expected.name}.gz); {_fix(name, root)}")


def available(root) -> list[str]:
    """Names of the datasets whose metadata is present under `root`, in registry order."""
    return [name for name in MARKERS if any(locate(Path(root) / s, MARKERS[name]) for s in LAYOUTS[name])]


def _required(folder: Path, filename: str, name: str) -> Path:
    path = locate(folder, filename)
    if path is None:
        raise FileNotFoundError(f"{name}: expected {folder / filename} (or .gz); {_fix(name, folder.parent)}")
    return path


def open_bytes(path) -> io.BufferedIOBase:
    """Open a file for reading, decompressing it when it starts with the gzip magic bytes."""
    with open(path, "rb") as f:
        magic = f.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def _first_bad_line(path, skip: int, fields: int | None) -> str:
    """ at line N" of the first line (after `skip`) that is not UTF-8 or, if `fields` is given, does not hold
    `fields` whitespace-separated fields; "" if none is found. Only called once a read has failed."""
    try:
        with open_bytes(path) as f:
            for number, line in enumerate(f, 1):
                if number <= skip or not line.strip():
                    continue
                text = line.decode("utf-8")
                if fields is not None and len(text.split()) != fields:
                    return f" at line {number} ({len(text.split())} fields, expected {fields})"
    except UnicodeDecodeError:
        return f" at line {number}"
    except (OSError, EOFError, zlib.error):
        pass
    return ""


@contextmanager
def _reading(path, name: str, skip: int = 0, fields: int | None = None):
    """Turn any failure to parse `path` into one ValueError that names the file (and the line where known)."""
    fix = f"replace the file: {_fix(name, Path(path).parent.parent)}"
    try:
        yield
    except (EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise ValueError(f"{path}: truncated or corrupt gzip file ({err}); {fix}") from None
    except pd.errors.EmptyDataError:
        raise ValueError(f"{path}: the file is empty; {fix}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not UTF-8 text{_first_bad_line(path, 0, None)}; {fix}") from None
    except (pd.errors.ParserError, ValueError, TypeError) as err:
        detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot parse{_first_bad_line(path, skip, fields)} ({detail}); {fix}") from None


_REPLACE = "replace the file (`repro data download NAME --root DIR`, or `repro data synth NAME --root DIR` for a twin)"


def _columns(df: pd.DataFrame, columns, path) -> None:
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}; found {list(df.columns)[:12]}; {_REPLACE}")


def _values(values: np.ndarray, allowed, column: str, path) -> np.ndarray:
    values = np.asarray(values)
    bad = np.setdiff1d(np.unique(values), np.asarray(list(allowed)))
    if bad.size:
        raise ValueError(f"{path}: column {column!r} has values {bad[:10].tolist()} outside {sorted(allowed)}; "
                         f"{_REPLACE}")
    return values.astype(np.int64)


def _frame(inputs, y, a, split) -> pd.DataFrame:
    return pd.DataFrame({"input": inputs, "y": np.asarray(y, np.int64), "a": np.asarray(a, np.int64),
                         "split": np.asarray(split, np.int64)})


def read_waterbirds(folder) -> pd.DataFrame:
    """metadata.csv (img_id, img_filename, y, split, place, place_filename); a = place."""
    path = _required(Path(folder), "metadata.csv", "waterbirds")
    with _reading(path, "waterbirds"), open_bytes(path) as f:
        df = pd.read_csv(f)
    _columns(df, ("img_filename", "y", "split", "place"), path)
    return _frame(df["img_filename"].astype(str).to_numpy(), _values(df["y"], (0, 1), "y", path),
                  _values(df["place"], (0, 1), "place", path), _values(df["split"], (0, 1, 2), "split", path))


def read_celeba(folder) -> pd.DataFrame:
    """list_attr_celeba.txt + list_eval_partition.txt; y = Blond_Hair, a = Male (-1 -> 0, 1 -> 1)."""
    folder = Path(folder)
    attr_path = _required(folder, "list_attr_celeba.txt", "celeba")
    part_path = _required(folder, "list_eval_partition.txt", "celeba")
    with open_bytes(attr_path) as f, _reading(attr_path, "celeba"):
        count = f.readline().strip()
        names = f.readline().decode().split()
    if not count:
        raise ValueError(f"{attr_path}: the file is empty; replace the file: {_fix('celeba', folder.parent)}")
    _columns(pd.DataFrame(columns=names), ("Blond_Hair", "Male"), attr_path)
    with _reading(attr_path, "celeba", skip=2, fields=1 + len(names)), open_bytes(attr_path) as f:
        f.readline(), f.readline()
        attrs = pd.read_csv(f, sep=r"\s+", header=None, names=["file", *names], usecols=["file", "Blond_Hair", "Male"],
                            dtype={"file": str, "Blond_Hair": np.int64, "Male": np.int64}, engine="c")
    if not count.isdigit() or int(count) != len(attrs):
        raise ValueError(f"{attr_path}: first line says {count.decode(errors='replace')!r} images but {len(attrs)} "
                         f"rows follow (a truncated file?); replace the file: {_fix('celeba', folder.parent)}")
    with _reading(part_path, "celeba", fields=2), open_bytes(part_path) as f:
        part = pd.read_csv(f, sep=r"\s+", header=None, names=["file", "split"], dtype={"file": str}, engine="c")
    files = attrs["file"].to_numpy()
    if len(part) != len(attrs) or not np.array_equal(part["file"].to_numpy(), files):
        if set(part["file"]) != set(files):
            extra = sorted(set(part["file"]) ^ set(files))[:5]
            raise ValueError(f"{attr_path} and {part_path} list different images, e.g. {extra}; {_REPLACE}")
        part = part.set_index("file").loc[files].reset_index()
    y = _values(attrs["Blond_Hair"], (-1, 1), "Blond_Hair", attr_path)
    a = _values(attrs["Male"], (-1, 1), "Male", attr_path)
    split = _values(part["split"], (0, 1, 2), "split", part_path)
    return _frame(np.char.add("img_align_celeba/", files.astype(str)).astype(object), (y + 1) // 2, (a + 1) // 2, split)


def read_civilcomments(folder) -> pd.DataFrame:
    """all_data_with_identities.csv (WILDS v1.0); y = toxicity >= 0.5, a = any of 8 identities >= 0.5."""
    path = _required(Path(folder), "all_data_with_identities.csv", "civilcomments")
    with _reading(path, "civilcomments"), open_bytes(path) as f:
        df = pd.read_csv(f, index_col=0)
    _columns(df, ("comment_text", "split", "toxicity", *CIVIL_IDENTITIES), path)
    split_names = df["split"].astype(str).to_numpy()
    bad = sorted(set(np.unique(split_names)) - set(CIVIL_SPLITS))
    if bad:
        raise ValueError(f"{path}: column 'split' has values {bad[:10]} outside {list(CIVIL_SPLITS)}; {_REPLACE}")
    split = np.select([split_names == s for s in CIVIL_SPLITS], list(CIVIL_SPLITS.values()))
    with _reading(path, "civilcomments"):
        toxicity = df["toxicity"].to_numpy(dtype=float)
        identity_values = df[list(CIVIL_IDENTITIES)].to_numpy(dtype=float)
    if np.isnan(toxicity).any():
        raise ValueError(f"{path}: column 'toxicity' has {int(np.isnan(toxicity).sum())} missing values")
    identity = (identity_values >= 0.5).any(axis=1)  # NaN >= 0.5 is False
    texts = df["comment_text"].fillna("").astype(str).to_numpy(dtype=object)
    return _frame(texts, toxicity >= 0.5, identity, split)


def read_multinli(folder) -> pd.DataFrame:
    """metadata_random.csv (unnamed index, gold_label, sentence2_has_negation, split); input = row index."""
    path = _required(Path(folder), "metadata_random.csv", "multinli")
    with _reading(path, "multinli"), open_bytes(path) as f:
        df = pd.read_csv(f, index_col=0)
    _columns(df, ("gold_label", "sentence2_has_negation", "split"), path)
    return _frame(np.arange(len(df), dtype=np.int64), _values(df["gold_label"], (0, 1, 2), "gold_label", path),
                  _values(df["sentence2_has_negation"], (0, 1), "sentence2_has_negation", path),
                  _values(df["split"], (0, 1, 2), "split", path))


READERS = {
    "waterbirds": read_waterbirds,
    "celeba": read_celeba,
    "civilcomments": read_civilcomments,
    "multinli": read_multinli,
}


def read(name: str, root) -> pd.DataFrame:
    """The metadata of dataset `name` found under data root `root`: columns input, y, a, split."""
    _check_name(name)
    return READERS[name](find_root(name, root))


def fingerprint(name: str, root) -> str:
    """sha256 (16 hex) of the dataset's metadata file and, for a twin, its SYNTHETIC.json.

    ERM configs carry it, so a run is recomputed when the data under the same root change (e.g. a twin
    rewritten at another scale)."""
    import hashlib

    folder = find_root(name, root)
    digest = hashlib.sha256()
    for path in (locate(folder, MARKERS[name]), folder / "SYNTHETIC.json"):
        if path is not None and path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
