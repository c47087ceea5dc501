"""Print the built HTML book to one PDF: every page in TOC order, printed by headless Chromium, merged by pypdf.

`repro book --pdf` calls `write(html_dir, pages, out)` after the HTML build. The book is served from
127.0.0.1 (other hosts are unreachable), each page waits for MathJax, gets a small print style sheet (figures
at the text width, code and table cells wrapped, scroll boxes opened so nothing is cut off) and is printed
to A4; the pages are merged into `_build/book.pdf` with one bookmark per page.
"""
from __future__ import annotations

import functools
import http.server
import io
import os
import shutil
import threading
from pathlib import Path

from .book import BookError

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"]
INSTALL = "install Chromium (Debian/Ubuntu: apt-get install -y chromium) or set REPRO_CHROMIUM to a Chrome/Chromium binary"

# Print layout: the theme's print styles hide the navigation; these keep wide content inside the page.
PRINT_CSS = """
@page { size: A4; margin: 14mm 12mm; }
.cell_output img, figure img, .bd-article img { width: 100% !important; max-width: 100% !important; height: auto !important; }
pre, code, span.pre { white-space: pre-wrap !important; overflow-wrap: anywhere !important; }
.pst-scrollable-table-container, .table-wrapper, .highlight, .output, div.cell_output { overflow: visible !important; }
table { max-width: 100% !important; font-size: 8.5pt !important; }
th, td { padding: 2px 4px !important; overflow-wrap: anywhere !important; }
.keep-with-next, figure, .admonition, tr, img { break-inside: avoid; page-break-inside: avoid; }
h1, h2, h3, h4, figcaption { break-after: avoid; page-break-after: avoid; }
.downloads-note { font-style: italic; font-size: 9pt; }
.sd-badge { font-size: 8.5pt !important; }
code, kbd, samp, pre, table code, .highlight pre { font-size: 8.5pt !important; }
* { box-sizing: border-box; }
.bd-article-container, .bd-article, .bd-main, .bd-content, .bd-page-width { max-width: 100% !important; }
.mjx-chtml, mjx-container { page-break-inside: avoid; }
details.hide { display: none !important; }  /* folded code cells stay folded: no "Show code cell source" bars */
"""


# Before printing: a heading, or a short paragraph that introduces what follows (it ends with a colon, or
# opens in bold, as a table's label does), is
# wrapped with its next block in an unbreakable box, so no page ends with one; a table wider than the text
# gets fixed columns that wrap (else Chromium shrinks the whole page to fit it); download links (the CSVs of a
# figure) become their file names, followed once per page by where those files are.
PRINT_JS = """() => {
  const article = document.querySelector('main') || document.body;
  const lead = [...article.querySelectorAll('h1, h2, h3, h4, p')].filter(e =>
      e.tagName !== 'P' || (e.textContent.length < 200 && (e.textContent.trim().endsWith(':') ||
                             (e.firstElementChild && e.firstElementChild.tagName === 'STRONG' &&
                              e.textContent.trim().startsWith(e.firstElementChild.textContent.trim())))));
  for (const e of lead) {
    const next = e.nextElementSibling;
    if (!next || e.parentElement.classList.contains('keep-with-next')) continue;
    const box = document.createElement('div');
    box.className = 'keep-with-next';
    e.before(box);
    box.append(e, next);
  }
  for (const t of article.querySelectorAll('table')) {  // a table wider than the text: fixed columns that wrap
    if (t.scrollWidth > article.clientWidth) { t.style.tableLayout = 'fixed'; t.style.width = '100%'; }
  }
  let last = null;
  for (const a of article.querySelectorAll('a.download')) {
    const name = document.createElement('code');
    name.textContent = (a.getAttribute('href') || '').split('/').pop() || a.textContent;
    a.replaceWith(name);
    last = name.closest('p') || name.parentElement;
  }
  if (last) {
    const note = document.createElement('p');
    note.className = 'downloads-note';
    note.textContent = NOTE;
    last.after(note);
  }
  return last !== null;
}"""
DOWNLOADS_NOTE = ("(These CSV files are in the HTML book, under _build/html/_downloads/, and in the archive of "
                  "repro book --archive.)")
