"""Readers of the official metadata files: the real files (data/metadata), fixtures, and every error path."""
import gzip
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from repro import data, metadata

FIXTURES = Path(__file__).parent / "fixtures" / "root"
from tests.conftest import REAL_METADATA as REAL


def _counts(df: pd.DataFrame, n_attrs: int) -> np.ndarray:
    """(groups, 3) counts per group g = y * n_attrs + a and split."""
    table = np.zeros((df["y"].max() * n_attrs + n_attrs, 3), np.int64)
    np.add.at(table, (df["y"] * n_attrs + df["a"], df["split"]), 1)
    return table


def test_real_waterbirds_counts_are_the_official_ones():
    df = metadata.read("waterbirds", REAL)
    assert _counts(df, 2).tolist() == [[3498, 467, 2255], [184, 466, 2255], [56, 133, 642], [1057, 133, 642]]


@pytest.mark.parametrize("name", ["celeba", "multinli"])
def test_real_counts_equal_paper_table2(name):
    df = metadata.read(name, REAL)
    paper = data.PAPER_TABLE2[data.PAPER_TABLE2.dataset == name][["train", "val", "test"]].to_numpy()
    assert np.array_equal(_counts(df, 2), paper)
    assert list(df.columns) == ["input", "y", "a", "split"]
    assert all(df[c].dtype == np.int64 for c in ("y", "a", "split"))


def test_real_celeba_reads_in_under_two_seconds():
    start = time.perf_counter()
    df = metadata.read("celeba", REAL)
    assert time.perf_counter() - start < 2.0
    assert len(df) == 202_599 and df["input"].iloc[0] == "img_align_celeba/000001.jpg"


def test_fixtures_read_exact_values():
    assert metadata.available(FIXTURES) == ["waterbirds", "celeba", "civilcomments", "multinli"]
    wb = metadata.read("waterbirds", FIXTURES)
    assert wb[["y", "a", "split"]].to_numpy().tolist() == [[1, 1, 2], [1, 0, 0], [0, 0, 0], [0, 1, 1]]
    ce = metadata.read("celeba", FIXTURES)  # gzip-compressed fixture, CRLF lines as the official files
    assert ce[["y", "a", "split"]].to_numpy().tolist() == [[1, 0, 0], [1, 1, 0], [0, 1, 1], [0, 0, 2]]
    cc = metadata.read("civilcomments", FIXTURES)  # 0.5 counts as present, NaN and 0.4 as absent
    assert cc["y"].tolist() == [0, 1, 1, 0, 0] and cc["a"].tolist() == [1, 0, 1, 0, 0]
    assert cc["split"].tolist() == [0, 0, 1, 2, 2] and cc["input"].iloc[1] == "What an idiot, honestly."
    mn = metadata.read("multinli", FIXTURES)
    assert mn.to_numpy().tolist() == [[0, 2, 0, 2], [1, 1, 0, 0], [2, 0, 1, 0], [3, 0, 0, 1], [4, 1, 1, 0]]


def test_plain_and_gzip_read_the_same(tmp_path):
    folder = tmp_path / "waterbirds"
    folder.mkdir()
    with open(FIXTURES / "waterbirds" / "metadata.csv", "rb") as f, gzip.open(folder / "metadata.csv.gz", "wb") as g:
        g.write(f.read())
    pd.testing.assert_frame_equal(metadata.read("waterbirds", tmp_path), metadata.read("waterbirds", FIXTURES))


def test_find_root_accepts_the_unpacked_tarball_layout(tmp_path):
    nested = tmp_path / "waterbirds" / "waterbird_complete95_forest2water2"
    shutil.copytree(FIXTURES / "waterbirds", nested)
    assert metadata.find_root("waterbirds", tmp_path) == nested
    assert metadata.available(tmp_path) == ["waterbirds"]


def test_missing_file_names_path_and_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"waterbirds/metadata.csv.*repro data download waterbirds"):
        metadata.read("waterbirds", tmp_path)
    (tmp_path / "celeba").mkdir()
    shutil.copy(FIXTURES / "celeba" / "list_attr_celeba.txt.gz", tmp_path / "celeba")
    with pytest.raises(FileNotFoundError, match="list_eval_partition.txt"):
        metadata.read("celeba", tmp_path)


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError, match="waterbirds, celeba, civilcomments, multinli"):
        metadata.read("imagenet", FIXTURES)


def _edited(tmp_path, name, filename, edit):
    shutil.copytree(FIXTURES / name, tmp_path / name)
    path = tmp_path / name / filename
    path.write_text(edit(path.read_text()))
    return tmp_path


@pytest.mark.parametrize("name, filename, old, new, message", [
    ("waterbirds", "metadata.csv", ",place,", ",location,", r"metadata.csv: missing column\(s\) \['place'\]"),
    ("multinli", "metadata_random.csv", "3,0,0,1", "3,0,0,7", r"metadata_random.csv: column 'split' has values \[7\]"),
    ("multinli", "metadata_random.csv", "1,1,0,0", "1,3,0,0", r"column 'gold_label' has values \[3\]"),
    ("civilcomments", "all_data_with_identities.csv", ",val,", ",dev,", r"column 'split' has values \['dev'\]"),
], ids=["missing column", "unknown split code", "label out of range", "unknown civilcomments split"])
def test_malformed_metadata_is_a_clear_error(tmp_path, name, filename, old, new, message):
    root = _edited(tmp_path, name, filename, lambda s: s.replace(old, new))
    with pytest.raises(ValueError, match=message):
        metadata.read(name, root)


def test_celeba_files_must_list_the_same_images(tmp_path):
    shutil.copytree(FIXTURES / "celeba", tmp_path / "celeba")
    with gzip.open(tmp_path / "celeba" / "list_eval_partition.txt.gz", "wt") as f:
        f.write("000001.jpg 0\n000002.jpg 0\n000003.jpg 1\n000009.jpg 2\n")
    with pytest.raises(ValueError, match="list different images"):
        metadata.read("celeba", tmp_path)
