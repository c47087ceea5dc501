"""The package as pip ships it: a wheel with every package file, its name, licence, citation, supported Python."""
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


# Supported Python: the Makefile's PYTHON_VERSION, pyproject.toml, environment.yml and the README agree.
MAKE_VERSION = re.search(r"^PYTHON_VERSION := (\S+)$", (REPO / "Makefile").read_text(), re.MULTILINE)[1]


def test_one_supported_python_everywhere():
    allowed = SpecifierSet(PROJECT["requires-python"])
    assert f"{MAKE_VERSION}.0" in allowed and f"{MAKE_VERSION}.99" in allowed
    major, minor = map(int, MAKE_VERSION.split("."))
    assert f"{major}.{minor - 1}.99" not in allowed and f"{major}.{minor + 1}.0" not in allowed
    assert f"python={MAKE_VERSION}" in (REPO / "environment.yml").read_text()
    assert f"Supported Python: {MAKE_VERSION}" in (REPO / "README.md").read_text()


def _fake_python(path: Path, version: str) -> Path:
    """An interpreter stand-in: prints `version` for -c, and for `-m venv DIR` makes DIR/bin/python a copy."""
    path.write_text(f'#!/bin/sh\ncase "$1" in\n  -c) echo {version} ;;\n'
                    f'  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;\nesac\n')
    path.chmod(0o755)
    return path


def _make(folder: Path, *args: str) -> subprocess.CompletedProcess:
    """make on a copy of the Makefile in `folder` (never the repository's .venv)."""
    shutil.copy2(REPO / "Makefile", folder / "Makefile")
    for name in ("requirements.lock", "pyproject.toml"):
        (folder / name).touch()
    return subprocess.run(["make", "--no-print-directory", "-C", str(folder), *args], capture_output=True, text=True)


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


@needs_make
@pytest.mark.parametrize("target", ["env", "lock"])
@pytest.mark.parametrize("interpreter", ["3.10", "3.12", "/bin/false"])
def test_make_stops_with_one_line_when_python_is_not_the_supported_one(tmp_path, target, interpreter):
    python = interpreter if interpreter.startswith("/") else str(_fake_python(tmp_path / "python", interpreter))
    done = _make(tmp_path, target, f"PYTHON={python}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode != 0 and len(errors) == 1, done.stderr
    assert f"needs Python {MAKE_VERSION} but '{python}' is" in errors[0]
    assert f"PYTHON=/path/to/python{MAKE_VERSION}" in errors[0]
    assert not (tmp_path / ".venv").exists()


@needs_make
def test_make_creates_the_venv_with_the_supported_python(tmp_path):
    done = _make(tmp_path, "env", f"PYTHON={_fake_python(tmp_path / 'python', MAKE_VERSION)}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".venv" / "bin" / "python").is_file() and (tmp_path / ".venv" / ".installed").is_file()


@needs_make
def test_make_stops_when_an_existing_venv_has_another_python(tmp_path):
    _fake_python(tmp_path / "python", "3.12")
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    shutil.copy2(tmp_path / "python", tmp_path / ".venv" / "bin" / "python")
    done = _make(tmp_path, "env", f"PYTHON={_fake_python(tmp_path / 'ok', MAKE_VERSION)}")
    assert done.returncode != 0 and "'.venv/bin/python' is Python 3.12; remove .venv" in done.stderr
    assert not (tmp_path / ".venv" / ".installed").exists()
