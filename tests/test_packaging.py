"""The package as pip ships it: a wheel with every package file, its name, licence and citation."""
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet

import repro
from repro import models
from tests.conftest import REPO
from tests.test_repository import _repository_files

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PAPER_TITLE = "On the Unreasonable Effectiveness of Last-Layer Retraining"
PAPER_AUTHORS = ["Hill", "LaBonte", "Zhang", "Muthukumar"]


def _package_files() -> list[str]:
    """Every file of src/ that a clone holds (tracked or new, not ignored), relative to src/."""
    return sorted(name.removeprefix("src/") for name in _repository_files() if name.startswith("src/"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built offline, with the locked setuptools, from a copy of the files a clone would hold."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ["pyproject.toml", "README.md", "LICENSE"] + [f"src/{f}" for f in _package_files()]:
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, source / name)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                           "--quiet", "-w", str(out), str(source)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    (built,) = out.glob("*.whl")
    return built


def test_wheel_holds_every_file_of_the_package(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f for f in _package_files() if f not in names]
    assert not missing, f"files of src/ that the wheel lacks (pyproject.toml package-data): {missing}"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)


def test_wheel_metadata_names_the_distribution_the_command_and_python(wheel):
    archive = zipfile.ZipFile(wheel)
    info = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
    meta = Parser().parsestr(archive.read(info).decode())
    assert meta["Name"] == PROJECT["name"] != "repro"
    assert meta["Version"] == repro.__version__
    assert meta["License-Expression"] == "MIT"
    assert SpecifierSet(meta["Requires-Python"]) == SpecifierSet(PROJECT["requires-python"])
    entry_points = archive.read(info.replace("METADATA", "entry_points.txt")).decode()
    assert re.search(r"^repro = repro\.cli:main$", entry_points, re.MULTILINE)


def test_installed_wheel_builds_bert_from_its_own_model_configs(wheel, tmp_path):
    """A non-editable install (pip --target) reads the shipped BERT configs from inside itself."""
    target = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--target", str(target), str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (target / "bin" / "repro").is_file()  # the console script
    check = ("import sys; from pathlib import Path; from transformers import BertConfig; from repro import models; "
             "assert Path(models.__file__).is_relative_to(sys.argv[1]), models.__file__; "
             "[BertConfig.from_json_file(models.CONFIG_DIR / f) for f in models.SHIPPED_CONFIGS.values()]; "
             "net = models.build('bert-tiny', 2, pretrained=False); print(net.dim)")
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([sys.executable, "-c", check, str(target)], capture_output=True, text=True, env=env,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == "128"  # BERT-Tiny's hidden size, from the shipped config
    assert set(models.SHIPPED_CONFIGS) <= set(models.REGISTRY)


def test_distribution_name_is_used_wherever_pip_knows_the_package():
    name = PROJECT["name"]
    lock = (REPO / "requirements.lock").read_text()
    assert f"via {name} (pyproject.toml)" in lock and "via repro (pyproject.toml)" not in lock
    assert not re.search(r"^\s*#\s+repro \(pyproject", lock, re.MULTILINE)


def test_citation_cff_cites_this_project_and_prefers_the_paper():
    cff = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert cff["cff-version"] == "1.2.0"
    assert {"cff-version", "message", "title", "authors"} <= set(cff)
    assert cff["license"] == PROJECT["license"] and cff["version"] == repro.__version__
    paper = cff["preferred-citation"]
    assert {"type", "title", "authors"} <= set(paper)
    assert paper["title"] == PAPER_TITLE
    for person in cff["authors"] + paper["authors"]:
        assert person.get("name") or person.get("family-names"), person
    assert [a["family-names"] for a in paper["authors"]] == PAPER_AUTHORS
    assert paper["doi"] == "10.48550/arXiv.2512.01766" and paper["url"].endswith("2512.01766")


def test_license_is_mit_and_the_readme_points_to_it_and_to_the_data_licences():
    text = (REPO / "LICENSE").read_text()
    assert text.startswith("MIT License\n") and "The last-layer-retraining reproduction authors" in text
    readme = (REPO / "README.md").read_text()
    assert "(LICENSE)" in readme and "(data/metadata/SOURCES.md)" in readme and "(CITATION.cff)" in readme
