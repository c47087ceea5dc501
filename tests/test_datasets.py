"""The dataset registry: every record is complete and consistent, and a fifth dataset is one new module plus its
hyperparameters (a toy dataset registered from a temporary module gets its Table 2 rows and a smoke ERM run)."""
import importlib
import textwrap

import numpy as np
import pytest

from repro import cli, data, datasets, erm, features, hparams, metadata, plan, synth
from repro.datasets.base import Dataset


@pytest.mark.parametrize("name", datasets.names())
def test_every_record_is_consistent(name):
    d = datasets.get(name)
    assert isinstance(d, Dataset) and d.name == name
    assert len(d.table2) == d.n_classes and all(len(groups) == d.n_attrs for _, groups in d.table2)
    assert d.paper_counts().shape == (3, d.n_classes, d.n_attrs)
    assert set(d.paper_minority) <= set(range(d.n_classes * d.n_attrs))
    assert {"smoke", "cpu"} <= set(d.twin_scales)
    assert d.kind in ("image", "text", "tokens") and d.layouts and d.marker and d.sources
    assert all(name in hparams.ERM[p] for p in hparams.PROFILES)


def test_lists_of_datasets_derive_from_the_registry():
    names = list(datasets.names())
    assert names == ["waterbirds", "celeba", "civilcomments", "multinli"]  # registry order: tables, twin seeds
    assert list(data.PAPER_TABLE2["dataset"].unique()) == names
    assert [row["dataset"] for row in hparams.table("smoke")] == names
    assert plan.train_size("celeba", "paper") == 162770 == datasets.get("celeba").n_train


TOY = '''
    """A toy two-class image dataset, defined in one module as a new dataset would be."""
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from repro import files, pictures
    from repro.datasets import waterbirds
    from repro.datasets.base import Dataset


    def read(folder):
        path = files.required(Path(folder), "toy.csv", "toy")
        df = pd.read_csv(path)
        return files.frame(df["file"].to_numpy(dtype=object), df["y"], df["a"], df["split"])


    def load(folder, frame, check_files=True):
        paths = np.array([str(folder / f) for f in frame["input"]], dtype=object)
        if check_files:
            files.check_files(paths, "toy")
        return paths, None


    def write_twin(folder, y, a, split, rng, image_size):
        names = [f"img/{i}.jpg" for i in range(len(y))]
        pd.DataFrame({"file": names, "y": y, "a": a, "split": split}).to_csv(folder / "toy.csv", index=False)
        pictures.save_jpegs(pictures.images(waterbirds.backgrounds, waterbirds.shapes, y, a, rng, image_size),
                            [folder / f for f in names])


    DATASET = Dataset(
        name="toy", classes=("ellipse", "star"), attributes=("land", "water"), kind="image", layouts=("toy",),
        marker="toy.csv", read=read, load=load, write_twin=write_twin,
        table2=((.5, ((.4, .8, 40, 8, 12), (.1, .2, 10, 8, 12))), (.5, ((.1, .2, 10, 8, 12), (.4, .8, 40, 8, 12)))),
        twin_scales={"smoke": 1.0, "cpu": 1.0}, paper_minority=(1, 2),
        sources=(dict(name="toy.tar.gz", url="http://example.invalid/toy.tar.gz", unpack=True),))
'''


@pytest.fixture
def toy(tmp_path, monkeypatch):
    """Register the toy dataset from a module written to a temporary folder, with smoke hyperparameters."""
    (tmp_path / "toy_dataset.py").write_text(textwrap.dedent(TOY))
    monkeypatch.syspath_prepend(str(tmp_path))
    record = importlib.import_module("toy_dataset").DATASET
    monkeypatch.setitem(datasets.REGISTRY, "toy", record)
    monkeypatch.setitem(hparams.ERM["smoke"], "toy", dict(
        model="cnn-small", optimizer="adamw", lr=1e-3, schedule="cosine", batch_size=16, weight_decay=1e-4, epochs=1,
        pretrained=False, model_kw={"widths": [4, 8, 8, 8]}))
    yield record
    importlib.invalidate_caches()


def test_a_toy_dataset_is_one_module(toy, tmp_path, monkeypatch):
    monkeypatch.setenv("REPRO_PROGRESS", "0")
    root = tmp_path / "data"
    synth.write("toy", root, "smoke")
    assert metadata.available(root) == ["toy"]

    # its Table 2 rows: as printed, and recomputed from the twin (scale 1: the same counts)
    paper = data.paper_table2(["toy"])
    assert list(paper["group"]) == [0, 1, 2, 3] and list(paper["y"]) == ["ellipse", "ellipse", "star", "star"]
    ours = data.composition(root)
    assert ours[["train", "val", "test"]].to_numpy().tolist() == paper[["train", "val", "test"]].to_numpy().tolist()
    assert np.allclose(ours["p_g"], [.4, .1, .1, .4])

    # everything else knows it: the CLI, the hyperparameter table, the plan's sizes
    assert "toy" in cli.parser().parse_args(["data", "synth", "toy", "--root", str(root)]).names
    assert [r["dataset"] for r in hparams.table("smoke")][-1] == "toy"
    assert plan.train_size("toy", "smoke") == 100

    # one smoke ERM run, with its features cached for the last-layer methods
    path = erm.run("toy", "smoke", data_root=str(root), store=tmp_path / "runs")
    f = features.load(path)
    assert f["features_heldout"].shape[0] == 16 and f["features_test"].shape[0] == 48
    assert set(f["g_test"].numpy()) == {0, 1, 2, 3}


def test_an_unknown_dataset_names_the_registered_ones():
    with pytest.raises(ValueError, match="unknown dataset 'toy'; choose one of waterbirds, celeba"):
        datasets.get("toy")
    with pytest.raises(ValueError, match="unknown dataset"):
        erm.default_config("toy", "smoke")
