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
