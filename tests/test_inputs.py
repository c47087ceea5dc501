import json

import numpy as np
import pytest
import torch

from tests.conftest import image_data
from repro import erm, inputs
from repro.data import GroupData


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory):
    """40 random 80x80 JPEGs: larger than inputs.IN_MEMORY_MAX_SIZE, so they go through the DataLoader."""
    return image_data(tmp_path_factory.mktemp("jpegs"), (24, 6, 10), size=80, suffix=".jpg")


def _cfg(**kw):
    return erm.default_config("waterbirds", "smoke", data_root="memory",
                              **{"epochs": 2, "batch_size": 8, "image_size": 72, **kw})


def test_batches_do_not_depend_on_the_number_of_workers(jpegs):
    cfg = _cfg()
    order = np.random.default_rng(0).permutation(24)
    seen = []
    for workers in (0, 2):
        batches = inputs.Inputs(jpegs, cfg, workers=workers).batches(order, 8, train=True, epoch=3)
        seen.append([(rows.tolist(), x) for rows, x in batches])
    assert [r for r, _ in seen[0]] == [r for r, _ in seen[1]]
    for (_, a), (_, b) in zip(*seen):
        assert a.shape == (8, 3, 72, 72) and torch.equal(a, b)
    again = [x for _, x in inputs.Inputs(jpegs, cfg, workers=0).batches(order, 8, train=True, epoch=4)]
    assert not torch.equal(again[0], seen[0][0][1])  # another epoch, other augmentations


def test_training_losses_are_identical_for_0_and_2_loader_workers(jpegs, monkeypatch, tmp_path):
    monkeypatch.setattr(erm, "load_data", lambda config: jpegs)
    out = []
    for workers in ("0", "2"):
        monkeypatch.setenv(inputs.LOADER_WORKERS_ENV, workers)
        (tmp_path / workers).mkdir()
        out.append(erm.train(_cfg(), tmp_path / workers))
    assert [h["loss"] for h in out[0]["history"]] == [h["loss"] for h in out[1]["history"]]
    assert json.dumps(out[0]) == json.dumps(out[1])


@pytest.mark.parametrize("content", [b"", b"not an image at all", "truncated"])
def test_unreadable_image_is_named(jpegs, tmp_path, content):
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(open(jpegs.inputs[0], "rb").read()[:200] if content == "truncated" else content)
    data = GroupData("waterbirds", "image", np.array([str(bad)] * 4, dtype=object), np.zeros(4, int),
                     np.zeros(4, int), np.zeros(4, int), root=str(tmp_path))
    for workers in (0, 1):
        with pytest.raises(ValueError, match=f"{bad}: not a readable image") as err:
            list(inputs.Inputs(data, _cfg(), workers=workers).batches(np.arange(4), 2, train=False))
        assert "\n" not in str(err.value)


def test_tokens_are_cached_on_disk_next_to_the_data(tmp_path):
    texts = np.array(["a fine article", "you are an idiot", "as for the women people, good plan"], dtype=object)
    data = GroupData("civilcomments", "text", texts, np.array([0, 1, 0]), np.array([0, 0, 1]), np.zeros(3, int),
                     root=str(tmp_path))
    first = inputs.cached_tokens(data, "bert-micro", 16)
    files = list((tmp_path / ".tokens").glob("*.safetensors"))
    assert len(files) == 1
    second = inputs.cached_tokens(data, "bert-micro", 16)
    assert all(torch.equal(first[k], second[k]) and second[k].dtype == torch.int64 for k in first)
    inputs.cached_tokens(data, "bert-micro", 12)  # another max_length is another file
    assert len(list((tmp_path / ".tokens").glob("*.safetensors"))) == 2
