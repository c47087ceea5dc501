"""The book pipeline: params validation, template rules, and the whole smoke book built end to end."""
import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from repro import book

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = book.notebooks(REPO)


def _copy_repo(tmp_path: Path) -> Path:
    for item in ("_config.yml", "_toc.yml"):
        shutil.copy2(REPO / item, tmp_path / item)
    for folder in ("book", "params"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    return tmp_path


def _no_execution(*args, **kwargs):
    raise AssertionError("a notebook ran although the params were invalid")


def test_toc_lists_notebooks():
    assert "appendix_b" in NOTEBOOKS
    assert book.toc_entries(REPO)[0] == "book/intro"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_template_has_no_functions_or_classes(name):
    nb = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        assert not cell.get("outputs"), f"{name}: templates are committed with outputs stripped"
        tree = ast.parse("".join(cell["source"]))
        bad = [type(n).__name__ for n in ast.walk(tree)
               if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda))]
        assert not bad, f"{name}: notebook templates may not define {bad}; put the code in src/repro"


@pytest.mark.parametrize("profile", book.PROFILES)
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_params_are_a_subset_of_template_parameters(name, profile):
    params_file = REPO / "params" / profile / f"{name}.yml"
    assert params_file.is_file(), f"missing {params_file}"
    keys = set(yaml.safe_load(params_file.read_text()) or {})
    defaults = book.template_parameters(REPO / "book" / f"{name}.ipynb")
    assert keys <= set(defaults) - set(book.RUNNER_KEYS)
    assert set(book.RUNNER_KEYS) <= set(defaults), f"{name}: parameters cell must define {book.RUNNER_KEYS}"
    book.load_params(REPO, name, profile)  # and the values type-check


def test_unknown_key_fails_before_any_notebook_runs(tmp_path, monkeypatch):
    root = _copy_repo(tmp_path)
    (root / "params" / "smoke" / "appendix_b.yml").write_text("data_root: x\nno_such_key: 3\n")
    monkeypatch.setattr(book, "execute", _no_execution)
    with pytest.raises(book.BookError) as err:
        book.build("smoke", root=root)
    message = str(err.value)
    assert "params/smoke/appendix_b.yml" in message and "'no_such_key'" in message and "data_root" in message


def test_wrong_type_fails_before_any_notebook_runs(tmp_path, monkeypatch):
    root = _copy_repo(tmp_path)
    (root / "params" / "smoke" / "appendix_b.yml").write_text("synth_seed: not-a-number\n")
    monkeypatch.setattr(book, "execute", _no_execution)
    with pytest.raises(book.BookError, match=r"appendix_b.yml: key 'synth_seed' must be int"):
        book.build("smoke", root=root)


def test_missing_params_file_is_named(tmp_path, monkeypatch):
    root = _copy_repo(tmp_path)
    (root / "params" / "smoke" / "appendix_b.yml").unlink()
    monkeypatch.setattr(book, "execute", _no_execution)
    with pytest.raises(book.BookError, match=r"missing params file params/smoke/appendix_b.yml"):
        book.build("smoke", root=root)


def test_unknown_profile_and_notebook(tmp_path):
    with pytest.raises(book.BookError, match="unknown profile"):
        book.load_params(REPO, "appendix_b", "laptop")
    with pytest.raises(book.BookError, match="unknown notebook"):
        book.build("smoke", only=["nope"], root=_copy_repo(tmp_path))


def test_failing_notebook_reports_cell_and_partial_path(tmp_path):
    root = _copy_repo(tmp_path)
    (root / "params" / "smoke" / "appendix_b.yml").write_text("real_metadata_root: 7\n")
    with pytest.raises(book.BookError) as err:
        book.execute(root, "appendix_b", "smoke", tmp_path / "out.ipynb",
                     {"real_metadata_root": 7, "data_root": str(tmp_path / "d"), "synth_profile": ""})
    assert "failed in cell" in str(err.value) and "partial.ipynb" in str(err.value)
    assert (tmp_path / "out.partial.ipynb").is_file() and not (tmp_path / "out.ipynb").exists()


