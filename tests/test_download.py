"""Downloads, offline: verify(), the .part/rename path, unpacking, MANIFEST.json, and every failure path."""
import dataclasses
import hashlib
import io
import json
import tarfile
import urllib.error
from pathlib import Path

import pytest

from repro import datasets, download, metadata

FIXTURES = Path(__file__).parent / "fixtures" / "root"


def _set_sources(monkeypatch, name: str, sources: list) -> None:
    """Replace a dataset record's download sources for one test."""
    monkeypatch.setitem(datasets.REGISTRY, name, dataclasses.replace(datasets.get(name), sources=tuple(sources)))


def _targz(files: dict, folder: str = "") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, content in files.items():
            info = tarfile.TarInfo(f"{folder}{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def _opener(served: dict, calls: list):
    def opener(url):
        calls.append(url)
        if url not in served:
            raise urllib.error.URLError("no network in tests")
        return io.BytesIO(served[url])
    return opener


@pytest.fixture
def fake_multinli(monkeypatch):
    """Point the MultiNLI sources at in-memory bytes: metadata (sha256 pinned) + a features tarball."""
    meta = (FIXTURES / "multinli" / "metadata_random.csv").read_bytes()
    feats = {f: (FIXTURES / "multinli" / f).read_bytes() for f in
             ("cached_train_bert-base-uncased_128_mnli", "cached_dev_bert-base-uncased_128_mnli",
              "cached_dev_bert-base-uncased_128_mnli-mm")}
    tarball = _targz(feats, folder="multinli_features/")
    sources = [dict(name="metadata_random.csv", url="http://x/meta", sha256=hashlib.sha256(meta).hexdigest()),
               dict(name="multinli_bert_features.tar.gz", url="http://x/feat", unpack=True, flatten=True)]
    _set_sources(monkeypatch, "multinli", sources)
    return {"http://x/meta": meta, "http://x/feat": tarball}


def test_verify_checks_size_md5_and_sha256(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"abc")
    sha = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert download.verify(path, md5="900150983cd24fb0d6963f7d28e17f72", sha256=sha, size=3) == sha
    with pytest.raises(download.ChecksumError, match="md5 .* expected 0000"):
        download.verify(path, md5="0000")
    with pytest.raises(download.ChecksumError, match="3 bytes, expected 4"):
        download.verify(path, size=4)


def test_download_unpacks_and_records_a_manifest(tmp_path, fake_multinli):
    calls = []
    folder = download.download("multinli", tmp_path, opener=_opener(fake_multinli, calls))
    assert calls == ["http://x/meta", "http://x/feat"]
    assert metadata.read("multinli", tmp_path)["y"].tolist() == [2, 1, 0, 0, 1]
    assert (folder / "cached_dev_bert-base-uncased_128_mnli-mm").is_file()  # flattened out of the tarball folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["MANIFEST.json", "metadata_random.csv", "cached_train_bert-base-uncased_128_mnli",
         "cached_dev_bert-base-uncased_128_mnli", "cached_dev_bert-base-uncased_128_mnli-mm"])
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    assert manifest["multinli_bert_features.tar.gz"]["sha256"] == hashlib.sha256(fake_multinli["http://x/feat"]).hexdigest()
    assert manifest["multinli_bert_features.tar.gz"]["unpacked"] is True
    download.download("multinli", tmp_path, opener=_opener(fake_multinli, calls))  # verified files are reused
    assert len(calls) == 2


def test_wrong_checksum_is_deleted_with_a_manual_step(tmp_path, fake_multinli):
    fake_multinli["http://x/meta"] = b"tampered\n"
    with pytest.raises(download.ChecksumError, match=r"sha256 .*deleted it.*by hand.*repro data download multinli"):
        download.download("multinli", tmp_path, opener=_opener(fake_multinli, []))
    assert not (tmp_path / "multinli" / "metadata_random.csv").exists()
    assert not list((tmp_path / "multinli").glob("*.part"))


def test_truncated_archive_is_deleted_and_nothing_unpacked(tmp_path, fake_multinli):
    fake_multinli["http://x/feat"] = fake_multinli["http://x/feat"][:-40]
    with pytest.raises(ValueError, match="truncated or corrupt archive.*deleted it"):
        download.download("multinli", tmp_path, opener=_opener(fake_multinli, []))
    assert sorted(p.name for p in (tmp_path / "multinli").iterdir()) == ["MANIFEST.json", "metadata_random.csv"]


def test_network_failure_prints_the_manual_step(tmp_path):
    with pytest.raises(download.DownloadError, match=r"drive.google.com/uc\?id=0B7EVK8r0v71pblRyaVFSWGxPY0U.*list_attr_celeba.txt"):
        download.download("celeba", tmp_path, opener=_opener({}, []))


def test_a_file_put_in_place_by_hand_is_verified_and_used(tmp_path, monkeypatch):
    content = b"000001.jpg 0\r\n"
    _set_sources(monkeypatch, "celeba", [
        dict(name="list_eval_partition.txt", gdrive="id", md5=hashlib.md5(content).hexdigest())])
    (tmp_path / "celeba").mkdir()
    (tmp_path / "celeba" / "list_eval_partition.txt").write_bytes(content)
    download.download("celeba", tmp_path, opener=_opener({}, []))  # would raise if it tried the network
    assert "list_eval_partition.txt" in json.loads((tmp_path / "celeba" / "MANIFEST.json").read_text())


def test_unknown_dataset_lists_choices(tmp_path):
    with pytest.raises(ValueError, match="choose one of waterbirds, celeba, civilcomments, multinli"):
        download.download("imagenet", tmp_path)


def _link_targz(name: str, target: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname = tarfile.SYMTYPE, target
        tar.addfile(info)
    return buf.getvalue()


@pytest.mark.parametrize("member, why", [("../evil.txt", "leaves the target folder"),
                                         ("evil.txt", "link to an absolute path")])
def test_an_archive_member_escaping_the_folder_is_refused_and_says_why(tmp_path, fake_multinli, member, why):
    fake_multinli["http://x/feat"] = _targz({member: b"x"}) if ".." in member else _link_targz(member, "/etc/passwd")
    with pytest.raises(download.RefusedArchive, match=rf"refused member '{member}': .*({why})") as err:
        download.download("multinli", tmp_path, opener=_opener(fake_multinli, []))
    assert "truncated" not in str(err.value) and not (tmp_path / "evil.txt").exists()
    assert not list((tmp_path / "multinli").glob(".unpack-*"))


def test_a_zip_member_escaping_the_folder_is_refused(tmp_path):
    import zipfile
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../evil.txt", b"x")
    (tmp_path / "out").mkdir()
    with pytest.raises(download.RefusedArchive, match="refused member '../evil.txt'"):
        download.unpack(archive, tmp_path / "out")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_file_as_root_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(ValueError, match="is a file, not a folder"):
        download.download("multinli", tmp_path / "f", opener=_opener({}, []))