PRINT_JS = PRINT_JS.replace("NOTE", repr(DOWNLOADS_NOTE))


PRINT_WIDTH_PX = round((210 - 2 * 12) / 25.4 * 96)


def chromium() -> str:
    """Path of a Chromium/Chrome binary: $REPRO_CHROMIUM, else the first one on PATH."""
    if os.environ.get("REPRO_CHROMIUM"):
        return os.environ["REPRO_CHROMIUM"]
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if shutil.which(name):
            return shutil.which(name)
    raise BookError(f"--pdf needs a Chromium browser and found none; {INSTALL}")


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _serve(folder: Path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def _print_page(context, url: str) -> tuple[bytes, str]:
    """PDF bytes and title of one page, printed after its images and MathJax are done."""
    page = context.new_page()
    try:
        page.goto(url, wait_until="networkidle")
        page.emulate_media(media="print")
        page.add_style_tag(content=PRINT_CSS)
        page.evaluate(PRINT_JS)
        page.evaluate("() => Promise.all([...document.images].map(i => { i.loading = 'eager'; return i.decode().catch(() => null); }))")
        page.evaluate("() => (window.MathJax && MathJax.startup && MathJax.startup.promise) ? MathJax.startup.promise.then(() => true) : false")
        page.wait_for_load_state("networkidle")
        title = page.evaluate("() => (document.querySelector('main h1') || document.querySelector('h1') || document).textContent || document.title")
        data = page.pdf(format="A4", print_background=True, prefer_css_page_size=True)
        return data, " ".join(title.replace("#", "").split())
    finally:
        page.close()


def write(html_dir: Path, pages: list[str], out: Path, log=print) -> Path:
    """Print `pages` (paths relative to `html_dir`, e.g. "book/intro.html") into one PDF at `out`."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
        from pypdf import PdfReader, PdfWriter
    except ImportError as err:
        raise BookError(f"--pdf needs playwright and pypdf ({err.name} is missing): pip install -e '.[pdf]'") from None
    html_dir = Path(html_dir)
    missing = [p for p in pages if not (html_dir / p).is_file()]
    if missing:
        raise BookError(f"cannot print the PDF: {html_dir} lacks {', '.join(missing)}; build the book first (repro book)")
    executable = chromium()
    server, base = _serve(html_dir)
    writer = PdfWriter()
    try:
        with sync_playwright() as pw:
            try:
                browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
            except PlaywrightError as err:
                raise BookError(f"could not start {executable}: {str(err).splitlines()[0]}; {INSTALL}") from None
            # the printable width of A4 with the margins of PRINT_CSS (186 mm at 96 px per inch), so that PRINT_JS
            # measures tables as they print
            context = browser.new_context(viewport={"width": PRINT_WIDTH_PX, "height": 1000}, service_workers="block")
            context.route("**/*", lambda r: r.continue_() if r.request.url.startswith((base, "data:", "blob:"))
                          else r.abort("addressunreachable"))
            try:
                for i, name in enumerate(pages, 1):
                    data, title = _print_page(context, base + name)
                    writer.append(PdfReader(io.BytesIO(data)), outline_item=title or name)
                    log(f"[{i}/{len(pages)}] printed {name}")
            finally:
                browser.close()
    finally:
        server.shutdown()
        server.server_close()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".partial.pdf")
    with open(tmp, "wb") as f:
        writer.write(f)
    tmp.replace(out)
    log(f"printed {len(writer.pages)} PDF pages")  # the caller prints the path of the PDF
    return out


def book_pdf(root: Path, log=print) -> Path:
    """Print the built book of `root` (its `_build/html`) in TOC order to `root/_build/book.pdf`."""
    from .book import toc_entries

    return write(root / "_build" / "html", [f"{entry}.html" for entry in toc_entries(root)],
                 root / "_build" / "book.pdf", log)
