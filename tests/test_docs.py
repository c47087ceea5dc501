"""The README is a short front door and the pages of the book's "Using this repository" part hold the rest: the
README's size, first screen, links and citation; every page in the TOC; every number that can be computed (the
lock's package count, the vendored metadata's size, the limits and the rehearsal's shrinks) equal to what the
code computes; and the README's measurements repeated unchanged on the pages."""
import re
from pathlib import Path

import pytest
import yaml

from repro import book, cost, files, provenance, rehearse
from tests.conftest import REAL_METADATA, REPO

README = REPO / "README.md"
PART = "Using this repository"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _flat(text: str) -> str:
    """Text with every run of whitespace as one space (sentences wrap anywhere)."""
    return " ".join(text.split())


def _part_pages() -> list[Path]:
    """The Markdown pages listed under the "Using this repository" caption of _toc.yml, in order."""
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    (part,) = [p for p in toc["parts"] if p["caption"] == PART]
    return [REPO / f"{c['file']}.md" for c in part["chapters"]]


def _pages_text() -> str:
    return _flat("\n".join(p.read_text() for p in _part_pages()))


def test_readme_is_a_front_door_of_at_most_10000_characters():
    size = len(README.read_bytes())
    assert size <= 10_000, f"README.md is {size} bytes; move details into book/manual_*.md"


def test_readme_first_screen_says_the_default_book_runs_on_synthetic_twins():
    first = _flat("\n".join(README.read_text().splitlines()[:25]))
    assert "synthetic twins" in first and "`cpu` profile" in first and "(book/deviations.md)" in first
    assert "https://arxiv.org/abs/2512.01766" in first


def test_readme_links_resolve_and_book_links_are_pages_of_the_toc():
    toc = set(book.toc_entries(REPO))
    for target in LINK.findall(README.read_text()):
        if target.startswith(("http://", "https://", "#")):
            continue
        path = target.split("#", 1)[0]
        assert (REPO / path).is_file(), f"README links to {target}, which is not a file of the repository"
        if path.startswith("book/"):
            assert path.removesuffix(".md") in toc, f"README links to {path}, which is not in _toc.yml"


def test_readme_figure_is_a_small_png():
    (figure,) = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", README.read_text())
    data = (REPO / figure).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 200_000, f"{figure}: {len(data)} bytes"


def test_readme_cites_the_paper_of_citation_cff():
    paper = yaml.safe_load((REPO / "CITATION.cff").read_text())["preferred-citation"]
    text = README.read_text()
    bibtex = text.split("```bibtex", 1)[1].split("```", 1)[0]
    assert paper["title"] in bibtex and paper["doi"] in bibtex and paper["url"] in bibtex
    for person in paper["authors"]:
        assert person["family-names"] in bibtex and person["family-names"] in text
    assert f"year    = {{{paper['year']}}}" in bibtex


def test_readme_commands_are_make_targets():
    targets = set(re.findall(r"^([\w-]+):", (REPO / "Makefile").read_text(), re.MULTILINE))
    used = set(re.findall(r"^make (\w+)", README.read_text(), re.MULTILINE))
    assert {"env", "book"} <= used <= targets, used - targets


def test_every_page_of_the_part_is_in_the_toc_and_links_only_to_pages_of_the_book():
    pages = _part_pages()
    assert REPO / "book" / "using_results.md" in pages
    orphans = {p for p in (REPO / "book").glob("manual_*.md")} | {REPO / "book" / "layout.md"}
    assert orphans <= set(pages), f"pages missing from _toc.yml: {sorted(map(str, orphans - set(pages)))}"
    toc = set(book.toc_entries(REPO))
    for page in pages:
        assert page.read_text().startswith("# "), f"{page.name}: a page starts with its title"
        for target in LINK.findall(page.read_text()):
            if target.startswith(("http://", "https://")):
                continue
            # the book is built from a staged copy of book/: a link must name a page of the TOC
            stem = f"book/{target.split('#', 1)[0]}".rsplit(".", 1)[0]
            assert stem in toc, f"{page.name} links to {target}, which is not a page of the book"


def test_no_issue_numbers_or_history_in_the_readme_and_the_pages():
    text = README.read_text() + _pages_text()
    for pattern in (r"\bissues? #?\d+", r"(?<![\w&])#\d+\b", r"\blent for\b", r"\bthe trainer it replaced\b"):
        assert not re.search(pattern, text, re.IGNORECASE), pattern


def test_the_lock_package_count_on_the_environment_page_is_the_lock():
    count = len(provenance.read_lock())
    page = _flat((REPO / "book" / "manual_environment.md").read_text())
    stated = re.findall(r"(\d+) packages\)", page)
    assert len(stated) == 2 and set(stated) == {str(count)}, (stated, count)