@pytest.mark.slow
def test_smoke_book_builds_with_warnings_as_errors(smoke_book):
    index = smoke_book / "index.html"  # built once per session by conftest.smoke_book, in a temporary copy
    html = smoke_book / "book"
    for name in NOTEBOOKS:
        page = (html / f"{name}.html").read_text()
        assert "Provenance of this page" in page, f"{name}: no provenance table"
        assert "Traceback" not in page
    assert "book/intro.html" in index.read_text()  # the front page
    assert "Profile: <strong>smoke</strong>" in (html / "intro.html").read_text()
    for page in ("scorecard", "deviations"):
        assert (html / f"{page}.html").is_file()
    assert "Numerics of this build" in (html / "deviations.html").read_text()
    downloads = {p.name for p in (smoke_book / "_downloads").rglob("*.csv")}
    assert {"figure4_llr.csv", "table2_real_metadata.csv", "figure1.csv"} <= downloads


def test_the_deviations_page_counts_the_runs_that_leave_fp32(tmp_path):
    """The build appends to the staged deviations page how many of its ERM runs use bf16/fp16, TF32 or
    torch.compile (repro.erm.fast_path), from the configs its sections list."""
    from repro import erm

    params = {"margins": book.load_params(REPO, "margins", "smoke")}
    configs = book.erm_configs(REPO, ["margins"], "smoke", params)
    assert configs and all(c["profile"] == "smoke" for c in configs)
    n = len({json.dumps(c, sort_keys=True) for c in configs})
    page = tmp_path / "deviations.md"
    page.write_text("# Deviations\n\ntext\n")
    book.note_numerics(page, configs, "smoke")
    text = page.read_text()
    assert text.startswith("# Deviations\n\ntext\n\n## Numerics of this build\n")
    assert f"All {n} ERM runs of this build (`smoke` profile) train as the paper's code does" in text
    fast = [dict(configs[0], precision="bf16", tf32=True), dict(configs[0], compile=True), *configs[1:]]
    note = book.numerics_note([erm.check(c) for c in fast], "paper")
    assert f"Of the {n + 1} ERM runs of this build (`paper` profile)" in note
    assert "for speed: 1 in bf16 autocast; 1 with TF32 matrix products; 1 compiled by torch.compile." in note


def _png_width(path: Path) -> int:
    return int.from_bytes(path.read_bytes()[16:20], "big")  # IHDR width


@pytest.mark.slow
def test_smoke_book_pages_read_like_the_paper(smoke_book):
    import re

    from repro import claims, plots

    html = smoke_book / "book"
    for name in NOTEBOOKS:
        page = (html / f"{name}.html").read_text()
        cells = re.findall(r'<div class="cell(?: [^"]*)? docutils container[^"]*"', page)
        assert cells, f"{name}: no code cells rendered"
        for cell in cells:  # only outputs reach the page: no code, folded or not
            assert re.search(r"tag_remove-input\b", cell), f"{name}: a code cell shows its source: {cell}"
        assert "cell_input" not in page and "Show code cell" not in page, f"{name}: code on the page"
        assert "tag_parameters" not in page and "tag_injected-parameters" not in page, \
            f"{name}: the parameters cells are removed (the provenance prints the values used)"
        text = re.sub(r"<[^>]+>", " ", page)
        assert not re.search(r"\bnan\b", text, flags=re.I), f"{name}: an unexplained nan on the page"
    images = list((smoke_book / "_images").glob("*.png"))
    assert len(images) >= 8  # Figures 1-7 and AFR
    assert {_png_width(p) for p in images} == {plots.COLUMN_PX, 2 * plots.NARROW_PX}, \
        "every figure is drawn at the column width, and one panel per row for a phone (repro.plots.one_column)"
    scorecard = (html / "scorecard.html").read_text()
    badge = r'<span class="[^"]*sd-badge sd-bg-(\w+)[^"]*">([^<]*)</span>'
    badges = re.findall(badge, scorecard)
    head = scorecard[:scorecard.index("<table")]  # the paper's counts, and the list of what verdicts mean
    tables = scorecard[scorecard.index("<table"):]  # the tables; the companions' own counts before theirs
    verdicts = [v for _, v in re.findall(badge, tables) if not v[0].isdigit()]
    counts = {v.split(" ", 1)[1]: int(v.split(" ", 1)[0]) for _, v in re.findall(badge, head) if v[0].isdigit()}
    assert len(verdicts) == len(claims.CLAIMS) + len(claims.COMPANION_CLAIMS), "one verdict badge per claim"
    paper = verdicts[:len(claims.CLAIMS)]
    assert sum(counts.values()) == len(claims.CLAIMS) and all(counts.get(v, 0) == paper.count(v) for v in set(paper))
    assert all(colour == claims.BADGES.get(v, "info") for colour, v in badges if not v[0].isdigit())
    intro = (html / "intro.html").read_text()
    assert f"{len(claims.CLAIMS)} claims:" in intro and intro.count("sd-badge") == len(counts)


