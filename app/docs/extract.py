"""Text out of documents, keeping their structure (pages, headings, paragraphs).

Each extractor returns :class:`Block` s: a paragraph-sized piece of text and
where it came from ("page 3", "Installation › Linux", "lines 10–42").  They
run inside :mod:`app.docs.isolate`'s worker process, under a memory and time
limit, so a PDF bomb or a zip bomb costs one file, not the app.  They still
refuse what they can recognise up front:

- files over :data:`MAX_FILE_BYTES`, empty files, binaries renamed ``.txt``;
- encrypted PDFs; PDFs with absurd page counts;
- DOCX whose declared uncompressed XML is huge or compressed suspiciously
  well (zip bombs); XML with entity declarations (billion laughs), through
  defusedxml.
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from app.errors import DocumentError

MAX_FILE_BYTES = 200 * 1024**2
MAX_PDF_PAGES = 5000
MAX_DOCX_XML_BYTES = 64 * 1024**2  # uncompressed word/document.xml
MAX_ZIP_RATIO = 200  # a real document.xml compresses about 5-20x

TEXT_SUFFIXES = {".txt", ".text", ".log", ".rst", ".org", ".tex"}
MARKDOWN_SUFFIXES = {".md", ".markdown", ".mdown", ".mkd"}
HTML_SUFFIXES = {".html", ".htm", ".xhtml"}
CSV_SUFFIXES = {".csv", ".tsv"}
CODE_SUFFIXES = {
    ".py", ".pyi", ".js", ".jsx", ".ts", ".tsx", ".java", ".kt", ".c", ".h", ".cc", ".cpp", ".hpp", ".cs", ".go",
    ".rs", ".rb", ".php", ".swift", ".m", ".scala", ".sh", ".bash", ".zsh", ".ps1", ".sql", ".r", ".lua", ".pl",
    ".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".xml", ".css", ".scss", ".vue", ".svelte", ".dart",
    ".ex", ".exs", ".hs", ".jl", ".zig", ".cmake", ".gradle", ".proto", ".graphql",
}
CODE_NAMES = {"makefile", "dockerfile", "cmakelists.txt", "readme", "license", "changelog"}
SUPPORTED_SUFFIXES = (
    {".pdf", ".docx"} | TEXT_SUFFIXES | MARKDOWN_SUFFIXES | HTML_SUFFIXES | CSV_SUFFIXES | CODE_SUFFIXES
)


@dataclass(frozen=True)
class Block:
    """A paragraph-sized piece of a document.

    ``boundary`` starts a new section (page or heading): chunks never span one.
    """

    text: str
    location: str
    boundary: bool = False


@dataclass(frozen=True)
class Extracted:
    blocks: tuple[Block, ...]
    pages: int  # PDF pages, or 1 for anything else
    kind: str


def is_supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED_SUFFIXES or path.name.lower() in CODE_NAMES


def extract(path: Path) -> Extracted:
    """Read one file.

    Raises:
        DocumentError: with a reason the user can act on.
    """
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise DocumentError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    if size == 0:
        raise DocumentError(f"{path.name} is empty")
    if size > MAX_FILE_BYTES:
        raise DocumentError(
            f"{path.name} is too large to index ({size / 1024**2:.0f} MB; the limit is "
            f"{MAX_FILE_BYTES // 1024**2} MB). Split it into smaller files."
        )
    suffix = path.suffix.lower()
    reader: Callable[[Path], Extracted]
    if suffix == ".pdf":
        reader = _pdf
    elif suffix == ".docx":
        reader = _docx
    elif suffix in HTML_SUFFIXES:
        reader = _html
    elif suffix in MARKDOWN_SUFFIXES:
        reader = _markdown
    elif suffix in CSV_SUFFIXES:
        reader = _csv
    elif suffix in CODE_SUFFIXES or path.name.lower() in CODE_NAMES:
        reader = _code
    elif suffix in TEXT_SUFFIXES:
        reader = _text
    else:
        raise DocumentError(
            f"{path.name}: {suffix or 'files without an extension'} files are not supported "
            "(PDF, Word .docx, Markdown, text, HTML, CSV and source code are)"
        )
    try:
        result = reader(path)
    except DocumentError:
        raise
    except MemoryError as exc:
        raise DocumentError(f"{path.name} needs too much memory to read (a compressed 'bomb'?)") from exc
    except OSError as exc:
        raise DocumentError(f"cannot read {path.name}: {exc.strerror or exc}") from exc
    except Exception as exc:
        raise DocumentError(f"{path.name} could not be read: {type(exc).__name__}: {exc}") from exc
    if not any(b.text.strip() for b in result.blocks):
        hint = " (a scanned PDF has no text layer; run it through OCR first)" if suffix == ".pdf" else ""
        raise DocumentError(f"{path.name} contains no text{hint}")
    return result


# -- plain text ------------------------------------------------------------------


def read_text(path: Path) -> str:
    """Decode a text file (UTF-8, UTF-16 with a BOM, else Windows-1252).

    Raises:
        DocumentError: the file is binary (NUL bytes or mostly control characters).
    """
    data = path.read_bytes()
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        text = data.decode("utf-16", errors="replace")
    else:
        if b"\x00" in data[:65536]:
            raise DocumentError(f"{path.name} is not a text file (it contains binary data)")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = data.decode("cp1252", errors="replace")
    sample = text[:65536]
    controls = sum(1 for ch in sample if ord(ch) < 32 and ch not in "\n\r\t\f") + sample.count("\ufffd")
    if sample and controls / len(sample) > 0.05:
        raise DocumentError(f"{path.name} is not a text file (it contains binary data)")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _paragraphs(text: str) -> Iterator[tuple[str, int, int]]:
    """(paragraph, first line, last line), 1-based, split on blank lines."""
    lines = text.split("\n")
    start = None
    for i, line in enumerate([*lines, ""], start=1):
        if line.strip():
            if start is None:
                start = i
        elif start is not None:
            yield "\n".join(lines[start - 1 : i - 1]).strip("\n"), start, i - 1
            start = None


def _text(path: Path) -> Extracted:
    text = read_text(path)
    blocks = [Block(p, _lines(a, b)) for p, a, b in _paragraphs(text)]
    return Extracted(tuple(blocks), 1, "text")


def _code(path: Path) -> Extracted:
    # Blank-line separated groups keep functions and classes together.
    return Extracted(_text(path).blocks, 1, "code")


def _lines(a: int, b: int) -> str:
    return f"line {a}" if a == b else f"lines {a}–{b}"


# -- Markdown --------------------------------------------------------------------

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")


def _markdown(path: Path) -> Extracted:
    text = read_text(path)
    blocks: list[Block] = []
    headings: list[str] = []
    para: list[str] = []
    para_start = 0
    in_fence = False
    boundary = False

    def flush(end: int) -> None:
        nonlocal para, boundary
        body = "\n".join(para).strip("\n")
        if body.strip():
            where = " › ".join(headings) if headings else _lines(para_start, end)
            blocks.append(Block(body, where, boundary))
            boundary = False
        para = []

    for number, line in enumerate(text.split("\n"), start=1):
        if _FENCE.match(line):
            in_fence = not in_fence
        heading = None if in_fence else _ATX.match(line)
        if heading:
            flush(number - 1)
            level = len(heading.group(1))
            headings = [*headings[: level - 1], heading.group(2).strip()]
            boundary = True
            para, para_start = [line], number
            continue
        if not line.strip() and not in_fence:
            flush(number - 1)
            continue
        if not para:
            para_start = number
        para.append(line)
    flush(len(text.split("\n")))
    return Extracted(tuple(blocks), 1, "markdown")


# -- HTML ------------------------------------------------------------------------

_BLOCK_TAGS = {"p", "div", "li", "tr", "br", "pre", "blockquote", "section", "article", "table", "dd", "dt",
               "figcaption", "td", "th"}
_HEADING_TAGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_SKIP_TAGS = {"script", "style", "noscript", "template", "svg", "head", "nav", "footer"}


class _HTMLText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.headings: list[str] = []
        self.title = ""
        self._buf: list[str] = []
        self._skip = 0
        self._heading: int | None = None
        self._in_title = False
        self._boundary = False

    def _flush(self) -> None:
        text = re.sub(r"[ \t\r\f\v]+", " ", "".join(self._buf))
        text = re.sub(r"\n\s*\n+", "\n", text).strip()
        self._buf = []
        if not text:
            return
        if self._heading is not None:
            self.headings = [*self.headings[: self._heading - 1], text]
            self._boundary = True
            self.blocks.append(Block(text, " › ".join(self.headings), True))
            self._boundary = False
            return
        where = " › ".join(self.headings) if self.headings else (self.title or "body")
        self.blocks.append(Block(text, where, self._boundary))
        self._boundary = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            self._skip += 1
        elif tag == "title":
            self._in_title = True
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = int(tag[1])
        elif tag in _BLOCK_TAGS:
            if tag in ("br", "td", "th"):
                self._buf.append("\n" if tag == "br" else " | ")
            else:
                self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP_TAGS:
            self._skip = max(0, self._skip - 1)
        elif tag == "title":
            self._in_title = False
        elif tag in _HEADING_TAGS:
            self._flush()
            self._heading = None
        elif tag in _BLOCK_TAGS and tag not in ("br", "td", "th"):
            self._flush()

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data.strip()
        elif not self._skip:
            self._buf.append(data)


def html_blocks(markup: str) -> list[Block]:
    parser = _HTMLText()
    parser.feed(markup)
    parser.close()
    parser._flush()
    return parser.blocks


def _html(path: Path) -> Extracted:
    return Extracted(tuple(html_blocks(read_text(path))), 1, "html")


# -- CSV -------------------------------------------------------------------------

CSV_ROWS_PER_BLOCK = 20


def _csv(path: Path) -> Extracted:
    text = read_text(path)
    dialect: type[csv.Dialect] | csv.Dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
    with contextlib.suppress(csv.Error):
        dialect = csv.Sniffer().sniff(text[:8192], delimiters=",;\t|")
    rows = list(csv.reader(io.StringIO(text), dialect))
    if not rows:
        return Extracted((), 1, "csv")
    header, body = rows[0], rows[1:]
    blocks = []
    for start in range(0, max(len(body), 1), CSV_ROWS_PER_BLOCK):
        group = body[start : start + CSV_ROWS_PER_BLOCK]
        lines = [" | ".join(header)] + [
            "; ".join(f"{h}: {v}" for h, v in zip(header, row, strict=False) if v) for row in group
        ]
        first, last = start + 2, start + 1 + len(group)
        blocks.append(Block("\n".join(lines), f"rows {first}–{last}" if group else "header"))
    return Extracted(tuple(blocks), 1, "csv")


# -- PDF -------------------------------------------------------------------------


def _pdf(path: Path) -> Extracted:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError, PdfReadError

    try:
        reader = PdfReader(path, strict=False)
        if reader.is_encrypted:
            # Many PDFs are "encrypted" with an empty user password only (printing rights etc.).
            try:
                ok = bool(reader.decrypt(""))
            except Exception:
                ok = False
            if not ok:
                raise DocumentError(
                    f"{path.name} is password-protected. Open it in a PDF viewer, save an unprotected copy, "
                    "and add that copy."
                )
        n_pages = len(reader.pages)
    except FileNotDecryptedError as exc:
        raise DocumentError(f"{path.name} is password-protected") from exc
    except PdfReadError as exc:
        raise DocumentError(f"{path.name} is not a readable PDF ({exc})") from exc
    if n_pages > MAX_PDF_PAGES:
        raise DocumentError(f"{path.name} has {n_pages} pages; Paddock indexes PDFs of up to {MAX_PDF_PAGES}")
    blocks: list[Block] = []
    for number, page in enumerate(reader.pages, start=1):
        text = (page.extract_text() or "").replace("\r\n", "\n")
        if not text.strip():
            _check_page_stream(path, page, number)
        text = re.sub(r"[ \t]+\n", "\n", text)
        first = True
        for para, _a, _b in _paragraphs(text):
            blocks.append(Block(para, f"page {number}", first))
            first = False
    return Extracted(tuple(blocks), n_pages, "pdf")


def _check_page_stream(path: Path, page: Any, number: int) -> None:
    """pypdf's text extraction swallows its decompression limit: an empty page may be a bomb."""
    from pypdf.errors import LimitReachedError

    try:
        contents = page.get_contents()
        if contents is not None:
            contents.get_data()
    except LimitReachedError as exc:
        raise DocumentError(
            f"{path.name}: page {number} decompresses to far more data than a page holds; refused as a "
            "possible PDF bomb"
        ) from exc


