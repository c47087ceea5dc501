"""The deposit archive: contents, run manifest, checksums, byte-for-byte determinism, and the smoke book's archive."""
import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import pytest

from repro import archive, book, cli, runs

REPO = Path(__file__).resolve().parents[1]


def _fake_build(root: Path, profile: str = "smoke") -> tuple[Path, dict]:
    """A built book as `repro book` leaves it (two pages, one CSV) and a run store: two ERM runs (this profile
    and another), a head on each, a damaged run, an unfinished one and one being computed."""
    (root / "_build" / "html" / "book").mkdir(parents=True)
    (root / "_build" / "html" / "index.html").write_text('<html><script src="_static/a.js"></script></html>')
    (root / "_build" / "html" / "book" / "intro.html").write_text("<html>intro</html>")
    (root / "_build" / "src" / "book" / "data").mkdir(parents=True)
    (root / "_build" / "src" / ".profile").write_text(profile)
    (root / "_build" / "src" / "book" / "data" / "figure1.csv").write_text("x,y\n1,2\n")
    (root / "params" / profile).mkdir(parents=True)
    (root / "params" / profile / "appendix_b.yml").write_text("synth_seed: 3\n")
    shutil.copy2(REPO / "requirements.lock", root / "requirements.lock")
    store, ids = root / "runs", {}
    ids["erm"] = runs.run_id("erm", {"dataset": "waterbirds", "profile": profile})
    ids["erm_other"] = runs.run_id("erm", {"dataset": "waterbirds", "profile": "other"})
    ids["heads"] = runs.run_id("heads", {"erm": ids["erm"], "lr": 0.1})
    ids["heads_other"] = runs.run_id("heads", {"erm": ids["erm_other"], "lr": 0.1})
    ids["svm"] = runs.run_id("svm", {"n_points": 3})  # no profile anywhere: kept
    for key, rid in ids.items():
        kind = key.split("_")[0]
        config = {"erm": {"dataset": "waterbirds", "profile": "other" if "other" in key else profile},
                  "heads": {"erm": ids["erm_other" if "other" in key else "erm"], "lr": 0.1},
                  "svm": {"n_points": 3}}[kind]
        run = store / kind / rid
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps(config))
        (run / "metrics.json").write_text('{"acc_wg": 0.5}')
        (run / "meta.json").write_text('{"wall_s": 1.5, "host": "vm", "pid": 7, "finished": 1795979862.4}')
        (run / "model.pt").write_bytes(b"weights")
        if kind == "heads":
            (run / "head.safetensors").write_bytes(b"head")  # the artifact a heads run must hold (runs.KINDS)
        runs.write_manifest(run)  # a run without a manifest is not served
        (run / "done").write_text("")
    damaged = store / "erm" / "0123456789abcdef"  # config does not hash to the id
    shutil.copytree(store / "erm" / ids["erm"], damaged)
    (store / "erm" / "fedcba9876543210").mkdir()  # interrupted: no `done`
    shutil.copytree(store / "erm" / ids["erm"], store / "erm" / f".tmp-{ids['erm']}-1-ab")  # not yet renamed
    return store, ids


def _unpack(path: Path, dest: Path) -> Path:
    with tarfile.open(path) as tar:
        names = tar.getnames()
        tar.extractall(dest, filter="data")
    assert len({n.split("/")[0] for n in names}) == 1, "one top-level folder"
    return dest / names[0].split("/")[0]


def _verify_sums(top: Path) -> dict[str, str]:
    """Check SHA256SUMS against every file, and that it lists every file but itself."""
    sums = dict(reversed(line.split("  ", 1)) for line in (top / "SHA256SUMS").read_text().splitlines())
    files = {p.relative_to(top).as_posix() for p in top.rglob("*") if p.is_file()} - {"SHA256SUMS"}
    assert set(sums) == files
    for name, digest in sums.items():
        assert hashlib.sha256((top / name).read_bytes()).hexdigest() == digest, name
    return sums


def test_archive_contents_manifest_and_checksums(tmp_path):
    store, ids = _fake_build(tmp_path)
    out = archive.write("smoke", root=tmp_path, store=store)
    assert out == tmp_path / "_build" / "repro-book-smoke.tar.gz"
    top = _unpack(out, tmp_path / "unpacked")
    assert top.name == "repro-book-smoke"
    sums = _verify_sums(top)
    assert set(sums) == {"html/index.html", "html/book/intro.html", "data/figure1.csv", "params/smoke/appendix_b.yml",
                         "requirements.lock", "runs/manifest.json", "README.md"}
    entries = json.loads((top / "runs" / "manifest.json").read_text())
    assert sorted((e["kind"], e["id"]) for e in entries) == [("erm", ids["erm"]), ("heads", ids["heads"]),
                                                             ("svm", ids["svm"])]  # not the other profile's
    assert [(e["kind"], e["id"]) for e in entries] == sorted((e["kind"], e["id"]) for e in entries)
    assert entries[0] == {"kind": "erm", "id": ids["erm"], "config": {"dataset": "waterbirds", "profile": "smoke"},
                          "metrics": {"acc_wg": 0.5}, "meta": {"wall_s": 1.5}}
    readme = (top / "README.md").read_text()
    assert "sha256sum -c SHA256SUMS" in readme and "make book PROFILE=smoke" in readme
    assert "book.pdf" not in readme  # no PDF was built


