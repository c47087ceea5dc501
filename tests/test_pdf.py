"""`repro book --pdf`: the smoke book printed to one PDF, every page in TOC order, every figure caption in it."""
import html as htmllib
import re
import shutil
import unicodedata

import pytest

from repro import book, pdf
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _squash(text: str) -> str:
    """Text without whitespace, ligatures unfolded (pypdf gives 'ﬁ' where the HTML has 'fi')."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _captions(page_html: str) -> list[str]:
    """The caption of every figure of a page: the first paragraph (outside tables) after each image."""
    captions = []
    for image in re.finditer(r'<img [^>]*src="[^"]*_images/', page_html):
        after = re.sub(r"<table.*?</table>", " ", page_html[image.end():], flags=re.DOTALL)  # skip a table between
        paragraph = re.search(r"<p>(.*?)</p>", after, re.DOTALL)
        if paragraph:
            math_free = re.sub(r'<span class="math[^"]*">.*?</span>', " ", paragraph.group(1), flags=re.DOTALL)
            captions.append(" ".join(htmllib.unescape(re.sub(r"<[^>]+>", " ", math_free)).split()))
    return captions


@pytest.fixture(scope="module")
def printed(smoke_book, tmp_path_factory):
    if not shutil.which("chromium") and not shutil.which("chromium-browser"):
        pytest.skip("no Chromium found; install it with: apt-get update && apt-get install -y chromium")
    from pypdf import PdfReader

    pages = [f"{entry}.html" for entry in book.toc_entries(REPO)]
    out = pdf.write(smoke_book, pages, tmp_path_factory.mktemp("pdf") / "book.pdf", log=lambda *a: None)
    return PdfReader(out), pages


def test_pdf_holds_every_page_in_toc_order(printed, smoke_book):
    reader, pages = printed
    titles = [item.title for item in reader.outline]
    assert len(titles) == len(pages), "one bookmark per TOC page"
    for title, page in zip(titles, pages):  # each bookmark names the page's own heading, in TOC order
        h1 = [h for h in re.findall(r"<h1>(.*?)</h1>", (smoke_book / page).read_text(), re.DOTALL) if "headerlink" in h]
        heading = htmllib.unescape(re.sub(r"<[^>]+>", "", h1[0].split('<a class="headerlink"')[0])) if h1 else None
        assert heading and _squash(heading) == _squash(title), f"{page}: bookmark {title!r}, heading {heading!r}"
    starts = [reader.get_destination_page_number(item) for item in reader.outline]
    assert starts == sorted(starts) and starts[0] == 0 and len(set(starts)) == len(pages)
    assert len(reader.pages) >= 2 * len(pages), f"{len(reader.pages)} PDF pages for {len(pages)} book pages"


def test_every_figure_caption_is_in_the_pdf(printed, smoke_book):
    reader, pages = printed
    text = _squash(" ".join(page.extract_text() for page in reader.pages))
    captions = [c for page in pages for c in _captions((smoke_book / page).read_text())]
    assert len(captions) >= 8, f"expected the captions of Figures 1-7 and AFR, found {len(captions)}"
    missing = [c for c in captions if _squash(c) not in text]
    assert not missing, "captions not in the PDF text:\n" + "\n".join(missing)
    assert "\\(" not in text and "$$" not in text, "raw TeX in the PDF: MathJax did not typeset before printing"


def test_pdf_without_a_built_book_is_a_clear_error(tmp_path):
    with pytest.raises(book.BookError, match="build the book first"):
        pdf.write(tmp_path, ["book/intro.html"], tmp_path / "book.pdf")


def _lines(page) -> list[tuple[float, float, str, bool]]:
    """(font size in pt, y from the bottom, text, named font) of each text run of a PDF page; MathJax's glyphs
    come in fonts without a /BaseFont (its scripts are set smaller on purpose)."""
    runs = []

    def visit(text, cm, tm, font, size):
        if text.strip():
            scale = (tm[0] ** 2 + tm[1] ** 2) ** 0.5 * (cm[0] ** 2 + cm[1] ** 2) ** 0.5
            runs.append((size * scale, tm[5] * cm[3] + cm[5], text.strip(), bool((font or {}).get("/BaseFont"))))
    page.extract_text(visitor_text=visit)
    return runs


def _headings(page_html: str) -> list[str]:
    """The text of every h1-h4 of a built page, without its '#' link."""
    found = re.findall(r"<h([1-4])[^>]*>(.*?)</h\1>", page_html, re.DOTALL)
    texts = [htmllib.unescape(re.sub(r"<[^>]+>", " ", h.split('<a class="headerlink"')[0])) for _, h in found]
    return [" ".join(t.split()) for t in texts if t.strip()]


def test_no_heading_ends_a_pdf_page(printed, smoke_book):
    """Every heading is followed, on its PDF page, by text of the section it opens (repro.pdf.PRINT_JS keeps a
    heading with its next block): no page's text ends with a heading."""
    reader, pages = printed
    headings = {_squash(h) for page in pages for h in _headings((smoke_book / page).read_text()) if len(h) >= 12}
    assert len(headings) >= 20
    stranded = []
    for number, page in enumerate(reader.pages, 1):
        lines = [line for line in page.extract_text().splitlines() if line.strip()]
        for k in (1, 2, 3):  # a heading may wrap over up to three lines, and be cut after any of them
            tail = _squash("".join(lines[-k:]))
            if tail in headings or (len(tail) >= 12 and any(h.startswith(tail) for h in headings)):
                stranded.append(f"p. {number} ends with the heading {' '.join(lines[-k:])!r}")
    assert not stranded, "\n".join(stranded)


def test_first_page_is_filled_text_is_legible_and_downloads_are_named(printed, smoke_book):
    """Page 1 is filled beyond its half; no text (tables included) is below 8 pt but MathJax's scripts; the
    pages' CSV download links print as file names with a note on where the files are, and no link of the PDF
    points at a file that the PDF does not hold."""
    reader, pages = printed
    first = reader.pages[0]
    lowest = min(y for _, y, _, _ in _lines(first))
    assert lowest < float(first.mediabox.height) / 2, "page 1 is half empty"
    small = [(n, round(size, 1), text) for n, page in enumerate(reader.pages, 1)
             for size, _, text, named in _lines(page) if named and size < 7.95]
    assert not small, f"text below 8 pt: {small[:10]}"
    text = _squash(" ".join(page.extract_text() for page in reader.pages))
    with_downloads = [p for p in pages if 'class="reference download' in (smoke_book / p).read_text()]
    assert with_downloads and text.count(_squash(pdf.DOWNLOADS_NOTE)) == len(with_downloads)
    links = [a.get_object().get("/A", {}).get("/URI", "") for page in reader.pages for a in page.get("/Annots", [])]
    assert not [u for u in links if "_downloads" in u], "a link to a CSV the PDF does not hold"
