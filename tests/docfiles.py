"""Real documents written by the tests: PDFs (fpdf2), Word files (python-docx), HTML, Markdown, and hostile ones."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path

from app.selftest import pdf_from_objects


def write_pdf(path: Path, pages: list[str], password: str | None = None) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    for text in pages:
        pdf.add_page()
        pdf.set_font("helvetica", size=12)
        pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    if password is not None:
        from pypdf import PdfReader, PdfWriter

        writer = PdfWriter(clone_from=PdfReader(path))
        writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="AES-256")
        with path.open("wb") as fh:
            writer.write(fh)
    return path


def write_docx(path: Path, sections: list[tuple[str, list[str]]], title: str | None = None) -> Path:
    import docx

    document = docx.Document()
    if title:
        document.add_heading(title, 1)
    for heading, paragraphs in sections:
        document.add_heading(heading, 2)
        for p in paragraphs:
            document.add_paragraph(p)
    document.save(str(path))
    return path


def write_pdf_bomb(path: Path, megabytes: int = 512) -> Path:
    """A one-page PDF whose content stream is FlateDecode inside FlateDecode of ``megabytes`` of zeros."""
    inner = zlib.compressobj(9)
    chunk = b"0 " * (1 << 19)  # 1 MB
    data = b"".join(inner.compress(chunk) for _ in range(megabytes)) + inner.flush()
    outer = zlib.compress(data, 9)
    stream = b"<< /Length %d /Filter [/FlateDecode /FlateDecode] >>\nstream\n" % len(outer) + outer + b"\nendstream"
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        stream,
    ]
    path.write_bytes(pdf_from_objects(objects))
    return path


def write_pdf_circular(path: Path) -> Path:
    """A PDF whose cross-reference /Prev points at itself, with pages that point at their own parent loop."""
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>",  # the page tree contains itself
    ]
    path.write_bytes(pdf_from_objects(objects, prev_self=True))
    return path


def write_docx_zip_bomb(path: Path, megabytes: int = 200) -> Path:
    """A .docx whose word/document.xml inflates to ``megabytes`` MB from a few hundred KB."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as fh:
            fh.write(b'<?xml version="1.0"?><w:document xmlns:w="x"><w:body>')
            block = b" " * (1 << 20)
            for _ in range(megabytes):
                fh.write(block)
            fh.write(b"</w:body></w:document>")
    return path


def write_docx_billion_laughs(path: Path) -> Path:
    lol = "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10))
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">{lol}]>'
        '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"><w:body><w:p><w:r>'
        "<w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", xml)
    return path


GOOD_FACTS = {
    "orchard.md": (
        "# Orchard handbook\n\nGeneral notes on the orchard.\n\n## Watering\n\n"
        "Water the pear trees every Tuesday with 40 litres each.\n\n## Pruning\n\n"
        "Prune the apple trees in February, before the buds open.\n"
    ),
    "kiln.html": (
        "<html><head><title>Kiln</title><script>var x = 'not text';</script></head><body>"
        "<h1>Kiln manual</h1><p>The kiln reaches 1280 degrees at cone 10.</p>"
        "<h2>Safety</h2><p>Wear gloves rated for 500 degrees when unloading.</p></body></html>"
    ),
    "notes.txt": "Shopping list\n\nThe blue bicycle needs a new chain of 116 links.\n",
    "prices.csv": "item,price,unit\nflour,2.40,kg\nsaffron,11.90,gram\n",
    "tool.py": "def add(a, b):\n    return a + b\n\n\ndef greet(name):\n    return f'Hello {name}'\n",
}


def write_good_set(folder: Path) -> dict[str, Path]:
    """One file of each kind with known facts; returns name -> path."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, text in GOOD_FACTS.items():
        (folder / name).write_text(text, encoding="utf-8")
        out[name] = folder / name
    out["lighthouse.pdf"] = write_pdf(folder / "lighthouse.pdf", [
        "The lighthouse keeper lights the lamp at dusk every evening.",
        "The lighthouse lamp uses a Fresnel lens of the first order, made in 1872.",
    ])
    out["bakery.docx"] = write_docx(folder / "bakery.docx", [
        ("Sourdough", ["Sourdough needs a starter fed twice a day."]),
        ("Rye", ["Rye bread bakes at 230 degrees for 50 minutes."]),
    ], title="Bakery recipes")
    return out