def _sources(name: str) -> tuple[str, str]:
    nb = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    text = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    return code, text


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_every_figure_offers_its_data_as_csv(name):
    import re

    code, text = _sources(name)
    saved = set(re.findall(r'save_csv\([^,]+, "([^"]+)"\)', code))
    linked = set(re.findall(r"<data/([^>]+)\.csv>", text))
    if "plots.figure" in code:
        assert saved, f"{name}: draws a figure but saves no CSV of its data (report.save_csv)"
    assert saved == linked, f"{name}: CSVs saved {sorted(saved)} but linked from the page {sorted(linked)}"


def test_scorecard_cells_are_glued_never_typed():
    import re

    from repro import claims

    page = (REPO / "book" / "scorecard.md").read_text()
    assert page == claims.scorecard_markdown(), "book/scorecard.md is generated from repro.claims; regenerate it"
    rows = [line for line in page.splitlines() if line.startswith("| ") and "::" in line]
    everything = claims.CLAIMS + claims.COMPANION_CLAIMS  # the companions' table comes last, apart
    assert len(rows) == len(everything) and len(claims.CLAIMS) >= 10
    for row, claim in zip(rows, everything):
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 4, "four columns fit the text column"
        assert cells[2] == f"{{glue:text}}`{claim.section}.ipynb::{claim.key}_value:s`"
        assert cells[3] == f"{{glue}}`{claim.section}.ipynb::{claim.key}_verdict`"
        assert not re.search(r"\d", (cells[2] + cells[3]).replace(claim.key, "")), "a number typed into a measured cell"
    for section in {c.section for c in claims.CLAIMS}:
        code, _ = _sources(section)
        assert "claims.show(" in code, f"{section} must show and glue its claims (claims.show)"
    assert "{{ verdict_counts }}" in page and "{{ verdict_counts }}" in (REPO / "book" / "intro.md").read_text()


def _named_parameters(name: str, source: str) -> set[str]:
    """The parameters of template `name` (less the runner's keys) that `source` names in backticks, outside a role."""
    from repro import page

    names = set(book.template_parameters(REPO / "book" / f"{name}.ipynb")) - set(book.RUNNER_KEYS)
    return set(page.NAMED.findall(source)) & names


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_prose_names_no_parameter_without_its_value(name):
    """A Markdown cell shows its text as written, so it may not name a parameter (`svm_factor`): that paragraph is
    a code cell calling page.prose, which shows each named parameter with its value in this build."""
    nb = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        named = _named_parameters(name, source)
        if cell["cell_type"] == "markdown":
            assert not named, f"{name}: a Markdown cell names {sorted(named)}; make it page.prose(setup, ...)"
        elif named and "parameters" not in cell.get("metadata", {}).get("tags", []):
            assert "page.prose(setup," in source, f"{name}: a cell names {sorted(named)} without page.prose"