def test_artifacts_and_pdf_only_when_present_or_asked(tmp_path):
    store, ids = _fake_build(tmp_path)
    (tmp_path / "_build" / "book.pdf").write_bytes(b"%PDF-1.7")
    top = _unpack(archive.write("smoke", root=tmp_path, store=store, with_artifacts=True), tmp_path / "unpacked")
    sums = _verify_sums(top)
    assert {"book.pdf", f"runs/erm/{ids['erm']}/model.pt", f"runs/heads/{ids['heads']}/config.json"} <= set(sums)
    left_out = ("0123456789abcdef", "fedcba9876543210", ".tmp-", ids["erm_other"], ids["heads_other"])
    assert not any(key in name for name in sums for key in left_out)


def test_same_contents_give_the_same_bytes(tmp_path):
    store, _ = _fake_build(tmp_path)
    first = archive.write("smoke", root=tmp_path, store=store).read_bytes()
    for path in (tmp_path / "_build").rglob("*"):
        path.touch()  # new modification times must not change the archive
    second = archive.write("smoke", root=tmp_path, store=store).read_bytes()
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == sorted(m.name for m in members)
    assert {(m.mtime, m.uid, m.gid, m.uname, m.mode) for m in members} == {(archive.MTIME, 0, 0, "", 0o644)}


def test_unbuilt_or_other_profile_is_an_error(tmp_path):
    with pytest.raises(book.BookError, match=r"no built book .* run `repro book --profile smoke --archive`"):
        archive.write("smoke", root=tmp_path, store=tmp_path / "runs")
    store, _ = _fake_build(tmp_path, profile="cpu")
    with pytest.raises(book.BookError, match=r"holds the 'cpu' profile, not 'smoke'"):
        archive.write("smoke", root=tmp_path, store=store)


def test_with_artifacts_needs_archive(capsys, monkeypatch):
    monkeypatch.setattr(book, "build", lambda *a, **k: pytest.fail("built although the options were invalid"))
    assert cli.main(["book", "--profile", "smoke", "--with-artifacts"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: --with-artifacts only applies to --archive; add --archive"


@pytest.mark.slow
def test_smoke_book_archive_verifies_and_opens_offline(smoke_book, tmp_path):
    """The archive of the smoke book the suite builds once (tests/conftest.py), in its temporary copy."""
    root = smoke_book.parents[1]
    shutil.copy2(REPO / "requirements.lock", root / "requirements.lock")  # the copy holds only the book's sources
    out = archive.write("smoke", root=root)
    assert out == root / "_build" / "repro-book-smoke.tar.gz"
    top = _unpack(out, tmp_path)
    sums = _verify_sums(top)
    assert (top / "html" / "index.html").is_file() and (top / "html" / "book" / "intro.html").is_file()
    assert {"data/figure1.csv", "requirements.lock", "params/smoke/appendix_b.yml"} <= set(sums)
    assert any(name.startswith("html/") and name.endswith("figure1.csv") for name in sums)  # CSVs are in the HTML too
    scripts = set()
    for page in (top / "html").rglob("*.html"):
        scripts |= set(re.findall(r"<script[^>]*\ssrc=[\"']([^\"']+)", page.read_text()))
    external = sorted(s for s in scripts if re.match(r"(https?:)?//", s))
    assert scripts and not external, f"pages load scripts from the network: {external}"
    for src in scripts:  # every local script the index loads is in the archive
        if src in (top / "html" / "index.html").read_text():
            assert (top / "html" / src.split("?")[0]).is_file(), src
    entries = json.loads((top / "runs" / "manifest.json").read_text())
    assert entries and {"kind", "id", "config", "metrics"} <= set(entries[0])
    assert not any(name.startswith("runs/") and name != "runs/manifest.json" for name in sums)
    leaked = [name for name in sums if str(root) in (top / name).read_text(errors="ignore")]
    assert not leaked, f"paths of the building machine in {leaked[:5]}"
    env = re.search(r"environment (.*)", (top / "README.md").read_text())[1]
    assert "requirements.lock" in env
