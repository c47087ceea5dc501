"""The repository is self-contained: vendored files match their recorded checksums, no path of one machine."""
import hashlib
import re
import subprocess

from tests.conftest import REAL_METADATA, REPO

# Absolute paths that only exist on some machine, and the sibling folder this repository once read from.
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|root|Users|mnt|tmp/bash_jobs)/[\w.-]+|\.\./shared/")
TEXT_SUFFIXES = {".py", ".md", ".yml", ".yaml", ".toml", ".ipynb", ".cfg", ".txt", ".json", ".html", ".sh", ""}


def _repository_files() -> list[str]:
    """Tracked and untracked-but-not-ignored files (what a clone of this checkout would hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (REPO / f).is_file()]


def test_no_absolute_path_of_a_machine_in_the_repository():
    hits = []
    for name in _repository_files():
        path = REPO / name
        if path.suffix not in TEXT_SUFFIXES or path.stat().st_size > 2_000_000:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                hits.append(f"{name}:{number}: {line.strip()[:120]}")
    assert not hits, "paths that exist only on one machine:\n" + "\n".join(hits)


def test_vendored_metadata_is_tracked_and_matches_sources_md():
    files = set(_repository_files())
    table = re.findall(r"^\| [^|]+ \| `([^`]+\.gz)` \| [\d,]+ \| `([0-9a-f]{64})` \|", (REAL_METADATA / "SOURCES.md").read_text(),
                       re.MULTILINE)
    assert len(table) == 4, "SOURCES.md should list the four stored files with their sha256"
    for name, sha256 in table:
        path = REAL_METADATA / name
        assert path.relative_to(REPO).as_posix() in files, f"{path} is not part of the repository (.gitignore?)"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == sha256, f"{name}: checksum differs from SOURCES.md"


def test_layout_page_names_every_module_of_the_package():
    layout = (REPO / "book" / "layout.md").read_text().split("```", 2)[1]
    words = set(re.findall(r"[\w]+", layout))
    package = REPO / "src" / "repro"
    modules = {p.stem for p in package.glob("*.py") if p.stem != "__init__"} | \
        {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert modules - words == set(), "book/layout.md does not name these modules"