@pytest.mark.slow
def test_executed_pages_show_the_value_of_every_parameter_their_prose_names(smoke_book):
    """In the smoke book, every parameter a page's text names is followed by its smoke value (params/smoke/ over
    the template's defaults), and the group-ratio page says which ratios this build ran."""
    import re

    import nbformat

    from repro import page

    for name in NOTEBOOKS:
        values = {**book.template_parameters(REPO / "book" / f"{name}.ipynb"), **book.load_params(REPO, name, "smoke")}
        nb = nbformat.read(str(smoke_book.parent / "src" / "book" / f"{name}.ipynb"), 4)
        text = "\n".join(o["data"]["text/markdown"] for c in nb.cells if c.cell_type == "code" for o in c.outputs
                         if "text/markdown" in o.get("data", {}))
        template = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
        prose = _named_parameters(name, "".join("".join(c["source"]) for c in template["cells"]
                                                if "parameters" not in c.get("metadata", {}).get("tags", [])))
        for key in prose | _named_parameters(name, text):
            assert f"`{key}` = {page.shown(values[key])}" in text, f"{name}: `{key}` without its value {values[key]!r}"
    ratios = book.load_params(REPO, "group_ratio", "smoke")["ratios"]
    html = re.sub(r"<[^>]+>", "", (smoke_book / "book" / "group_ratio.html").read_text())
    assert f"both in ratios = {page.shown(ratios)}" in " ".join(html.split())


REMOVED = {"remove-input", "remove-cell"}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_plumbing_is_hidden_and_short(name):
    """Every code cell is removed from the page, its input (the reader sees outputs: figures, captions, tables)
    or the whole cell (parameters, computations): no folded code shows a path or a template default instead of
    the values used, and none reaches the search index. The page's set-up and end are the shared page helper's,
    not repeated code."""
    nb = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
    code_cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
    for cell in code_cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        assert tags & REMOVED and not tags & {"hide-input", "hide-cell"}, \
            f"{name}: code cell not removed from the page: {''.join(cell['source'])[:80]!r}"
        if "parameters" in tags or cell["source"] and "page." not in "".join(cell["source"]) \
                and "claims.show" not in "".join(cell["source"]):
            assert "remove-cell" in tags or "page.begin" in "".join(cell["source"]), \
                f"{name}: a cell that shows nothing is removed whole: {''.join(cell['source'])[:80]!r}"
    code, _ = _sources(name)
    assert "page.begin(profile, params_yaml" in code and "page.finish(setup)" in code
    assert "provenance" not in code and "display(" not in code, f"{name}: plumbing belongs in repro.page"
    plumbing = [c for c in code_cells if "parameters" not in c.get("metadata", {}).get("tags", [])]
    assert max(len("".join(c["source"]).splitlines()) for c in plumbing) <= 16, f"{name}: move repeated code to repro"


def _toy(source: str) -> bool:
    """Whether a page draws the toy problem (it imports repro.toy) rather than the benchmarks' data."""
    import re

    return bool(re.search(r"from repro import [^\n]*\btoy\b", source))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_page_opens_with_its_title_then_what_its_data_are(name):
    """The title has a cell of its own; then come the folded parameters and the set-up cell, whose first output
    is the line saying what the page's data are (repro.page.data_line), so no text comes between the two."""
    nb = json.loads((REPO / "book" / f"{name}.ipynb").read_text())
    title, params, setup = nb["cells"][:3]
    heading = "".join(title["source"]).strip()
    assert title["cell_type"] == "markdown" and heading.startswith("# ") and "\n" not in heading, \
        f"{name}: the first cell holds the title only (the introduction follows the set-up cell)"
    assert "parameters" in params["metadata"]["tags"]
    source, tags = "".join(setup["source"]), set(setup["metadata"]["tags"])
    assert "page.begin(profile, params_yaml" in source and "remove-input" in tags
    assert not tags & {"remove-cell", "remove-output", "hide-output", "hide-cell"}, f"{name}: begin's output is shown"
    assert ("toy=True" in source) == _toy(source), f"{name}: a page of the toy problem says so (page.begin(toy=True))"


