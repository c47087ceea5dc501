"""Shared fixtures: the vendored real metadata, run and data stores in temporary folders, the smoke book built once.

Nothing the suite computes lands in the repository: every run goes to a temporary run store ($REPRO_RUNS) and
every synthetic twin to a temporary data root ($REPRO_DATA); the smoke book is built in a temporary copy of the
book sources, so a user's own `runs/`, `data/` and `_build/` are left as they were.
"""
import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REAL_METADATA = REPO / "data" / "metadata"  # tracked in git; see data/metadata/SOURCES.md
SRC = str(REPO / "src")  # PYTHONPATH of a `repro` subprocess that runs elsewhere than in the repository


@pytest.fixture(scope="session", autouse=True)
def _temporary_stores(tmp_path_factory):
    """Point the run store and the default data root at temporary folders for the whole session."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("REPRO_RUNS", str(tmp_path_factory.mktemp("runs")))
        mp.setenv("REPRO_DATA", str(tmp_path_factory.mktemp("data")))
        yield


@pytest.fixture(scope="session")
def real_root() -> Path:
    """The folder of real metadata files (data/metadata, part of the repository)."""
    assert (REAL_METADATA / "SOURCES.md").is_file(), f"{REAL_METADATA} is missing: it is part of the repository"
    return REAL_METADATA


def copy_book_sources(target: Path) -> Path:
    """A copy of what `repro book` reads (config, TOC, templates, pages, params; the metadata linked, not copied)."""
    for item in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / item, target / item)
    for folder in ("book", "params"):
        shutil.copytree(REPO / folder, target / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (target / "data").mkdir(exist_ok=True)
    os.symlink(REAL_METADATA, target / "data" / "metadata")
    return target


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory, _temporary_stores) -> Path:
    """Build the whole smoke book once per session in a temporary copy; return its `_build/html` folder.

    Notebooks execute with the copy as working directory, so the params' relative data roots
    (data/synth/smoke) and the CSV downloads resolve inside it; runs go to the session's $REPRO_RUNS.
    """
    from repro import book

    root = copy_book_sources(tmp_path_factory.mktemp("smoke-book"))
    index = book.build("smoke", root=root)
    assert index == root / "_build" / "html" / "index.html" and index.is_file()
    return index.parent


def image_data(root: Path, splits, size: int = 32, seed: int = 0, suffix: str = ".png"):
    """A Waterbirds-named GroupData of random images written under `root`: the red channel carries y, the blue
    one a (= y for 75% of the images); splits = (n_train, n_val, n_test)."""
    import numpy as np
    from PIL import Image

    from repro.data import GroupData

    rng = np.random.default_rng(seed)
    n = sum(splits)
    y = rng.integers(0, 2, n)
    a = np.where(rng.random(n) < 0.75, y, 1 - y)
    paths = []
    for i in range(n):
        im = (rng.random((size, size, 3)) * 80).astype(np.uint8)
        im[..., 0] += np.uint8(150 * y[i])
        im[..., 2] += np.uint8(100 * a[i])
        Image.fromarray(im).save(root / f"{i}{suffix}")
        paths.append(str(root / f"{i}{suffix}"))
    return GroupData("waterbirds", "image", np.array(paths, dtype=object), y, a, np.repeat([0, 1, 2], splits),
                     root=str(root))


def book_tree(root: Path, toc_root: str) -> Path:
    """A copy of the book sources whose TOC lists only `toc_root` (book/<name>)."""
    root.mkdir(parents=True, exist_ok=True)
    copy_book_sources(root)
    (root / "_toc.yml").write_text(f"format: jb-book\nroot: {toc_root}\n")
    return root


def waiting_notebook(root: Path, seconds: float, marker: str = "") -> Path:
    """book/wait.ipynb: a page whose cell starts (if `marker` is set) a child process that ignores SIGTERM, then
    writes its pid to `marker`, and sleeps `seconds`; params/smoke/wait.yml sets both."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('profile = "cpu"\nparams_yaml = ""\nseconds = 0.0\nmarker = ""')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# A page that waits"), params, nbformat.v4.new_code_cell(
        "import subprocess, sys, time\n"
        "if marker:\n"
        "    child = subprocess.Popen([sys.executable, '-c', 'import os, signal, sys, time; '\n"
        "                              'signal.signal(signal.SIGTERM, signal.SIG_IGN); '\n"
        "                              'open(sys.argv[1], \"w\").write(str(os.getpid())); time.sleep(600)', marker])\n"
        "time.sleep(seconds)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, root / "book" / "wait.ipynb")
    (root / "params" / "smoke" / "wait.yml").write_text(f"seconds: {seconds}\nmarker: {marker!r}\n")
    return root