def test_the_vendored_metadata_size_on_the_build_page():
    size = sum(p.stat().st_size for p in REAL_METADATA.rglob("*.gz"))
    assert f"data/metadata/` (part of the repository, {size / 1e6:.1f} MB gzipped)" in _pages_text()


def test_the_limits_on_the_pages_are_those_of_the_code():
    text = _pages_text()
    assert f"exceeds {book.GRID_MAX:,} combinations" in text
    assert f"more than {cost.HOURS_MAX:,} hours" in text
    assert files.YAML_MAX_BYTES == 1 << 20 and "files over 1 MiB are refused" in text
    assert files.MAX_INT == 2**31 - 1 and "integers at most 2^31 − 1" in text
    assert f"quotes at most {files.QUOTE_CHARS} characters of a value" in text


def _braces(values) -> str:
    """{0.2, 1}: a list of numbers as the pages write a set."""
    return "{" + ", ".join(f"{v:g}" for v in values) + "}"


def test_the_rehearsal_shrinks_on_the_gpu_page_are_those_of_the_code():
    seeds, ratios, gammas = (rehearse.PARAMS[k] for k in ("seeds", "ratios", "gammas"))
    assert seeds == [1], "the page says 'one seed'"
    shrinks = (f"one seed, group ratios {_braces(ratios)}, AFR γ ∈ {_braces(gammas)}, ERM runs capped at "
               f"{rehearse.MAX_STEPS} SGD steps, heads at {rehearse.HEAD_EPOCHS} epochs")
    assert shrinks in _flat((REPO / "book" / "manual_gpus.md").read_text())


@pytest.mark.parametrize("measure", sorted(set(re.findall(r"\d[\d.,]* (?:min|minutes|GB|MB|s|tests)\b",
                                                          _flat(README.read_text())))))
def test_a_measurement_of_the_readme_is_on_a_page_as_well(measure):
    assert measure in _pages_text(), f"README states {measure!r}, which no page of {PART!r} states"


INTRO = REPO / "book" / "intro.md"
MEASURE = re.compile(r"\d[\d.,]* (?:min|minutes|GB|MB|s|tests)\b")


def _readme_item(command: str) -> str:
    """The README's list item on `make <command>`, its wrapped lines included."""
    lines = README.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"- `make {command}`"))
    end = next((i for i in range(start + 1, len(lines)) if not lines[i].startswith("  ")), len(lines))
    return _flat("\n".join(lines[start:end]))


def test_the_front_page_states_the_readmes_costs_and_no_other_measurement():
    """The README holds the measurements: the front page repeats the durations and sizes of its `make env` and
    `make book` items (environment, cold cpu build, disk), and states no measurement the README does not."""
    front = set(MEASURE.findall(_flat(INTRO.read_text())))
    readme = set(MEASURE.findall(_flat(README.read_text())))
    assert front <= readme, f"the front page states {sorted(front - readme)}, which the README does not"
    costs = {m for c in ("env", "book") for m in MEASURE.findall(_readme_item(c)) if m.endswith(("min", "GB"))}
    assert len(costs) >= 5 and costs <= front, f"the README's costs missing on the front page: {sorted(costs - front)}"


def test_the_front_page_names_the_supported_python():
    import tomllib

    spec = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"]
    version = re.fullmatch(r">=(3\.\d+),<3\.\d+", spec)[1]
    assert f"**Python {version}** (only)" in INTRO.read_text() and f"Python: {version} only" in README.read_text()


def test_the_front_page_parameter_example_counts_the_runs_it_would_compute():
    """The front page's edit of params/cpu/group_ratio.yml: its old value is the file's, and the runs it says are
    new and reused are those of the section's configs (match_steps only adds a step count to each, not a run)."""
    from repro import page, runs, sections

    text = _flat(INTRO.read_text())
    old, new = re.search(r"change the line `seeds: (\[[^\]]*\])` of `params/cpu/group_ratio.yml` to "
                         r"`seeds: (\[[^\]]*\])`", text).groups()
    values = {**book.template_parameters(REPO / "book" / "group_ratio.ipynb"),
              **book.load_params(REPO, "group_ratio", "cpu")}
    old, new = yaml.safe_load(old), yaml.safe_load(new)
    assert values["seeds"] == old

    def ids(seeds):
        plan = sections.group_ratio_configs(values["datasets"], seeds, "cpu", values["data_root"], values["ratios"],
                                            False, backbones=values["backbones"])
        return {kind: {runs.run_id(kind, c) for c in configs} for kind, configs in plan.items()}

    before, after = ids(old), ids(new)
    erm, heads = (len(after[k] - before[k]) for k in ("erm", "heads"))
    assert f"the {erm} new ERM runs" in text and f"their {heads} LLR heads" in text, (erm, heads)
    assert f"the {len(before['erm'])} ERM runs and {len(before['heads'])} heads" in text
    assert f"`seeds` = {page.shown(new)}" in text