@pytest.mark.slow
def test_search_index_holds_prose_not_plumbing(smoke_book):
    """Sphinx's search index of the smoke book holds no word that only code cells (their source or their outputs,
    such as a PosixPath) would put there: result snippets are prose."""
    text = (smoke_book / "searchindex.js").read_text()
    index = json.loads(text[text.index("(") + 1:text.rindex(")")])
    terms = {term for term, pages in index["terms"].items() if pages not in ([], None)}  # a term on some page
    plumbing = {"posixpath", "save_csv", "params_yaml", "model_overrides", "setup.twin"}
    assert not plumbing & terms, sorted(plumbing & terms)
    assert "worst" in terms  # prose is indexed


@pytest.mark.slow
def test_every_executed_page_opens_with_what_its_data_are(smoke_book):
    import nbformat

    from repro import page

    for name in NOTEBOOKS:
        nb = nbformat.read(str(smoke_book.parent / "src" / "book" / f"{name}.ipynb"), 4)
        shown = [o for c in nb.cells[:4] if c.cell_type == "code" for o in c.outputs
                 if "text/markdown" in o.get("data", {})]
        setup = next(c.source for c in nb.cells if "page.begin(" in c.source)  # after papermill's injected cell
        want = page.data_line("smoke", toy=_toy(setup), companions="companions=True" in setup,
                              fixture="companions=True" in setup)  # smoke's companions: repro.fixtures' files
        assert want and shown and shown[0]["data"]["text/markdown"] == want, f"{name}: {shown[:1]}"


def test_console_verdict_line_is_plain_text_and_says_when_it_is_on_twins():
    from repro import claims, hparams

    verdicts = dict(zip([c.key for c in claims.CLAIMS], ["supported", "supported", "not supported", "inconclusive"]))
    counts = claims.counts_markdown(verdicts)
    assert "{bdg-" in counts  # the front page and the scorecard keep their badges
    plain = (f"{len(claims.CLAIMS)} claims: 2 supported, 1 not supported, 1 inconclusive, "
             f"{len(claims.CLAIMS) - 4} not evaluated in this build")
    for profile in hparams.TWIN_PROFILES:
        line = book.verdict_line(counts, profile)
        assert line == f"verdicts on synthetic twins ({profile} profile), not the paper's data: {plain}"
    assert book.verdict_line(counts, "paper") == f"verdicts: {plain}"


@pytest.mark.slow
def test_appendix_b_table2_from_the_vendored_metadata(smoke_book):
    import re

    import pandas as pd

    page = (smoke_book / "book" / "appendix_b.html").read_text()
    real = page[page.index('id="table-2-from-the-real-metadata-files"'):page.index('id="table-2-on-this-profile-s-data-root"')]
    bodies = re.findall(r"<tbody>(.*?)</tbody>", real, re.DOTALL)  # one table per dataset with real metadata
    rows = [re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.DOTALL) for body in bodies]
    assert [len(r) for r in rows] == [4, 4, 6], "Waterbirds, CelebA and MultiNLI: 14 groups"
    assert "<strong>CivilComments</strong>: not available in this build" in real
    flagged = [re.sub(r"<[^>]+>", " ", row) for table in rows for row in table if "⚠" in row]
    assert len(flagged) == 2 and all(r.count("⚠") == 1 and "landbird" in r and "2255" in r for r in flagged), flagged
    assert all("⚠" in row for row in rows[0][:2]), "the flags are the two Waterbirds landbird test cells"
    assert re.sub(r"<[^>]+>", "", real).count("⚠") == 3  # the two cells and the note under the Waterbirds table
    assert "landbird / land, test: 2255, paper 2225; landbird / water, test: 2255, paper 2225." in real
    csv = next((smoke_book / "_downloads").rglob("table2_real_metadata.csv"))
    table = pd.read_csv(csv)
    assert len(table) == 14 and set(table.dataset) == {"waterbirds", "celeba", "multinli"}


