"""The smoke book as a reader sees it: every page opened in headless Chromium, with other hosts unreachable.

The book built once per session (conftest.smoke_book) is served from 127.0.0.1; Chromium can resolve no other
host and every request to one is aborted and recorded. Each page is loaded at a 1400-px window, MathJax is
awaited, and the tests below check: no request left the book, every formula typeset, every image loaded,
no console error, every internal link and download resolves, no table wider than the text column, and every
section page opens with the line saying that its data are synthetic twins. Each page is loaded again at a
400-px window (a phone): no table or figure wider than the column, and every verdict inside the screen. The
front page's code blocks fit its column at both widths, and its box on synthetic twins is on a phone's first
screen.
Needs the Debian `chromium` package (skipped, with the install command, where no Chromium exists).
"""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import threading
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from repro import book, claims
from tests.conftest import REPO

pytestmark = pytest.mark.slow

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
WIDTH = 1400
PHONE = 400  # a phone's window: the text column is 368 px (book/_static/narrow.css, narrow.js)
# TeX left as text: \(...\), \[...\], $$...$$, or $...$ holding a macro.
RAW_TEX = re.compile(r"\\\(.{0,80}?\\\)|\\\[.{0,80}?\\\]|\$\$.{0,80}?\$\$|\$[^$\n]{0,80}\\[A-Za-z]+[^$\n]{0,80}\$",
                     re.DOTALL)

# In the page, after MathJax: what the tests check, measured by the browser.
MEASURE = """() => {
  const text = document.querySelector("main") || document.body;
  const column = document.querySelector("article.bd-article") || text;
  const style = getComputedStyle(column);
  const columnWidth = column.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  return {
    math: document.querySelectorAll(".math").length,
    typeset: [...document.querySelectorAll(".math")].filter(m => m.querySelector("mjx-container")).length,
    mathErrors: [...document.querySelectorAll("mjx-merror")].map(e => e.getAttribute("data-mjx-error") || e.textContent),
    text: text.innerText,
    lead: (() => {  // the first paragraph after the page title, outside folded cells
      const h1 = column.querySelector("h1");
      const p = h1 && [...column.querySelectorAll("p")].find(e => !e.closest("details") &&
        (h1.compareDocumentPosition(e) & Node.DOCUMENT_POSITION_FOLLOWING));
      return p ? {text: p.innerText, links: [...p.querySelectorAll("a[href]")].map(a => a.href)} : {text: "", links: []};
    })(),
    images: [...document.images].map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    links: [...document.querySelectorAll("a[href]")].map(a => a.href),
    columnWidth: columnWidth,
    tables: [...column.querySelectorAll("table")].map(t => ({
      width: Math.ceil(t.getBoundingClientRect().width), scroll: t.scrollWidth,
      head: (t.querySelector("caption") || t.querySelector("tr") || t).innerText.slice(0, 80).replace(/\\s+/g, " ")})),
    figures: [...column.querySelectorAll("img")].filter(i => i.getBoundingClientRect().width > 0).map(i => ({
      width: Math.ceil(i.getBoundingClientRect().width), src: i.getAttribute("src")})),
    viewport: window.innerWidth,
    screen: window.innerHeight,
    code: [...column.querySelectorAll("pre")].map(p => ({
      width: p.clientWidth, scroll: p.scrollWidth, head: p.innerText.slice(0, 60).replace(/\\s+/g, " ")})),
    twins: (() => {  // where the words "synthetic twins" first end on the page, from its top
      const walk = document.createTreeWalker(column, NodeFilter.SHOW_TEXT);
      for (let node = walk.nextNode(); node; node = walk.nextNode()) {
        const at = node.textContent.indexOf("synthetic twins");
        if (at < 0) continue;
        const range = document.createRange();
        range.setStart(node, at);
        range.setEnd(node, at + "synthetic twins".length);
        return Math.ceil(range.getBoundingClientRect().bottom + window.scrollY);
      }
      return null;
    })(),
    verdicts: [...column.querySelectorAll("table .sd-badge")].map(b => {
      const r = b.getBoundingClientRect();
      return {left: Math.floor(r.left), right: Math.ceil(r.right), text: b.innerText};
    }),
  };
}"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.skip("no Chromium found; install it with: apt-get update && apt-get install -y chromium")


@dataclass
class Visit:
    """What one page did and showed in the browser."""

    url: str
    outside: list = field(default_factory=list)  # requests to another host (aborted)
    failed: list = field(default_factory=list)  # requests to the book that failed or answered >= 400
    console: list = field(default_factory=list)  # console errors and uncaught exceptions
    measured: dict = field(default_factory=dict)


def _pages(html: Path) -> list[str]:
    """Every HTML page of the book, TOC pages first in TOC order, then index, search and genindex."""
    toc = [f"{entry}.html" for entry in book.toc_entries(REPO)]
    rest = sorted(p.relative_to(html).as_posix() for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0].startswith("_"))
    return toc + [p for p in rest if p not in toc]


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def served(smoke_book):
    """The smoke book on http://127.0.0.1:<port>/."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(smoke_book)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", smoke_book
    server.shutdown()
    server.server_close()


