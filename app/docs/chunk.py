"""Blocks to chunks: about :data:`TARGET_CHARS` each, never across a page or heading.

The document's text is its blocks joined by blank lines; each chunk records
its character range in that text, so a citation can show the exact passage in
context.  A chunk that starts under a heading carries the heading path as its
location; consecutive small paragraphs are merged; a paragraph larger than
:data:`MAX_CHARS` is split at sentence ends.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from app.docs.extract import Block

TARGET_CHARS = 1000  # about 250 tokens of English
MAX_CHARS = 1600
SEPARATOR = "\n\n"


@dataclass(frozen=True)
class Chunk:
    text: str
    location: str
    start: int  # character range in the document text
    end: int


def document_text(blocks: Sequence[Block]) -> str:
    return SEPARATOR.join(b.text for b in blocks)


def _split_long(text: str, offset: int) -> list[tuple[str, int]]:
    """Pieces of at most MAX_CHARS, cut after a sentence (or, failing that, a space)."""
    pieces: list[tuple[str, int]] = []
    start = 0
    while len(text) - start > MAX_CHARS:
        window = text[start : start + TARGET_CHARS + 200]
        cut = max((m.end() for m in re.finditer(r"[.!?。]\s+|\n", window) if m.end() > TARGET_CHARS // 2), default=0)
        if not cut:
            cut = window.rfind(" ", TARGET_CHARS // 2) + 1 or len(window)
        pieces.append((text[start : start + cut].rstrip(), offset + start))
        start += cut
    pieces.append((text[start:], offset + start))
    return pieces


def chunk_blocks(blocks: Sequence[Block]) -> list[Chunk]:
    full = document_text(blocks)
    chunks: list[Chunk] = []
    current: list[tuple[str, int]] = []  # (text, start offset)
    location = ""

    def flush() -> None:
        nonlocal current
        if current:
            start = current[0][1]
            end = current[-1][1] + len(current[-1][0])
            text = full[start:end]
            if text.strip():
                chunks.append(Chunk(text, location, start, end))
        current = []

    offset = 0
    for block in blocks:
        size = sum(len(t) + len(SEPARATOR) for t, _ in current)
        if block.boundary or block.location != location or size + len(block.text) > TARGET_CHARS:
            # a heading starts its section's first chunk; its own location names the section
            flush()
            location = block.location
        for piece, piece_start in _split_long(block.text, offset):
            if current and sum(len(t) for t, _ in current) + len(piece) > TARGET_CHARS:
                flush()
            current.append((piece, piece_start))
        offset += len(block.text) + len(SEPARATOR)
    flush()
    return _merge_headings(chunks, full)


def _merge_headings(chunks: list[Chunk], full: str) -> list[Chunk]:
    """A chunk that is only a heading joins the next chunk of its section."""
    merged: list[Chunk] = []
    i = 0
    while i < len(chunks):
        chunk = chunks[i]
        nxt = chunks[i + 1] if i + 1 < len(chunks) else None
        if nxt is not None and len(chunk.text) < 120 and "\n" not in chunk.text.strip() and (
            nxt.location.startswith(chunk.location) and len(chunk.text) + len(nxt.text) <= MAX_CHARS
        ):
            merged.append(Chunk(full[chunk.start : nxt.end], nxt.location, chunk.start, nxt.end))
            i += 2
            continue
        merged.append(chunk)
        i += 1
    return merged