@pytest.mark.slow
def test_the_books_shared_pool_gives_the_runs_of_a_section_by_section_build(tmp_path, monkeypatch):
    """Two sections (sharing the base ERM run) computed up front by book.precompute in one 2-worker pool, and
    section by section in this process as their notebooks would: the same run ids, the same metrics.json bytes."""
    from repro import sections
    from tests.conftest import copy_book_sources

    monkeypatch.setenv("REPRO_PROGRESS", "0")
    (tmp_path / "src").mkdir()
    root = copy_book_sources(tmp_path / "src")
    names = ["margins", "class_balance"]
    for name in names:
        path = root / "params" / "smoke" / f"{name}.yml"
        path.write_text(yaml.safe_dump({**yaml.safe_load(path.read_text()), "datasets": ["waterbirds"], "workers": 2}))
    params = {name: book.load_params(root, name, "smoke") for name in names}

    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "shared"))
    counts = book.precompute(root, names, "smoke", params, log=lambda *a: None)
    assert counts["erm"] == 8 and counts["heads"] > 0 and counts["svm"] == 1
    monkeypatch.setenv("REPRO_RUNS", str(tmp_path / "alone"))
    monkeypatch.chdir(root)
    for name in names:
        values = {**book.template_parameters(root / "book" / f"{name}.ipynb"), **params[name], "workers": 1}
        section = sections.SECTIONS[name]
        section.compute(profile="smoke", **{k: values[k] for k in section.params})

    def store(folder: Path) -> dict:
        return {p.relative_to(folder).as_posix(): (p / "metrics.json").read_bytes()
                for p in folder.glob("*/*") if (p / "done").exists()}

    shared, alone = store(tmp_path / "shared"), store(tmp_path / "alone")
    assert len(shared) == 8 + counts["heads"] + 1 and shared.keys() == alone.keys()
    assert [k for k in shared if shared[k] != alone[k]] == []


@pytest.mark.skipif(os.name != "posix", reason="IPC kernels are POSIX-only")
def test_notebook_kernels_talk_over_unix_sockets_without_console_warnings(tmp_path, capfd):
    """ipykernel warns on every TCP kernel (one line per notebook in the build's console); the book's kernels use
    IPC sockets in a temporary folder, which is gone afterwards."""
    import nbformat
    import papermill

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("print(6 * 7)")]
    nbformat.write(nb, str(tmp_path / "t.ipynb"))
    folder = tmp_path / "sockets"
    folder.mkdir()
    manager = book._kernel_manager("ipc", str(folder / "kernel"))
    assert manager().transport == "ipc"
    papermill.execute_notebook(str(tmp_path / "t.ipynb"), str(tmp_path / "o.ipynb"), kernel_name="python3",
                               progress_bar=False, log_output=False, kernel_manager_class=manager)
    assert nbformat.read(str(tmp_path / "o.ipynb"), 4).cells[0].outputs[0]["text"] == "42\n"
    err = capfd.readouterr().err
    assert "IPKernelApp" not in err and "without encryption" not in err, err
    assert list(folder.iterdir()) == []  # the sockets are removed with the kernel


def _long_tmpdir(base: Path, size: int = 100) -> Path:
    """A folder whose path is `size` bytes (UTF-8) long, with non-ASCII letters, as a cluster's per-job TMPDIR."""
    stem = base / "scratch-é"
    name = "job-ø" + "x" * (size - len(os.fsencode(stem / "job-ø")))
    folder = stem / name
    folder.mkdir(parents=True)
    assert len(os.fsencode(folder)) == size
    return folder


@pytest.mark.skipif(os.name != "posix", reason="IPC kernels are POSIX-only")
def test_kernel_sockets_fit_under_a_long_tmpdir(tmp_path, monkeypatch):
    """Where TMPDIR is too long for a socket path, the kernel's sockets go to a private folder (0700) of their own
    under /tmp, within the platform's limit, removed afterwards."""
    import stat
    import tempfile

    import zmq

    monkeypatch.setenv("TMPDIR", str(_long_tmpdir(tmp_path)))
    monkeypatch.setattr(tempfile, "tempdir", None)  # (cached by the first call)
    with book._kernel_channels() as (transport, ip):
        assert transport == "ipc" and len(os.fsencode(ip + "-99")) <= zmq.IPC_PATH_MAX_LEN
        folder = Path(ip).parent
        assert folder.parent == Path("/tmp") and stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert not folder.exists()
    monkeypatch.setattr(zmq, "IPC_PATH_MAX_LEN", 8)  # nowhere fits: TCP on loopback
    with book._kernel_channels() as channels:
        assert channels == ("tcp", "127.0.0.1")