def _visit(context, base: str, page_path: str) -> Visit:
    visit = Visit(base + page_path)
    page = context.new_page()
    page.on("console", lambda m: visit.console.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: visit.console.append(f"uncaught: {e}"))
    page.on("requestfailed", lambda r: None if r.url.split("#")[0] in visit.outside
            else visit.failed.append(f"{r.url} ({r.failure})"))
    page.on("response", lambda r: visit.failed.append(f"{r.url} (HTTP {r.status})") if r.status >= 400 else None)

    def route(r):
        url = r.request.url
        if url.startswith(base) or url.startswith("data:") or url.startswith("blob:"):
            r.continue_()
        else:
            visit.outside.append(url.split("#")[0])
            r.abort("addressunreachable")

    page.route("**/*", route)
    page.goto(visit.url, wait_until="networkidle")  # index.html redirects to the first page: wait for it
    page.evaluate("() => Promise.all([...document.images].map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }))")
    page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise.then(() => true) : false")
    page.wait_for_load_state("networkidle")
    visit.measured = page.evaluate(MEASURE)
    page.close()
    return visit


def _open_all(served, width: int) -> dict[str, Visit]:
    """Open every page of the served book in headless Chromium with a window `width` px wide."""
    from playwright.sync_api import sync_playwright

    executable = _chromium()
    base, html = served
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        context = browser.new_context(viewport={"width": width, "height": 1000}, service_workers="block")
        try:
            return {path: _visit(context, base, path) for path in _pages(html)}
        finally:
            browser.close()


@pytest.fixture(scope="module")
def visits(served) -> dict[str, Visit]:
    """Every page of the served book at a 1400-px window; page path -> Visit."""
    return _open_all(served, WIDTH)


@pytest.fixture(scope="module")
def phone_visits(served) -> dict[str, Visit]:
    """Every page of the served book at a 400-px window (a phone); page path -> Visit."""
    return _open_all(served, PHONE)


def _report(problems: dict[str, list]) -> str:
    return "\n".join(f"{page}: {item}" for page, items in problems.items() for item in items)


def test_every_toc_page_was_opened(visits):
    toc = [f"{entry}.html" for entry in book.toc_entries(REPO)]
    assert list(visits)[:len(toc)] == toc and all(v.measured.get("text") for v in visits.values())


def test_no_request_leaves_the_book(visits):
    problems = {p: sorted(set(v.outside)) for p, v in visits.items() if v.outside}
    assert not problems, "requests to other hosts:\n" + _report(problems)


def test_every_request_to_the_book_succeeds(visits):
    problems = {p: v.failed for p, v in visits.items() if v.failed}
    assert not problems, "failed requests:\n" + _report(problems)


def test_every_formula_is_typeset(visits):
    problems = {}
    for page, visit in visits.items():
        m = visit.measured
        found = [f"{m['typeset']} of {m['math']} formulas typeset"] if m["typeset"] < m["math"] else []
        found += [f"MathJax error: {e}" for e in m["mathErrors"]]
        found += [f"raw TeX in the text: {hit.group(0)[:60]!r}" for hit in RAW_TEX.finditer(m["text"])]
        if found:
            problems[page] = found
    assert not problems, "math not rendered:\n" + _report(problems)
    assert sum(v.measured["typeset"] for v in visits.values()) > 0, "no formula in the whole book?"


def test_every_image_loads(visits):
    problems = {p: [i["src"] for i in v.measured["images"] if not i["ok"]] for p, v in visits.items()}
    problems = {p: srcs for p, srcs in problems.items() if srcs}
    assert not problems, "images that did not load (natural width 0):\n" + _report(problems)
    assert sum(len(v.measured["images"]) for v in visits.values()) > 0, "no image in the whole book?"


def test_no_console_error(visits):
    problems = {p: v.console for p, v in visits.items() if v.console}
    assert not problems, "console errors:\n" + _report(problems)


def _ids(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text(errors="replace")))


def test_every_internal_link_and_download_resolves(visits, served):
    base, html = served
    problems, downloads = {}, set()
    for page, visit in visits.items():
        for link in visit.measured["links"]:
            if not link.startswith(base):
                continue
            url = urllib.parse.urlsplit(link)
            target = html / urllib.parse.unquote(url.path[1:])
            if target.is_dir():
                target = target / "index.html"
            if not target.is_file():
                problems.setdefault(page, []).append(f"{link}: no such file")
            elif url.fragment and target.suffix == ".html" and url.fragment not in _ids(target):
                problems.setdefault(page, []).append(f"{link}: no element with id {url.fragment!r}")
            if "/_downloads/" in url.path:
                downloads.add(target)
    assert not problems, "broken internal links:\n" + _report(problems)
    empty = [str(d.relative_to(html)) for d in downloads
             if d.suffix == ".csv" and d.is_file() and len(d.read_text().strip().splitlines()) < 2]
    assert downloads and not empty, f"CSV downloads without a data row: {empty}"