# -- DOCX ------------------------------------------------------------------------

_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"


def _docx(path: Path) -> Extracted:
    import defusedxml.ElementTree as SafeET
    from defusedxml import DefusedXmlException

    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise DocumentError(f"{path.name} is not a Word document (not a valid .docx file)") from exc
    with archive:
        try:
            info = archive.getinfo("word/document.xml")
        except KeyError as exc:
            raise DocumentError(f"{path.name} is not a Word document (word/document.xml is missing)") from exc
        if info.file_size > MAX_DOCX_XML_BYTES or (
            info.compress_size and info.file_size / info.compress_size > MAX_ZIP_RATIO and info.file_size > 2**20
        ):
            raise DocumentError(
                f"{path.name} declares {info.file_size / 1024**2:.0f} MB of text in "
                f"{info.compress_size / 1024:.0f} KB: refused as a possible zip bomb"
            )
        with archive.open(info) as fh:
            data = fh.read(MAX_DOCX_XML_BYTES + 1)
        if len(data) > MAX_DOCX_XML_BYTES:
            raise DocumentError(f"{path.name}: the document text is larger than declared (zip bomb?)")
    try:
        root = SafeET.fromstring(data)
    except DefusedXmlException as exc:
        raise DocumentError(f"{path.name} contains XML entity tricks (a 'billion laughs' bomb?): refused") from exc
    except SafeET.ParseError as exc:
        raise DocumentError(f"{path.name} is damaged: {exc}") from exc
    blocks: list[Block] = []
    headings: list[str] = []
    body = root.find(f"{_W}body")
    for element in (body if body is not None else []):
        if element.tag == f"{_W}p":
            text = "".join(t.text or "" for t in element.iter() if t.tag in (f"{_W}t", f"{_W}tab")).strip()
            if not text:
                continue
            level = _docx_heading_level(element)
            if level:
                headings = [*headings[: level - 1], text]
                blocks.append(Block(text, " › ".join(headings), True))
            else:
                blocks.append(Block(text, " › ".join(headings) or "body"))
        elif element.tag == f"{_W}tbl":
            rows = []
            for row in element.iter(f"{_W}tr"):
                cells = ["".join(t.text or "" for t in cell.iter(f"{_W}t")).strip() for cell in row.iter(f"{_W}tc")]
                rows.append(" | ".join(cells))
            if any(r.strip(" |") for r in rows):
                blocks.append(Block("\n".join(rows), (" › ".join(headings) or "body") + " (table)"))
    return Extracted(tuple(blocks), 1, "docx")


def _docx_heading_level(paragraph: object) -> int:
    style = paragraph.find(f"{_W}pPr/{_W}pStyle")  # type: ignore[attr-defined]
    if style is None:
        return 0
    name = (style.get(f"{_W}val") or "").lower()
    match = re.match(r"(heading|title)\s*(\d?)", name)
    if not match:
        return 0
    return int(match.group(2) or 1)