@pytest.mark.slow
def test_a_section_builds_under_a_100_byte_non_ascii_tmpdir(tmp_path, monkeypatch):
    """A cluster node's long per-job TMPDIR: one section (margins on the Waterbirds twin, a 2-worker pool) runs and
    its page builds, in a book whose table of contents holds that page and the deviations page it links to."""
    import tempfile

    from tests.conftest import copy_book_sources

    (tmp_path / "src").mkdir()
    root = copy_book_sources(tmp_path / "src")
    (root / "_toc.yml").write_text("format: jb-book\nroot: book/margins\nchapters:\n  - file: book/deviations\n")
    params = root / "params" / "smoke" / "margins.yml"
    params.write_text(yaml.safe_dump({**yaml.safe_load(params.read_text()), "datasets": ["waterbirds"], "workers": 2}))
    monkeypatch.setenv("TMPDIR", str(_long_tmpdir(tmp_path)))
    monkeypatch.setattr(tempfile, "tempdir", None)
    index = book.build("smoke", root=root, log=lambda *a: None)
    assert index.is_file() and (root / "_build" / "html" / "book" / "margins.html").is_file()


def test_a_notebook_run_from_book_works_in_the_repository_root(tmp_path):
    """`cd book && jupyter execute hypothesis.ipynb` (Jupyter's working directory is the notebook's folder)
    writes its outputs where a build does, and leaves `git status` clean."""
    from tests.conftest import SRC, copy_book_sources

    root = copy_book_sources(tmp_path)
    shutil.copy2(REPO / ".gitignore", root / ".gitignore")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "sources"]):
        subprocess.run([*git, *args], cwd=root, check=True)
    env = {**os.environ, "PYTHONPATH": SRC}
    out = subprocess.run([str(Path(sys.executable).with_name("jupyter")), "execute", "hypothesis.ipynb"],
                         cwd=root / "book", env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert (root / "_build" / "src" / "book" / "data" / "figure1.csv").is_file()
    assert not (root / "book" / "_build").exists() and not (root / "book" / "data").exists()
    status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=root, capture_output=True,
                            text=True, check=True).stdout
    assert status == "", status


def test_the_kernel_moves_to_the_book_tree_only_inside_a_kernel(tmp_path, monkeypatch):
    from repro import page

    root = _copy_repo(tmp_path)
    monkeypatch.chdir(root / "book")
    assert page.at_root(None) == root.resolve() and Path.cwd() == (root / "book").resolve()  # not a kernel: stays
    assert page.at_root({}) == root.resolve() and Path.cwd() == root.resolve()


def test_notebooks_without_ipywidgets_get_console_progress_bars_without_a_warning():
    """In a kernel (ipykernel.zmqshell imported) without ipywidgets, tqdm.auto warns "IProgress not found" on
    import, unless page.console_progress_bars ran first."""
    import importlib.util

    if importlib.util.find_spec("ipywidgets") is not None:
        pytest.skip("ipywidgets is installed: tqdm.auto draws widgets, without a warning")
    code = ("import warnings, ipykernel.zmqshell\n"
            "from repro import page\n"
            "with warnings.catch_warnings(record=True) as seen:\n"
            "    warnings.simplefilter('always')\n"
            "    {call}\n"
            "    from tqdm.auto import tqdm\n"
            "notebook = any(c.__module__ == 'tqdm.notebook' for c in tqdm.__mro__)\n"
            "print(sum('IProgress' in str(w.message) for w in seen), 'notebook' if notebook else 'console')\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    for call, want in (("page.console_progress_bars()", "0 console"), ("pass", "1 console")):
        out = subprocess.run([sys.executable, "-c", code.format(call=call)], env=env, capture_output=True, text=True)
        assert out.stdout.strip() == want, (call, out.stdout, out.stderr[-1000:])