def test_no_table_wider_than_the_text_column(visits):
    problems = {}
    for page, visit in visits.items():
        column = visit.measured["columnWidth"]
        wide = [f"{max(t['width'], t['scroll'])} px > {column:.0f} px column: {t['head']!r}"
                for t in visit.measured["tables"] if max(t["width"], t["scroll"]) > column + 1]
        if wide:
            problems[page] = wide
    assert not problems, f"tables wider than the text column at a {WIDTH}-px window:\n" + _report(problems)
    assert sum(len(v.measured["tables"]) for v in visits.values()) > 0, "no table in the whole book?"


def test_every_section_page_opens_with_what_its_data_are(visits, served):
    """Right under the title of every section page (a notebook of the TOC): the smoke profile's twin line
    (repro.page.data_line; on the companions page, the line of its generated fixture files), linking to the
    deviations page."""
    base, _ = served
    problems = {}
    for name in book.notebooks(REPO):
        lead = visits[f"book/{name}.html"].measured["lead"]
        text = " ".join(lead["text"].split())
        said = ("tiny generated files" in text) if name == "companions" else ("synthetic twins" in text)
        found = [f"first paragraph: {text[:120]!r}"] if not (
            text.startswith("What these numbers are:") and said and "smoke" in text) else []
        if base + "book/deviations.html" not in lead["links"]:
            found.append(f"no link to the deviations page: {lead['links']}")
        if found:
            problems[f"book/{name}.html"] = found
    assert not problems, "section pages that do not open with what their data are:\n" + _report(problems)


def test_on_a_phone_no_table_or_figure_is_wider_than_the_column(phone_visits):
    """At 400 px, tables reflow (claims as cards, wide tables compact or stacked) and figures are drawn one panel
    per row, so nothing needs scrolling sideways; and no page's console reports an error at that width."""
    problems = {}
    for page, visit in phone_visits.items():
        m = visit.measured
        column = m["columnWidth"]
        wide = [f"table {max(t['width'], t['scroll'])} px > {column:.0f} px column: {t['head']!r}"
                for t in m["tables"] if max(t["width"], t["scroll"]) > column + 1]
        wide += [f"figure {f['width']} px > {column:.0f} px column: {f['src']}" for f in m["figures"]
                 if f["width"] > column + 1]
        wide += [f"console: {c}" for c in visit.console]
        if wide:
            problems[page] = wide
    assert not problems, f"too wide at a {PHONE}-px window:\n" + _report(problems)
    figures = [f for v in phone_visits.values() for f in v.measured["figures"]]
    assert figures and all(f["width"] <= PHONE for f in figures)
    assert phone_visits["book/neural_collapse.html"].measured["columnWidth"] < PHONE


def test_on_a_phone_every_verdict_is_on_screen(phone_visits, visits):
    """Every claim's verdict badge lies inside the 400-px screen: no sideways scrolling to read a verdict. The
    same badges are there as at 1400 px."""
    problems, count = {}, 0
    for page, visit in phone_visits.items():
        m = visit.measured
        count += len(m["verdicts"])
        off = [f"{v['text']!r} at {v['left']}-{v['right']} px" for v in m["verdicts"]
               if v["left"] < 0 or v["right"] > m["viewport"]]
        if off:
            problems[page] = off
        assert [v["text"] for v in m["verdicts"]] == [v["text"] for v in visits[page].measured["verdicts"]], page
    assert not problems, f"verdicts outside a {PHONE}-px screen:\n" + _report(problems)
    assert count >= 2 * len(claims.CLAIMS), "the claims tables of the section pages and of the scorecard"


def test_the_front_page_code_fits_the_column_and_says_twins_on_the_first_screen(visits, phone_visits):
    """On the front page, no command or comment is clipped (a code block needs no sideways scrolling) at 1400 and
    400 px, and the words "synthetic twins" end within a phone's first screen (800 px, less than the window)."""
    for width, visit in ((WIDTH, visits["book/intro.html"]), (PHONE, phone_visits["book/intro.html"])):
        code = visit.measured["code"]
        clipped = [f"{c['scroll']} px > {c['width']} px: {c['head']!r}" for c in code if c["scroll"] > c["width"]]
        assert code and not clipped, f"front-page code clipped at a {width}-px window: {clipped}"
    twins = phone_visits["book/intro.html"].measured["twins"]
    assert twins is not None and twins <= min(800, phone_visits["book/intro.html"].measured["screen"]), twins
